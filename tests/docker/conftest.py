"""Docker tests: the project's image, and the compose stack of deploy/, built and run on a real
container engine.

The engine: a daemon that already answers `docker info` is used as it is (and left running).
Otherwise the session starts one with engine.sh (../shared/docker/README.md: a dockerd and
images for machines without an image registry) and stops it at the end, also on failure.
engine.sh is looked for at $DOCKER_ENGINE_SCRIPT, then ../shared/docker/engine.sh next to the
repository, then /work/shared/docker/engine.sh. Without an engine the tests skip, except under
CI=true, where they fail saying why.

Fixtures: `docker_engine` (session), `image` (the top-level Dockerfile built once per session,
removed at the end), `run_container` (containers removed at teardown). Names carry `RUN_ID`, so
runs never meet each other's containers, images or networks.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.e2e.conftest import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
STANDINS_DIR = Path(__file__).resolve().parent / "standins"
ENGINE_SCRIPT_VARIABLE = "DOCKER_ENGINE_SCRIPT"
ENGINE_UP_TIMEOUT = 900.0  # the first `up` on a new machine: apt, debootstrap, two builds
BUILD_TIMEOUT = 600.0
COMMAND_TIMEOUT = 120.0
START_TIMEOUT = 30.0
RUN_ID = uuid.uuid4().hex[:8]
# engine.sh's base image; the stand-ins of compose's images are built on it
DEBIAN_BASE_IMAGE = "local/debian:base"
STANDIN_LABEL = "org.channelstream.standin"


def unavailable(reason: str) -> NoReturn:
    """Skip, or under CI=true (where nothing may be skipped) fail, with `reason`."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"docker tests cannot run under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def docker(
    *args: str,
    timeout: float = COMMAND_TIMEOUT,
    check: bool = True,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `docker ARGS`; with `check`, fail the test with its output unless it exits 0."""
    return run_command(["docker", *args], timeout=timeout, check=check, env=env)


def run_command(
    argv: Sequence[str],
    timeout: float = COMMAND_TIMEOUT,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        list(argv),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(env) if env is not None else None,
        cwd=cwd,
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}",
            pytrace=False,
        )
    return result


def daemon_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return docker("info", check=False, timeout=30).returncode == 0


def engine_script() -> Path | None:
    """Where engine.sh is: $DOCKER_ENGINE_SCRIPT, next to the repository, or /work/shared."""
    candidates = [
        os.environ.get(ENGINE_SCRIPT_VARIABLE, ""),
        str(REPO_ROOT.parent / "shared" / "docker" / "engine.sh"),
        "/work/shared/docker/engine.sh",
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[None]:
    """A docker daemon for the session: the running one, or one engine.sh starts and stops."""
    if daemon_answers():
        yield
        return
    script = engine_script()
    if script is None:
        unavailable(
            f"no docker daemon answers and engine.sh was not found (set {ENGINE_SCRIPT_VARIABLE})"
        )
    if os.geteuid() != 0:
        unavailable(f"no docker daemon answers and {script} must run as root")
    try:
        result = run_command(["bash", str(script), "up"], timeout=ENGINE_UP_TIMEOUT, check=False)
        if result.returncode != 0 or not daemon_answers():
            unavailable(
                f"{script} up failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
                f"{result.stderr[-3000:]}"
            )
        yield
    finally:
        run_command(["bash", str(script), "down"], timeout=COMMAND_TIMEOUT, check=False)


@pytest.fixture(scope="session")
def image(docker_engine: None) -> Iterator[str]:
    """The top-level Dockerfile built for this session (tag removed at the end)."""
    tag = f"channelstream-test-{RUN_ID}:latest"
    docker("build", "-q", "-t", tag, str(REPO_ROOT), timeout=BUILD_TIMEOUT)
    yield tag
    docker("rmi", "-f", tag, check=False)


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Call `condition` until it returns something truthy (returned); fail after `timeout`.

    For container state with no event to read (logs, health status): polled, with a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)  # paces the polling; not a wait for the event itself


def made_secret(log_text: str, name: str) -> str | None:
    """The value the server logged having made for `name` (secret, admin_secret), if any."""
    pattern = (
        rf"(?<!\w){re.escape(name)} is not set: made a random one for this run: (\S+) "
        rf"\(set CHANNELSTREAM_{name.upper()} to choose your own\)"
    )
    found = re.findall(pattern, log_text)
    assert len(found) <= 1, f"{name} logged {len(found)} times:\n{log_text}"
    return found[0] if found else None


@dataclass
class Container:
    """A container started by `run_container`, its port 8000 published on 127.0.0.1."""

    name: str
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def logs(self) -> str:
        result = docker("logs", self.name, check=False)
        return result.stdout + result.stderr

    def inspect(self) -> dict[str, Any]:
        data = json.loads(docker("inspect", self.name).stdout)
        assert isinstance(data, list) and data, data
        return dict(data[0])

    def wait_for_secret(self, name: str = "secret") -> str:
        """The random `name` the server logs at start (waits for the line)."""
        return str(
            wait_until(
                lambda: made_secret(self.logs(), name),
                START_TIMEOUT,
                f"{self.name} to log the {name} it made; its log:\n{self.logs()}",
            )
        )


@pytest.fixture
def run_container(image: str) -> Iterator[Callable[..., Container]]:
    """`run_container(env={...}, options=[...])`: `docker run -d` of the image, its port 8000
    published on a free port of 127.0.0.1; removed at teardown."""
    started: list[Container] = []

    def run(env: Mapping[str, str] | None = None, options: Sequence[str] = ()) -> Container:
        container = Container(f"channelstream-test-{RUN_ID}-{uuid.uuid4().hex[:6]}", free_port())
        started.append(container)
        env_options = [f"--env={key}={value}" for key, value in (env or {}).items()]
        docker(
            "run",
            "-d",
            f"--name={container.name}",
            f"--publish=127.0.0.1:{container.port}:8000",
            *env_options,
            *options,
            image,
        )
        return container

    yield run
    for container in started:
        docker("rm", "-f", "-v", container.name, check=False)


def build_standins() -> None:
    """Images answering to the names deploy/compose.yml uses for Redis and nginx, built from
    Debian packages on engine.sh's base (no registry here), as engine.sh builds its Python.
    A real image under such a name is left alone; without the base, compose pulls the real
    ones."""
    if docker("image", "inspect", DEBIAN_BASE_IMAGE, check=False).returncode != 0:
        return
    compose_text = (REPO_ROOT / "deploy" / "compose.yml").read_text()
    for service in ("redis", "nginx"):
        match = re.search(rf"^\s+image: ({service}:\S+)$", compose_text, re.MULTILINE)
        assert match, f"deploy/compose.yml names no {service} image"
        name = match.group(1)
        labels = docker(
            "image", "inspect", "--format", "{{json .Config.Labels}}", name, check=False
        )
        if labels.returncode == 0 and STANDIN_LABEL not in labels.stdout:
            continue  # the real image is here: use it
        docker("build", "-q", "-t", name, str(STANDINS_DIR / service), timeout=BUILD_TIMEOUT)


def compose_command() -> list[str]:
    """docker-compose (v1), else the docker CLI's compose plugin (v2)."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if (
        shutil.which("docker")
        and run_command(["docker", "compose", "version"], check=False).returncode == 0
    ):
        return ["docker", "compose"]
    unavailable("neither docker-compose nor `docker compose` is installed")
