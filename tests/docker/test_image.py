"""The image of the top-level Dockerfile, run as the seed's README runs it:

    docker run --rm -p 8000:8000 -e CHANNELSTREAM_ALLOW_POSTING_FROM= <image>

(with a free port of 127.0.0.1 instead of 8000)."""

from __future__ import annotations

import subprocess
import urllib.error
from collections.abc import Callable, Iterator

import pytest

from tests.docker.conftest import (
    RUN_ID,
    START_TIMEOUT,
    Container,
    docker,
    made_secret,
    run_command,
    wait_until,
)
from tests.e2e.apiclient import ApiClient, WsListener, has_text, http_request
from tests.e2e.conftest import free_port

# The first test of a session also starts the engine (minutes on a new machine: see
# conftest.py) and builds the image: more than pytest.ini_options' 120 s.
pytestmark = pytest.mark.timeout(1800)

SEED_ENV = {"CHANNELSTREAM_ALLOW_POSTING_FROM": ""}
SERVER_UID = "10001"
STOP_TIMEOUT = 10  # docker stop's grace: the drain must end within it (or SIGKILL: 137)


def answers_health(container: Container) -> bool:
    try:
        return http_request(container.base_url + "/health", timeout=2).status == 200
    except (OSError, urllib.error.URLError):
        return False


@pytest.fixture(scope="module")
def seed_container(image: str) -> Iterator[Container]:
    """One container started by the seed's line, shared by the module's read-only tests."""
    container = Container(f"channelstream-test-{RUN_ID}-seed", free_port())
    docker(
        "run",
        "--rm",
        "-d",
        f"--name={container.name}",
        "-p",
        f"127.0.0.1:{container.port}:8000",
        "-e",
        "CHANNELSTREAM_ALLOW_POSTING_FROM=",
        image,
    )
    try:
        wait_until(
            lambda: answers_health(container),
            START_TIMEOUT,
            f"/health on the seed container; its log:\n{container.logs()}",
        )
        yield container
    finally:
        docker("rm", "-f", "-v", container.name, check=False)


def test_seed_line_serves_health_and_a_signed_connect(seed_container: Container) -> None:
    health = http_request(seed_container.base_url + "/health")
    assert (health.status, health.json) == (200, {"status": "ok"})
    secret = seed_container.wait_for_secret("secret")
    api = ApiClient(seed_container.base_url, secret)
    conn_id = api.connect("alice", channels=["room"])
    with WsListener.open(seed_container.ws_url, conn_id) as listener:
        api.publish({"channel": "room", "user": "bob", "message": {"text": "hi"}})
        listener.wait_for(has_text("hi"))
    # an empty allow_posting_from lets any address call, but never without the secret
    wrong = ApiClient(seed_container.base_url, "not-the-secret").call(
        "/connect", {"username": "mallory"}
    )
    assert wrong.status == 401, wrong.body


def test_without_secrets_it_makes_random_ones_and_logs_them(seed_container: Container) -> None:
    secret = seed_container.wait_for_secret("secret")
    admin_secret = seed_container.wait_for_secret("admin_secret")
    assert secret != admin_secret
    assert len(secret) >= 20 and len(admin_secret) >= 20
    # logged once each (made_secret fails on a second line)
    log_text = seed_container.logs()
    assert made_secret(log_text, "secret") == secret
    assert made_secret(log_text, "admin_secret") == admin_secret


def test_server_runs_as_a_non_root_user(seed_container: Container) -> None:
    assert seed_container.inspect()["Config"]["User"] == "channelstream"
    status = docker("exec", seed_container.name, "cat", "/proc/1/status").stdout
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    assert uids == [SERVER_UID] * 4, status
    assert "channelstream" in docker("exec", seed_container.name, "cat", "/proc/1/cmdline").stdout


def test_healthcheck_turns_healthy(seed_container: Container) -> None:
    """The HEALTHCHECK asks /health every 10 s, the first time 10 s after the start."""

    def health_status() -> str | None:
        state = seed_container.inspect()["State"]
        status = state["Health"]["Status"]
        assert status != "unhealthy", state["Health"]
        return status if status == "healthy" else None

    wait_until(health_status, 40, "the container's health status to turn healthy")


@pytest.mark.parametrize(
    ("variable", "value", "key"),
    [
        ("CHANNELSTREAM_SECRET", "", "secret"),
        ("CHANNELSTREAM_ADMIN_SECRET", "", "admin_secret"),
        ("CHANNELSTREAM_SECRET", "CHANGE-ME-api-secret", "secret"),
    ],
)
def test_empty_or_placeholder_secret_is_refused(
    image: str, variable: str, value: str, key: str
) -> None:
    result = run_command(["docker", "run", "--rm", "-e", f"{variable}={value}", image], check=False)
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert key in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def ready_status(container: Container) -> int | None:
    """GET /ready's status, or None once nothing answers."""
    try:
        return http_request(container.base_url + "/ready", timeout=2).status
    except (OSError, urllib.error.URLError):
        return None


def test_docker_stop_drains(run_container: Callable[..., Container]) -> None:
    """SIGTERM reaches the server (PID 1, no --init): /ready turns 503 while it still listens,
    a websocket gets 1001, and it exits 0 before docker stop would SIGKILL it (137)."""
    container = run_container(SEED_ENV)
    wait_until(lambda: answers_health(container), START_TIMEOUT, "/health")
    api = ApiClient(container.base_url, container.wait_for_secret())
    conn_id = api.connect("alice", channels=["room"])
    listener = WsListener.open(container.ws_url, conn_id)
    try:
        assert ready_status(container) == 200
        stopping = subprocess.Popen(
            ["docker", "stop", "-t", str(STOP_TIMEOUT), container.name],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:

            def first_answer_not_200() -> list[int | None] | None:
                status = ready_status(container)
                return None if status == 200 else [status]

            [first] = wait_until(first_answer_not_200, STOP_TIMEOUT, "/ready to leave 200")
            assert first == 503, "the listener closed without /ready answering 503 first"
            assert listener.wait_closed(timeout=STOP_TIMEOUT) == 1001
            assert stopping.wait(timeout=STOP_TIMEOUT + 20) == 0
        finally:
            if stopping.poll() is None:
                stopping.kill()
    finally:
        listener.close()
    state = container.inspect()["State"]
    assert (state["Running"], state["ExitCode"]) == (False, 0), state
    assert "draining" in container.logs()
