"""API calls over a kept-alive connection, as a web app's pooled HTTP client makes them, take
no longer than calls on a new connection each.

gevent writes an answer's headers and body in two segments; without TCP_NODELAY, Nagle's
algorithm held the second until the client's delayed ACK, 40 ms on every kept-alive call.
The comparison is with the same server's new-connection calls, measured interleaved, not with
a fixed time: a delayed ACK makes the kept-alive median many times the other one.
"""

from __future__ import annotations

import http.client
import json
import statistics
import time
from collections.abc import Callable

import pytest

from channelstream.client import ChannelstreamClient
from channelstream.signature import sign
from tests.e2e.conftest import HOST

SECRET = "e2e-keepalive-secret"
CALLS = 30
BODY = json.dumps([{"channel": "room", "user": "u", "message": {"text": "hi"}}])


@pytest.fixture(scope="module")
def server(start_module_server):
    return start_module_server(settings={"secret": SECRET, "log_level": "WARNING"})


def post_message(connection: http.client.HTTPConnection) -> None:
    headers = {
        "Content-Type": "application/json",
        "x-channelstream-secret": sign(SECRET, "/message"),
    }
    connection.request("POST", "/message", body=BODY, headers=headers)
    response = connection.getresponse()
    response.read()
    assert response.status == 200


def timed(call: Callable[[], None]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def compare(
    kept_alive: Callable[[], None], new_connection: Callable[[], None]
) -> tuple[float, float]:
    """Medians of interleaved calls (so both see the same machine load): kept-alive, new."""
    kept, new = [], []
    for _ in range(CALLS):
        kept.append(timed(kept_alive))
        new.append(timed(new_connection))
    return statistics.median(kept), statistics.median(new)


def test_a_kept_alive_call_waits_on_no_delayed_ack(server):
    pooled = http.client.HTTPConnection(HOST, server.port, timeout=10)
    post_message(pooled)  # the connection is open and kept from here on

    def new_connection() -> None:
        connection = http.client.HTTPConnection(HOST, server.port, timeout=10)
        try:
            post_message(connection)
        finally:
            connection.close()

    try:
        kept, new = compare(lambda: post_message(pooled), new_connection)
    finally:
        pooled.close()
    assert kept < 2 * new, f"kept-alive median {kept * 1000:.1f} ms, new {new * 1000:.1f} ms"


def test_the_python_client_s_pooled_calls_wait_on_no_delayed_ack(server):
    """`ChannelstreamClient` keeps its connections in a urllib3 pool, as web apps do."""
    pooled = ChannelstreamClient(server.base_url, SECRET)
    pooled.message("u", {"text": "warm"}, channel="room")

    def new_connection() -> None:
        client = ChannelstreamClient(server.base_url, SECRET)
        try:
            client.message("u", {"text": "hi"}, channel="room")
        finally:
            client.close()

    kept, new = compare(lambda: pooled.message("u", {"text": "hi"}, channel="room"), new_connection)
    pooled.close()
    assert kept < 2 * new, f"pooled median {kept * 1000:.1f} ms, new {new * 1000:.1f} ms"
