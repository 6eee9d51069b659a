"""A non-editable install ships every page and script: the wheel built from the source tree
holds every file of static/apiexplorer/ and src/channelstream/static/."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.e2e.conftest import REPO_ROOT

ASSET_FOLDERS = {
    "static/apiexplorer": "channelstream/apiexplorer",
    "src/channelstream/static": "channelstream/static",
}


def source_copy(destination: Path) -> Path:
    """The files packaging reads, without build/ or .venv/ leftovers of the work tree."""
    destination.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, destination / name)
    for folder in ("src", "static"):
        shutil.copytree(
            REPO_ROOT / folder,
            destination / folder,
            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
        )
    return destination


def test_the_wheel_holds_every_asset(tmp_path: Path) -> None:
    source = source_copy(tmp_path / "source")
    # pip builds in an isolated environment: it fetches setuptools from the package index
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert built.returncode == 0, f"pip wheel failed:\n{built.stdout}\n{built.stderr}"
    (wheel,) = tmp_path.glob("channelstream-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())

    expected = {
        f"{installed}/{path.relative_to(source / folder).as_posix()}"
        for folder, installed in ASSET_FOLDERS.items()
        for path in (source / folder).rglob("*")
        if path.is_file()
    }
    assert "channelstream/apiexplorer/index.html" in expected
    assert "channelstream/static/admin/admin.js" in expected
    assert expected - shipped == set()
