"""`make run` on a fresh checkout, as a new user types it: it installs what serving needs and
nothing of the test and dev tools, then serves development.ini (the README's first command).

The checkout is a copy of the tracked files in a temporary folder, with its own new `.venv`;
pip reaches the package index as the rest of the machine does.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import HOST, REPO_ROOT, clean_environ, free_port, http_get

# Installing into a new venv takes seconds from a mirror, minutes from a slow index.
INSTALL_TIMEOUT = 600.0
# Distributions only the test and dev extras bring: none may be in a serving install.
DEV_ONLY = {"pytest", "mypy", "ruff", "playwright", "hypothesis", "schemathesis", "webtest"}


def tracked_files_copy(target: Path) -> Path:
    """The repository's tracked files (as a clean clone has them) copied under `target`."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = REPO_ROOT / name
        if source.is_file():
            destination = target / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
    return target


def serves(port: int, timeout: float, process: subprocess.Popen[bytes]) -> bool:
    """True once `port` accepts a connection; False when `process` ends first or on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=1.0):
                return True
        except OSError:
            pass
        try:
            process.wait(timeout=0.1)  # paces the polling and notices an early exit
            return False
        except subprocess.TimeoutExpired:
            continue
    return False


@pytest.mark.timeout(INSTALL_TIMEOUT + 120)
def test_make_run_installs_only_serving_dependencies_and_serves(tmp_path: Path) -> None:
    if shutil.which("make") is None:
        pytest.fail("make is not installed (.ci/run installs it)")
    checkout = tracked_files_copy(tmp_path / "checkout")
    port = free_port()
    log_path = tmp_path / "make-run.log"
    environ = clean_environ({"CHANNELSTREAM_PORT": str(port)})
    environ.pop("VIRTUAL_ENV", None)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            ["make", "run"],
            cwd=checkout,
            env=environ,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches make and the server, as in a terminal
        )
    try:
        if not serves(port, INSTALL_TIMEOUT, process):
            pytest.fail(f"make run did not serve on {port}:\n{log_path.read_text()[-4000:]}")
        status, _ = http_get(port, "/health")
        assert status == 200
        status, page = http_get(port, "/")
        assert status == 200 and b"api-explorer" in page

        listed = subprocess.run(
            [str(checkout / ".venv/bin/python"), "-m", "pip", "list", "--format=json"],
            capture_output=True,
            check=True,
            text=True,
        ).stdout
        installed = {entry["name"].lower() for entry in json.loads(listed)}
        assert "channelstream" in installed and "gevent" in installed
        assert installed & DEV_ONLY == set()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    assert "Server stopped" in log_path.read_text()
