"""deploy/compose.yml for real (docker-compose v1, or `docker compose` v2 where there is one):
Redis, two nodes sharing made-at-first-start secrets, nginx on one published port.

Each node is also published on a port of its own by an override file, so a test can tell
which node it talks to; the message then crosses from one node to the other through Redis.
The stack is torn down (`down -v`) at the end, also on failure."""

from __future__ import annotations

import os
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.docker.conftest import (
    BUILD_TIMEOUT,
    REPO_ROOT,
    RUN_ID,
    build_standins,
    compose_command,
    run_command,
    wait_until,
)
from tests.e2e.apiclient import ApiClient, WsListener, has_text, http_request
from tests.e2e.conftest import free_port

# The first test of a session also starts the engine (minutes on a new machine: see
# conftest.py) and builds the image: more than pytest.ini_options' 120 s.
pytestmark = pytest.mark.timeout(1800)

COMPOSE_FILE = REPO_ROOT / "deploy" / "compose.yml"
UP_TIMEOUT = 300.0
NODES = ("node1", "node2")


@dataclass
class Stack:
    """A running stack: nginx's published port, each node's own port, and how to run compose."""

    command: list[str]
    environ: dict[str, str]
    nginx_port: int
    node_ports: dict[str, int]

    def compose(self, *args: str, check: bool = True, timeout: float = 120.0) -> str:
        result = run_command([*self.command, *args], env=self.environ, check=check, timeout=timeout)
        return result.stdout + result.stderr

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}"

    def secret(self, name: str) -> str:
        """What the `secrets` service logged for `name`: the documented way to learn it."""
        logs = self.compose("logs", "--no-color", "secrets")
        found = re.findall(rf"\| {re.escape(name)}: (\S+) ", logs)
        assert len(found) == 1, logs
        return found[0]


def override_file(directory: Path, node_ports: dict[str, int]) -> Path:
    """Publishes each node's port 8000 on its own port of 127.0.0.1 (tests only)."""
    lines = ["services:"]
    for node, port in node_ports.items():
        lines += [f"  {node}:", "    ports:", f'      - "127.0.0.1:{port}:8000"']
    path = directory / "compose.test.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def stack(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    command = compose_command()
    build_standins()
    node_ports = {node: free_port() for node in NODES}
    override = override_file(tmp_path_factory.mktemp("compose"), node_ports)
    nginx_port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CHANNELSTREAM_")}
    environ.update(
        COMPOSE_PROJECT_NAME=f"channelstreamtest{RUN_ID}",
        CHANNELSTREAM_IMAGE=image,  # built already: compose uses it instead of building
        CHANNELSTREAM_PUBLISH=f"127.0.0.1:{nginx_port}",
        CHANNELSTREAM_SUBNET=f"10.213.{random.randrange(256)}.0/24",
    )
    running = Stack(
        [*command, "-f", str(COMPOSE_FILE), "-f", str(override)], environ, nginx_port, node_ports
    )
    try:
        result = run_command(
            [*running.command, "up", "-d"], env=environ, check=False, timeout=UP_TIMEOUT
        )
        if result.returncode != 0:
            logs = running.compose("logs", "--no-color", check=False)
            pytest.fail(f"compose up failed:\n{result.stdout}\n{result.stderr}\n{logs}")
        wait_until(
            lambda: answers(running.url(nginx_port) + "/ready"),
            60,
            "/ready through nginx",
        )
        yield running
    finally:
        running.compose("down", "-v", "--remove-orphans", check=False, timeout=BUILD_TIMEOUT)


def answers(url: str) -> bool:
    try:
        return http_request(url, timeout=2).status == 200
    except OSError:
        return False


def listen(url: str, conn_id: str) -> WsListener:
    return WsListener.open(url.replace("http://", "ws://") + "/ws", conn_id)


def test_message_crosses_nodes_through_redis(stack: Stack) -> None:
    secret = stack.secret("secret")
    node1 = ApiClient(stack.url(stack.node_ports["node1"]), secret)
    node2 = ApiClient(stack.url(stack.node_ports["node2"]), secret)
    alice = node1.connect("alice", channels=["room"])
    bob = node2.connect("bob", channels=["room"])
    with listen(node1.base_url, alice) as on_node1, listen(node2.base_url, bob) as on_node2:
        node2.publish({"channel": "room", "user": "bob", "message": {"text": "from node2"}})
        on_node1.wait_for(has_text("from node2"), timeout=10)
        node1.publish({"channel": "room", "user": "alice", "message": {"text": "from node1"}})
        on_node2.wait_for(has_text("from node1"), timeout=10)


def test_nginx_serves_the_cluster_on_one_port(stack: Stack) -> None:
    api = ApiClient(stack.url(stack.nginx_port), stack.secret("secret"))
    conn_id = api.connect("carol", channels=["lobby"])
    with listen(api.base_url, conn_id) as listener:
        api.publish({"channel": "lobby", "user": "dave", "message": {"text": "via nginx"}})
        listener.wait_for(has_text("via nginx"), timeout=10)
    # the public entry serves no /metrics; Prometheus scrapes each node itself
    assert http_request(api.base_url + "/metrics").status == 403


def test_nodes_share_the_secrets_made_at_first_start(stack: Stack) -> None:
    values: dict[str, Sequence[str]] = {}
    for node in NODES:
        values[node] = [
            stack.compose("exec", "-T", node, "cat", f"/var/lib/channelstream/{name}")
            for name in ("secret", "admin_secret", "cookie_secret")
        ]
    assert values["node1"] == values["node2"]
    assert values["node1"][:2] == [stack.secret("secret"), stack.secret("admin_secret")]


def test_prometheus_may_scrape_a_node_unsigned_from_the_stack_network(stack: Stack) -> None:
    scrape = (
        "import urllib.request; "
        "print(urllib.request.urlopen('http://node1:8000/metrics', timeout=5).read().decode())"
    )
    metrics = stack.compose("exec", "-T", "node2", "python", "-c", scrape)
    assert "channelstream_ready 1.0" in metrics, metrics
