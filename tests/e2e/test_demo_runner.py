"""`make demo` (examples/chat/run.py): the URLs are printed only once both servers accept
connections; a taken port or a server that exits first is said, and the runner exits 1."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.conftest import HOST, REPO_ROOT, clean_environ, free_port, http_get

RUN_PY = REPO_ROOT / "examples" / "chat" / "run.py"
TIMEOUT = 60.0


@dataclass
class Runner:
    """examples/chat/run.py as a process; its stdout read line by line by a thread."""

    process: subprocess.Popen[str]
    stderr_path: Path
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)
    seen: list[str] = field(default_factory=list)

    def read_lines(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for_line(self, prefix: str, timeout: float = TIMEOUT) -> str:
        """The first stdout line starting with `prefix`; fails on EOF or timeout."""
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                pytest.fail(f"no {prefix!r} line within {timeout} s: {self.output()}")
            if line is None:
                pytest.fail(f"run.py ended without a {prefix!r} line: {self.output()}")
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def wait_for_exit(self, timeout: float = TIMEOUT) -> int:
        """The exit status, once stdout is read to its end (every line in `seen`)."""
        status = self.process.wait(timeout=timeout)
        while (line := self.lines.get(timeout=timeout)) is not None:
            self.seen.append(line)
        self.lines.put(None)  # for a later call
        return status

    def output(self) -> str:
        return "\n".join(self.seen) + "\nstderr:\n" + self.stderr_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            status = self.wait_for_exit(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            status = self.wait_for_exit()
        if self.process.stdout is not None:
            self.process.stdout.close()
        return status


@pytest.fixture
def start_runner(tmp_path: Path) -> Iterator[object]:
    runners: list[Runner] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Runner:
        stderr_path = tmp_path / f"run-{len(runners)}.stderr"
        with open(stderr_path, "w") as stderr:
            process = subprocess.Popen(
                [sys.executable, str(RUN_PY), *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                cwd=REPO_ROOT,
                env=clean_environ(env),
            )
        runner = Runner(process, stderr_path)
        threading.Thread(target=runner.read_lines, daemon=True).start()
        runners.append(runner)
        return runner

    yield start
    for runner in runners:
        runner.stop()


def accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=5):
            return True
    except OSError:
        return False


def test_the_urls_are_printed_once_both_servers_accept_and_ctrl_c_stops_both(start_runner):
    port, demo_port = free_port(), free_port()
    runner = start_runner("--port", str(port), "--demo-port", str(demo_port))
    line = runner.wait_for_line("channelstream: http://")
    assert line == (
        f"channelstream: http://127.0.0.1:{port}   chat demo: http://127.0.0.1:{demo_port}   "
        "(Ctrl-C stops both)"
    )
    # printed after both accepted, and neither has exited since
    assert accepts(port) and accepts(demo_port), runner.output()
    assert http_get(port, "/health")[0] == 200
    assert http_get(demo_port, "/")[0] in (200, 302, 303)
    assert runner.stop() == 0
    assert not accepts(port) and not accepts(demo_port)


@pytest.mark.parametrize("taken", ["channelstream", "chat demo"])
def test_a_taken_port_is_said_and_no_url_is_printed(start_runner, taken):
    port, demo_port = free_port(), free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as occupier:
        occupier.bind((HOST, port if taken == "channelstream" else demo_port))
        occupier.listen()
        runner = start_runner("--port", str(port), "--demo-port", str(demo_port))
        assert runner.wait_for_exit() == 1
    output = runner.output()
    option = "--port" if taken == "channelstream" else "--demo-port"
    taken_port = port if taken == "channelstream" else demo_port
    assert (
        f"make demo: {taken} cannot start: 127.0.0.1:{taken_port} is already in use (another "
        f"server running? choose another: python examples/chat/run.py {option} N)"
    ) in output
    assert "http://" not in output


def test_a_server_that_exits_before_listening_is_named_and_the_other_stopped(start_runner):
    """channelstream refuses an empty secret at start (exit 2): the runner says so, prints no
    URL, stops the chat demo and exits 1."""
    port, demo_port = free_port(), free_port()
    runner = start_runner(
        "--port", str(port), "--demo-port", str(demo_port), env={"CHANNELSTREAM_SECRET": ""}
    )
    assert runner.wait_for_exit() == 1
    output = runner.output()
    assert (
        f"make demo: channelstream exited with status 2 before listening on "
        f"http://127.0.0.1:{port}: see its lines above"
    ) in output
    assert "channelstream: secret is empty in environment variable CHANNELSTREAM_SECRET" in output
    assert "chat demo: http://" not in output
    assert not accepts(demo_port)  # stopped with the runner, not left behind


def test_run_py_is_what_make_demo_runs():
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "$(BIN)/python examples/chat/run.py" in makefile
    assert os.access(RUN_PY, os.R_OK)
