"""Real server processes for end-to-end tests.

`start_server(...)` (a fixture) starts `channelstream -i FILE` or `pserve FILE` from this
virtualenv on a free port of 127.0.0.1, waits until the port accepts TCP connections, and
returns a `RunningServer`. Every server a test starts is stopped at teardown (SIGTERM, then
SIGKILL after 10 s). `start_module_server` is the same with one server shared by a module.

    def test_something(start_server):
        server = start_server(settings={"secret": "s"})
        ...  # server.base_url, server.ws_url, server.port, server.pid, server.log_text()

The server's stdout and stderr go to a log file; a server that exits or does not listen within
15 s fails the test with that log.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

BIN_DIR = Path(sys.executable).parent
REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


def console_script(name: str) -> str:
    """Path of a console script installed in the virtualenv that runs the tests."""
    path = BIN_DIR / name
    if not path.exists():
        pytest.fail(f"console script {name!r} not found in {BIN_DIR}")
    return str(path)


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def http_get(port: int, path: str = "/") -> tuple[int, bytes]:
    """Status and body of a plain GET on 127.0.0.1:port (a new connection, closed after)."""
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def clean_environ(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without CHANNELSTREAM_* variables, plus `extra`.

    Servers stop at once (no drain grace) unless `extra` sets CHANNELSTREAM_DRAIN_GRACE:
    every test's teardown stops its servers, and 2 s each would add minutes to the suite."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CHANNELSTREAM_")}
    environ["PYTHONUNBUFFERED"] = "1"
    environ["CHANNELSTREAM_DRAIN_GRACE"] = "0"
    environ.update(extra or {})
    return environ


def channelstream_ini(port: int, settings: Mapping[str, Any] | None = None) -> str:
    """A 0.7-style ini with a [channelstream] section, bound to 127.0.0.1:port."""
    values = {"host": HOST, "port": port, "log_level": "DEBUG", **(settings or {})}
    lines = ["[channelstream]"] + [f"{key} = {value}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


# The logging sections of a PasteDeploy ini: everything at DEBUG to stderr.
PASTE_LOGGING = """
[loggers]
keys = root

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = DEBUG
handlers = console

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(asctime)s %(levelname)s [%(name)s] %(message)s
"""


def pastedeploy_ini(port: int, settings: Mapping[str, Any] | None = None) -> str:
    """A PasteDeploy ini ([app:main], [server:main] on 127.0.0.1:port, console logging)."""
    app_lines = "\n".join(
        f"channelstream.{key} = {value}" for key, value in (settings or {}).items()
    )
    sections = textwrap.dedent(
        """\
        [app:main]
        use = egg:channelstream
        {app_lines}

        [server:main]
        use = egg:channelstream
        host = {host}
        port = {port}
        """
    ).format(app_lines=app_lines, host=HOST, port=port)
    return sections + PASTE_LOGGING


@dataclass
class RunningServer:
    """One server process started by `start_server`."""

    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    ini_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}/ws"

    def log_text(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, wait up to `timeout` s, then SIGKILL. Returns the exit status."""
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.process.wait(timeout=timeout)
        return self.process.returncode


class ServerLauncher:
    """Starts servers with their files in `workdir` and stops them all in `stop_all`."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.servers: list[RunningServer] = []

    def start(
        self,
        ini_text: str | None = None,
        settings: Mapping[str, Any] | None = None,
        command: str = "channelstream",
        env: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> RunningServer:
        """Start a server and wait until it listens.

        ini_text: the whole ini file; `{port}` in it is replaced by the port. Default: a
            `[channelstream]` file (for `channelstream`) or a PasteDeploy file (for `pserve`)
            holding `settings` and bound to 127.0.0.1 and the port.
        command: "channelstream" (runs `channelstream -i FILE`) or "pserve" (`pserve FILE`).
        env: extra environment variables (CHANNELSTREAM_* of the test process are not passed).
        port: default: a free port.
        """
        port = port or free_port()
        if ini_text is None:
            make_ini = pastedeploy_ini if command == "pserve" else channelstream_ini
            ini_text = make_ini(port, settings)
        elif settings:
            raise ValueError("give either ini_text or settings, not both")
        index = len(self.servers)
        ini_path = self.workdir / f"server-{index}.ini"
        ini_path.write_text(ini_text.replace("{port}", str(port)))
        log_path = self.workdir / f"server-{index}.log"
        if command == "channelstream":
            argv = [console_script("channelstream"), "-i", str(ini_path)]
        elif command == "pserve":
            argv = [console_script("pserve"), str(ini_path)]
        else:
            raise ValueError(f"unknown command {command!r}")
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=clean_environ(env),
            )
        server = RunningServer(port=port, process=process, log_path=log_path, ini_path=ini_path)
        self.servers.append(server)
        wait_until_listening(server)
        return server

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()


def wait_until_listening(server: RunningServer, timeout: float = START_TIMEOUT) -> None:
    """Return once the server's port accepts a TCP connection; fail if it exits or times out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((HOST, server.port), timeout=1.0):
                return
        except OSError:
            pass
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            server.stop()
            pytest.fail(
                f"server did not listen on port {server.port} within {timeout} s; "
                f"its log:\n{server.log_text()}"
            )
        try:
            # Waiting on the process's exit paces the polling and notices an early exit.
            server.process.wait(timeout=min(0.05, remaining))
        except subprocess.TimeoutExpired:
            continue
        pytest.fail(
            f"server exited with status {server.process.returncode} before listening; "
            f"its log:\n{server.log_text()}"
        )


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    """Factory fixture: `start_server(ini_text=None, settings=None, command=..., env=...)`."""
    launcher = ServerLauncher(tmp_path)
    yield launcher.start
    launcher.stop_all()


@pytest.fixture(scope="module")
def start_module_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., RunningServer]]:
    """Like `start_server`, for servers shared by the tests of one module."""
    launcher = ServerLauncher(tmp_path_factory.mktemp("servers"))
    yield launcher.start
    launcher.stop_all()


@pytest.fixture
def run_console_script(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """`run_console_script("channelstream", "--version")`: run to completion (30 s at most)."""

    def run(name: str, *args: str, env: Mapping[str, str] | None = None) -> Any:
        return subprocess.run(
            [console_script(name), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=clean_environ(env),
            timeout=30,
        )

    return run


# ---------------------------------------------------------------------- per-test helpers
# `listen` needs a `server` fixture, which each test module defines (usually module-scoped).


@pytest.fixture
def names() -> Callable[[str], str]:
    """Unique user/channel names for one test: names("alice") -> "alice-1a2b3c"."""
    suffix = uuid.uuid4().hex[:8]
    return lambda base: f"{base}-{suffix}"


@pytest.fixture
def listeners() -> Iterator[list[Any]]:
    """Open websockets here; they are closed at teardown."""
    opened: list[Any] = []
    yield opened
    for listener in opened:
        listener.close()


@pytest.fixture
def listen(server: Any, listeners: list[Any]) -> Callable[..., Any]:
    """`listen(conn_id, **kwargs)`: a WsListener on the module's server, closed at teardown."""
    from tests.e2e.apiclient import WsListener

    def open_listener(conn_id: str, **kwargs: Any) -> Any:
        listener = WsListener.open(server.ws_url, conn_id, **kwargs)
        listeners.append(listener)
        return listener

    return open_listener
