"""A websocket client that stops reading is closed with 4002 instead of growing the server's
memory, and catches up when it re-attaches (API.md §3 backpressure and close codes).

Sizes: 500 messages of 100 KB (50 MB) are published to a channel. The server keeps, by design,
the newest 100 frames of a channel for catchup (10 MB here) and at most `max_queued_frames`
(10) frames per listener; the kernel's socket buffers hold a few MB more, outside the server's
RSS. Measured on the reference machine: RSS growth ~10.7 MB with the bounded buffer, ~58 MB
when the buffer is effectively unbounded (max_queued_frames = 100000). The bound below, 25 MB,
is the retained catchup frames plus generous allocator slack, and half of what is published.
"""

import select
import socket
import uuid

from tests.e2e.apiclient import ApiClient, WsListener

SECRET = "e2e-backpressure-secret"
MAX_QUEUED_FRAMES = 10
MESSAGES = 500
MESSAGE_BYTES = 100_000
CHANNEL_FRAMES_KEPT = 100  # channelstream.core.model.CHANNEL_FRAMES_KEPT
RSS_GROWTH_BOUND = 25_000_000
SMALL_RCVBUF = [(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)]


def rss_bytes(pid):
    """The process's resident set size, from /proc/<pid>/status (VmRSS, in kB)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def wait_readable(sock, timeout):
    """Wait until the socket has bytes to read (without reading them)."""
    readable, _, _ = select.select([sock], [], [], timeout)
    assert readable, f"nothing to read within {timeout} s"


def test_slow_consumer_is_closed_with_4002_and_catches_up(start_server, listeners):
    server = start_server(settings={"secret": SECRET, "max_queued_frames": MAX_QUEUED_FRAMES})
    api = ApiClient(server.base_url, SECRET)
    room = f"flood-{uuid.uuid4().hex[:8]}"
    conn_id = api.connect("slowpoke", channels=[room])
    # A small receive buffer so that the server's writer blocks soon after the client stops.
    slow = WsListener.open(server.ws_url, conn_id, sockopt=SMALL_RCVBUF)
    listeners.append(slow)
    # Warm up the request path and the allocator with one message of the same size.
    api.publish({"channel": f"warmup-{room}", "user": "u", "message": {"text": "w" * 100}})
    payload = "x" * MESSAGE_BYTES
    api.publish({"channel": f"warmup-{room}", "user": "u", "message": {"text": payload}})
    rss_before = rss_bytes(server.pid)

    for i in range(MESSAGES):  # the client reads nothing meanwhile
        api.publish({"channel": room, "user": "flooder", "message": {"i": i, "text": payload}})

    rss_after = rss_bytes(server.pid)
    growth = rss_after - rss_before
    print(
        f"published {MESSAGES * MESSAGE_BYTES / 1e6:.1f} MB; server RSS {rss_before / 1e6:.1f} MB "
        f"-> {rss_after / 1e6:.1f} MB (growth {growth / 1e6:.1f} MB)"
    )
    assert growth < RSS_GROWTH_BOUND, f"RSS grew {growth / 1e6:.1f} MB"

    # Reading now: what the writer had already taken, then the close.
    assert slow.wait_closed(timeout=10.0) == 4002
    live = [m["message"]["i"] for m in slow.messages]
    assert live == list(range(len(live)))
    assert all(m["catchup"] is False for m in slow.messages)
    assert len(live) < MESSAGES - MAX_QUEUED_FRAMES

    # Re-attach with the same conn_id; ping while the large catchup frame is being written (a
    # pong must not land inside it), then check the catchup: the stored frames not yet served.
    again = WsListener.open(server.ws_url, conn_id, sync=False, sockopt=SMALL_RCVBUF)
    listeners.append(again)
    wait_readable(again.ws.sock, timeout=10.0)  # the server has started writing
    again.sync(timeout=20.0)
    # more than the channel keeps was missed: a gap frame first, never a silent loss
    gap, *caught_up = again.messages
    assert (gap["type"], gap["channel"], gap["catchup"]) == ("gap", room, True)
    catchup = [m["message"]["i"] for m in caught_up]
    assert catchup == list(range(len(live), MESSAGES))[-CHANNEL_FRAMES_KEPT:]
    assert all(m["catchup"] is True for m in again.messages)

    api.publish({"channel": room, "user": "flooder", "message": {"i": "live again"}})
    live_again = again.wait_for(
        lambda m: m.get("message", {}).get("i") == "live again", timeout=5.0
    )
    assert live_again["catchup"] is False
