"""Per-call latency of signed API calls as a web app makes them: over a kept-alive connection
(a pooled HTTP client) and on a new connection each, for our server and the original
Channelstream 0.7.1 side by side.

    .venv/bin/python bench/keepalive_latency.py                 # 500 calls of each kind
    .venv/bin/python bench/keepalive_latency.py --target ours --calls 200

Runs inside a private network namespace (see servers.py). The clients are the standard
library's `http.client` (kept-alive: one connection for every call) and the project's own
`ChannelstreamClient` (a urllib3 pool), with no socket options of their own: a server whose
answers wait on the client's delayed ACK (Nagle: headers and body in two segments) shows it
here as ~40 ms per kept-alive call.
"""

from __future__ import annotations

import argparse
import http.client
import json
import time
from collections.abc import Callable
from typing import Any

import servers

from channelstream.client import ChannelstreamClient

COLUMNS = ("target", "client", "calls", "p50_ms", "p99_ms", "calls/s")
BODY = json.dumps([{"channel": "room", "user": "u", "message": {"text": "hello"}}])


def timed_calls(call: Callable[[], None], count: int) -> list[float]:
    call()  # warm-up (and, for a kept-alive client, opening its connection)
    times = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def post_message(connection: http.client.HTTPConnection, tokens: servers.Tokens) -> None:
    headers = {"Content-Type": "application/json", "x-channelstream-secret": tokens("/message")}
    connection.request("POST", "/message", body=BODY, headers=headers)
    response = connection.getresponse()
    response.read()
    if response.status != 200:
        raise SystemExit(f"bench: POST /message answered {response.status}")


def run_one(target: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    tokens = servers.Tokens()
    with servers.running_server(target, "keepalive_latency") as server:
        kept = http.client.HTTPConnection(servers.HOST, server.port, timeout=30)

        def new_connection() -> None:
            connection = http.client.HTTPConnection(servers.HOST, server.port, timeout=30)
            try:
                post_message(connection, tokens)
            finally:
                connection.close()

        pool = ChannelstreamClient(f"http://{servers.HOST}:{server.port}", servers.SECRET)
        clients: list[tuple[str, Callable[[], None]]] = [
            ("http.client kept-alive", lambda: post_message(kept, tokens)),
            ("http.client new conn", new_connection),
            ("ChannelstreamClient pool", lambda: pool.messages([json.loads(BODY)[0]])),
        ]
        try:
            for name, call in clients:
                times = timed_calls(call, args.calls)
                rows.append(
                    {
                        "target": target,
                        "client": name,
                        "calls": len(times),
                        "p50_ms": servers.percentile(times, 0.50),
                        "p99_ms": servers.percentile(times, 0.99),
                        "calls/s": 1000 * len(times) / sum(times),
                    }
                )
        finally:
            kept.close()
            pool.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    servers.add_common_options(parser)
    parser.add_argument("--calls", type=int, default=500, help="calls per client (500)")
    args = parser.parse_args()
    servers.begin(
        "keepalive_latency: signed POST /message, one call at a time, per client kind",
        f"calls: {args.calls} per client; no socket options on any client",
    )
    servers.print_table(COLUMNS, servers.rows_per_target(args.target, lambda t: run_one(t, args)))


if __name__ == "__main__":
    main()
