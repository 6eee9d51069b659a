"""User-space CPU of the node's fan-out path alone, in one process: no HTTP, no load generator.

`fanout.py` measures what users feel (signed `POST /message`, real websocket clients, both on
this host); its `usr_us/d` column mixes the request's cost, amortised over the recipients,
with the per-recipient loop. This script isolates the loop, to see what a change to it
is worth: one `Node` (memory broker), `--listeners` connections in one channel, each with a
real `WebSocketListener` on one end of a Unix socket pair, and `--messages` calls of
`Node.publish` with one message each (`--per-call` to join several). The other ends are
drained by a second process, so the kernel buffers never fill. Prints the process's user and
kernel CPU per delivery (getrusage), and deliveries per CPU second.

    .venv/bin/python bench/delivery_path.py --listeners 1000 --messages 2000
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import socket
import uuid
from datetime import UTC, datetime
from multiprocessing.connection import Connection as Pipe

import gevent.selectors

from channelstream.core.commands import Connect
from channelstream.core.model import PublishItem
from channelstream.node import Node
from channelstream.settings import Settings
from channelstream.transport.websocket import FrameCache, WebSocketListener


def drain(sockets: list[socket.socket], ready: Pipe) -> None:
    """Read and throw away everything the listeners write, until they all close."""
    selector = gevent.selectors.DefaultSelector()
    for sock in sockets:
        sock.setblocking(False)
        selector.register(sock, 1)
    ready.send("ready")
    open_count = len(sockets)
    while open_count:
        for key, _ in selector.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(1 << 20)
            except BlockingIOError:
                continue
            if not data:
                selector.unregister(sock)
                open_count -= 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listeners", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=2000, help="publish calls (2,000)")
    parser.add_argument("--per-call", type=int, default=1, help="messages per call (1)")
    args = parser.parse_args()

    settings = Settings.from_sources(
        {"secret": "bench", "admin_secret": "bench", "max_queued_frames": 1_000_000},
        environ={},
    )
    node = Node(settings)
    frames = FrameCache()
    ends: list[socket.socket] = []
    for index in range(args.listeners):
        conn_id = uuid.uuid4().hex
        node.submit(Connect(username=f"u{index}", conn_id=conn_id, channels=("room",)))
        server_end, client_end = socket.socketpair()
        server_end.setblocking(False)
        outbox = node.attach(conn_id, "ws")
        WebSocketListener(server_end, node, outbox, frames, "bench").start(b"")
        ends.append(client_end)
    parent_end, child_end = multiprocessing.Pipe()
    drainer = multiprocessing.get_context("fork").Process(target=drain, args=(ends, child_end))
    drainer.start()
    parent_end.recv()
    for end in ends:
        end.close()

    def publish(count: int) -> None:
        for call in range(count):
            now = datetime.now(UTC).replace(tzinfo=None).isoformat()
            node.publish(
                PublishItem(
                    channel="room",
                    user="bench",
                    message={"text": "a fan-out message of a realistic size", "n": call, "i": i},
                    uuid=uuid.uuid4().hex,
                    timestamp=now,
                )
                for i in range(args.per_call)
            )

    publish(50)  # warm up
    before = resource.getrusage(resource.RUSAGE_SELF)
    publish(args.messages)
    after = resource.getrusage(resource.RUSAGE_SELF)
    deliveries = args.messages * args.per_call * args.listeners
    user = after.ru_utime - before.ru_utime
    kernel = after.ru_stime - before.ru_stime
    print(
        f"listeners {args.listeners:,}  calls {args.messages:,} x {args.per_call}  "
        f"deliveries {deliveries:,}  usr_us/d {1e6 * user / deliveries:.3f}  "
        f"sys_us/d {1e6 * kernel / deliveries:.3f}  deliv/cpu_s {deliveries / (user + kernel):,.0f}"
    )
    node.stop()
    drainer.join(timeout=30)


if __name__ == "__main__":
    main()
