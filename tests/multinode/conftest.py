"""A cluster of real `channelstream -i` processes sharing one Redis broker.

    def test_something(start_node):
        a, b = start_node(), start_node()
        api_a, api_b = a.api, b.api
        ...

`start_node(**settings)` starts one node (tests/e2e/conftest.py's ServerLauncher) with the
cluster's `secret`, `broker` (the test Redis, or `broker=` another URL), the test's own
`redis_prefix` and a short `presence_ttl`; extra settings override these. Nodes are stopped
(SIGTERM, then SIGKILL) before the test's Redis keys are deleted, so a stopping node cannot
write keys back after the clean-up. A node the test killed itself is only reaped.

`listeners` collects websockets opened by a test and closes them at teardown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.apiclient import ApiClient, WsListener
from tests.e2e.conftest import RunningServer, ServerLauncher

SECRET = "multinode-secret"
PRESENCE_TTL = 3


@dataclass
class ClusterNode:
    """A started node: the process and a signed API client for it."""

    server: RunningServer
    api: ApiClient

    @property
    def pid(self) -> int:
        return self.server.pid

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def ws_url(self) -> str:
        return self.server.ws_url

    def log_text(self) -> str:
        return self.server.log_text()


@pytest.fixture
def start_node(
    redis_url: str, redis_prefix: str, tmp_path: Path
) -> Iterator[Callable[..., ClusterNode]]:
    """Factory: `start_node(**settings)` -> a ClusterNode of this test's cluster."""
    # Depending on redis_prefix makes this fixture's teardown (stopping the nodes) run before
    # the prefix's keys are deleted.
    launcher = ServerLauncher(tmp_path)

    def start(**settings: Any) -> ClusterNode:
        values = {
            "secret": SECRET,
            "broker": redis_url,
            "redis_prefix": redis_prefix,
            "presence_ttl": PRESENCE_TTL,
            **settings,
        }
        server = launcher.start(settings=values)
        return ClusterNode(server=server, api=ApiClient(server.base_url, SECRET))

    yield start
    launcher.stop_all()


@pytest.fixture
def listeners() -> Iterator[Callable[..., WsListener]]:
    """`listen(node, conn_id)`: a WsListener attached on that node, closed at teardown."""
    opened: list[WsListener] = []

    def listen(node: ClusterNode, conn_id: str, **kwargs: Any) -> WsListener:
        listener = WsListener.open(node.ws_url, conn_id, **kwargs)
        opened.append(listener)
        return listener

    yield listen
    for listener in opened:
        listener.close()
