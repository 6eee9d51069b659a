"""A Redis restart under a running cluster: the nodes report it (/ready 503, API writes 503
JSON at once, attaching sockets close 1013), keep their sockets open, and serve the cluster
again once Redis is back, on the same websockets."""

from __future__ import annotations

import time
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.e2e.apiclient import WsListener, has_text, is_presence
from tests.multinode.conftest import PRESENCE_TTL
from tests.multinode.helpers import poll, presence_of, ready_status, text, unique
from tests.multinode.tcpproxy import TcpProxy
from tests.redis_server import RedisProcess

PROMPT_SECONDS = 3.0  # a write must be refused quickly, not after hanging on Redis
# A long presence_ttl makes the nodes announce themselves only every 5 s (presence_ttl / 4,
# at most 5 s): after Redis comes back empty, a node's liveness key stays missing for up to
# that long, which is when a leader could wrongly take it for dead.
RESTART_PRESENCE_TTL = 20
ANNOUNCE_INTERVAL = 5.0
PARTED_MARGIN = 2.0  # the leader looks every second; and the frame travels


@pytest.fixture
def private_redis(tmp_path_factory):
    """A redis-server of this test's own, stopped after the nodes (requested first)."""
    server = RedisProcess(tmp_path_factory.mktemp("private-redis"))
    server.start()
    yield server
    server.stop()


def test_cluster_survives_a_redis_restart(private_redis, start_node, listeners):
    a = start_node(
        broker=private_redis.url, heartbeat_interval=1, presence_ttl=RESTART_PRESENCE_TTL
    )
    b = start_node(
        broker=private_redis.url, heartbeat_interval=1, presence_ttl=RESTART_PRESENCE_TTL
    )
    room = unique("room")
    conn_a = a.api.connect(unique("on-a"), channels=[room])
    conn_b = b.api.connect(unique("on-b"), channels=[room])
    ws_a, ws_b = listeners(a, conn_a), listeners(b, conn_b)
    spare = b.api.connect(unique("spare"), channels=[room])  # attached during the outage
    a.api.publish(text(room, "before"))
    for ws in (ws_a, ws_b):
        ws.wait_for(has_text("before"), timeout=5)

    private_redis.stop()

    for node in (a, b):
        poll(lambda node=node: ready_status(node.base_url) == 503, timeout=10, what="/ready 503")
    started = time.monotonic()
    refused = a.api.call("/message", [text(room, "during")])
    refused_after = time.monotonic() - started
    assert refused.status == 503, refused.body
    assert refused.content_type.startswith("application/json")
    assert refused.json["error"] == "unavailable", refused.json
    assert refused_after < PROMPT_SECONDS, refused_after
    assert b.api.call("/connect", {"username": "x", "channels": [room]}).status == 503
    attaching = WsListener.open(b.ws_url, spare, sync=False)
    try:
        assert attaching.wait_closed(timeout=PROMPT_SECONDS + 5) == 1013
    finally:
        attaching.close()
    print(f"/message refused with 503 in {refused_after:.3f} s")

    restarted = time.monotonic()
    private_redis.start()  # same port, empty: no persistence
    for node in (a, b):
        poll(lambda node=node: ready_status(node.base_url) == 200, timeout=15, what="/ready 200")
    print(f"/ready 200 on both nodes {time.monotonic() - restarted:.2f} s after the restart")

    # The sockets opened before the outage still get what either node publishes.
    a.api.publish(text(room, "after from a"))
    b.api.publish(text(room, "after from b"))
    for ws in (ws_a, ws_b):
        ws.wait_for(has_text("after from b"), timeout=10)
        assert [t for t in _texts(ws) if t != "before"] == ["after from a", "after from b"]
        assert ws.close_code is None

    # And new connections work across nodes.
    late = listeners(b, a.api.connect(unique("late"), channels=[room]))
    a.api.publish(text(room, "for everyone"))
    for ws in (ws_a, ws_b, late):
        ws.wait_for(has_text("for everyone"), timeout=10)

    # Redis came back empty: no node's liveness key survived. No node may be taken for dead
    # for that: once every node has announced itself again, and the leader has looked (every
    # second), the sockets are still open (heartbeats are read meanwhile) and served.
    settled = restarted + ANNOUNCE_INTERVAL + 1.5
    while time.monotonic() < settled:
        ws_b.next_frames(timeout=3)  # heartbeats (1 s); fails if the socket closes
    b.api.publish(text(room, "still here"))
    for ws in (ws_a, ws_b, late):
        ws.wait_for(has_text("still here"), timeout=10)
        assert ws.close_code is None
    # The spare connection never got a listener: its user parted after presence_grace (it is
    # kept for a re-attach until gc_conns_after). The three listened-to users remain.
    poll(
        lambda: len(a.api.ok("/info")["channels"][room]["users"]) == 3,
        timeout=10,
        what="the spare connection's user parted",
    )
    info_a, info_b = a.api.ok("/info"), b.api.ok("/info")
    assert info_a == info_b
    assert len(info_a["channels"][room]["users"]) == 3, info_a
    for node in (a, b):
        assert "stopped announcing itself" not in node.log_text()


