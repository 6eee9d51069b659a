"""A real Redis for the tests that need one.

`redis_url()` answers, in order: `CHANNELSTREAM_TEST_REDIS_URL` (default
`redis://127.0.0.1:6379/0`) if a Redis answers there; else a `redis-server` started from PATH
on a free port for the test session; else the test is skipped with how to enable it, except
under `CI=true`, where it fails instead. `RedisProcess` starts (and restarts) a private
`redis-server`, for tests that must stop Redis under a running cluster.

Each test gets its own key prefix (`unique_prefix`) and deletes its keys afterwards.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import redis

DEFAULT_URL = "redis://127.0.0.1:6379/0"
HOW_TO_ENABLE = (
    "no Redis reachable: start one on 127.0.0.1:6379, set CHANNELSTREAM_TEST_REDIS_URL, "
    "or install redis-server (Debian: apt-get install redis-server)"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


def skip_or_fail(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"Redis tests cannot run under CI: {reason}")
    pytest.skip(reason)


class RedisProcess:
    """A private redis-server on a free port of 127.0.0.1 (no persistence)."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            skip_or_fail(HOW_TO_ENABLE)
        self.binary = str(binary)
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        with open(self.workdir / f"redis-{self.port}.log", "ab") as log:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    *("--port", str(self.port), "--bind", "127.0.0.1"),
                    *("--save", "", "--appendonly", "no", "--dir", str(self.workdir)),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while not answers(self.url):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None


_session_server: RedisProcess | None = None


def redis_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The URL of a Redis for this test session (see the module docstring)."""
    global _session_server
    url = os.environ.get("CHANNELSTREAM_TEST_REDIS_URL", DEFAULT_URL)
    if answers(url):
        return url
    if _session_server is None:
        server = RedisProcess(tmp_path_factory.mktemp("redis"))
        server.start()
        _session_server = server
    return _session_server.url


def stop_session_server() -> None:
    global _session_server
    if _session_server is not None:
        _session_server.stop()
        _session_server = None


def unique_prefix() -> str:
    return f"cstest-{uuid.uuid4().hex[:12]}"


def delete_prefix(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url, socket_timeout=5)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
