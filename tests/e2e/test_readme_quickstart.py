"""The README's quickstart script runs as printed against a real server."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.e2e.conftest import REPO_ROOT


def quickstart_code() -> str:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(
        r"<!-- quickstart:start -->\s*```python\n(.*?)```\s*<!-- quickstart:end -->", readme, re.S
    )
    assert match, "README.md lost its quickstart block"
    return match.group(1)


def test_readme_quickstart_prints_the_message_it_posted(start_server, tmp_path):
    server = start_server(settings={"secret": "quickstart-secret"})
    code = quickstart_code()
    assert 'SERVER = "http://127.0.0.1:8000"' in code and 'SECRET = "dev-secret"' in code
    code = code.replace("http://127.0.0.1:8000", server.base_url).replace(
        '"dev-secret"', '"quickstart-secret"'
    )
    script = tmp_path / "quickstart.py"
    script.write_text(code)
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr + server.log_text()
    assert result.stdout.strip() == "bob says hello"