def _texts(ws):
    return [m["message"]["text"] for m in ws.messages if m.get("type") == "message"]


@pytest.fixture
def proxy_to_redis(redis_url):
    """A TcpProxy to the test Redis (the URL's host and port), closed after the nodes."""
    parts = urlsplit(redis_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379)
    yield proxy, urlunsplit(parts._replace(netloc=f"127.0.0.1:{proxy.port}"))
    proxy.close()


def test_a_node_cut_off_from_redis_is_taken_for_dead_and_closes_its_sockets_when_back(
    proxy_to_redis, start_node, listeners
):
    proxy, proxied_url = proxy_to_redis
    a = start_node()  # the leader, on Redis directly
    b = start_node(broker=proxied_url, heartbeat_interval=1)  # through the proxy
    room = unique("room")
    config = {"channel_configs": {room: {"notify_presence": True}}}
    user, other = unique("u"), unique("v")
    observer = listeners(a, a.api.connect(unique("observer"), [room], **config))
    user_ws = listeners(b, a.api.connect(user, [room], **config))  # listened to on B
    other_ws = listeners(a, b.api.connect(other, [room], **config))  # made on B, on A
    observer.wait_for(is_presence(other, "joined"), timeout=5)

    cut_at = time.monotonic()
    proxy.cut()
    poll(lambda: ready_status(b.base_url) == 503, timeout=10, what="/ready 503 on B")
    observer.wait_for(is_presence(user, "parted"), timeout=PRESENCE_TTL + PARTED_MARGIN + 3)
    parted_after = time.monotonic() - cut_at
    print(f"B's listeners ended {parted_after:.2f} s after B lost Redis")
    assert parted_after <= PRESENCE_TTL + PARTED_MARGIN
    users = a.api.ok("/info", {"info": {"channels": [room]}})["channels"][room]["users"]
    assert user not in users and other in users

    proxy.restore()
    poll(lambda: ready_status(b.base_url) == 200, timeout=15, what="/ready 200 on B")
    # B applies what it missed, its own connections' end included: the socket it still holds
    # for that connection closes (4001: ask for a new connection) instead of staying open
    # with heartbeats and no messages.
    assert user_ws.wait_closed(timeout=10) == 4001

    again = listeners(b, a.api.connect(user, [room], **config))
    observer.wait_for(is_presence(user, "joined"), timeout=5)
    b.api.publish(text(room, "back"))
    for ws in (observer, again, other_ws):
        ws.wait_for(has_text("back"), timeout=5)
    assert presence_of(observer.messages, user) == ["joined", "parted", "joined"]
    assert presence_of(observer.messages, other) == ["joined"]
    assert a.api.ok("/info") == b.api.ok("/info")
