"""One large batch against everyone else: while a caller posts batches of 9,999 messages
(`POST /message`, ~660 KB each), how long does another client's message take to reach its
websocket? Our server and the original Channelstream 0.7.1 side by side.

    .venv/bin/python bench/batch_stall.py                  # 200 probes quiet, 200 under batches
    .venv/bin/python bench/batch_stall.py --target ours --probes 100

Runs inside a private network namespace (see servers.py). Everything calls as a web app and
a browser do: the probe and the batches are plain signed HTTP requests on a new connection
each (urllib, no socket options of its own), the probe's listener is a real websocket client.
A probe is timed from just before its `POST /message` to its arrival on the websocket, so it
includes waiting for the server to take the request. The batches go to a channel nobody
listens to: what is measured is the server being busy, not delivering the batch.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import urllib.request
from typing import Any

import servers
import websocket

COLUMNS = (
    "target",
    "phase",
    "probes",
    "lost",
    "p50_ms",
    "p99_ms",
    "max_ms",
    "batches",
    "batch_s",
)
PROBE_INTERVAL = 0.02


class Api:
    """Signed calls, each on a new HTTP connection, as a web app's HTTP library makes them."""

    def __init__(self, port: int) -> None:
        self.base = f"http://{servers.HOST}:{port}"
        self.tokens = servers.Tokens()

    def call(self, path: str, body: Any, timeout: float = 60.0) -> Any:
        request = urllib.request.Request(
            self.base + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={
                "Content-Type": "application/json",
                "x-channelstream-secret": self.tokens(path),
            },
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)


class ProbeListener:
    """The probe's websocket: records when each probe message arrives."""

    def __init__(self, port: int, conn_id: str) -> None:
        self.ws = websocket.create_connection(
            f"ws://{servers.HOST}:{port}/ws?conn_id={conn_id}", timeout=60
        )
        self.arrived: dict[int, float] = {}
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                text = self.ws.recv()
            except Exception:  # closed at the end of the run
                return
            now = time.monotonic()
            for message in json.loads(text or "[]"):
                probe = (message.get("message") or {}).get("probe")
                if isinstance(probe, int):
                    self.arrived.setdefault(probe, now)

    def close(self) -> None:
        self.ws.close()


def probe_latencies(
    api: Api, listener: ProbeListener, first: int, count: int
) -> tuple[list[float], int]:
    """Send `count` probes PROBE_INTERVAL apart; their latencies (ms) and how many never came."""
    sent: dict[int, float] = {}
    for number in range(first, first + count):
        sent[number] = time.monotonic()
        api.call("/message", [{"channel": "probe", "user": "probe", "message": {"probe": number}}])
        time.sleep(PROBE_INTERVAL)
    deadline = time.monotonic() + 30
    while len([n for n in sent if n in listener.arrived]) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    latencies = [(listener.arrived[n] - t) * 1000 for n, t in sent.items() if n in listener.arrived]
    return latencies, count - len(latencies)


def run_one(target: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    batch = [
        {"channel": "bulk", "user": "bulk", "message": {"text": f"bulk message number {i:05d}"}}
        for i in range(args.batch_size)
    ]
    with servers.running_server(target, "batch_stall") as server:
        api = Api(server.port)
        conn_id = api.call("/connect", {"username": "probe", "channels": ["probe"]})["conn_id"]
        listener = ProbeListener(server.port, conn_id)
        try:
            probe_latencies(api, listener, 0, 20)  # warm-up
            quiet, quiet_lost = probe_latencies(api, listener, 1000, args.probes)
            rows.append(row(target, "quiet", quiet, quiet_lost, 0, 0.0))

            stop = threading.Event()
            durations: list[float] = []

            def post_batches() -> None:
                while not stop.is_set():
                    started = time.monotonic()
                    api.call("/message", batch, timeout=120)
                    durations.append(time.monotonic() - started)

            poster = threading.Thread(target=post_batches, daemon=True)
            poster.start()
            loaded, loaded_lost = probe_latencies(api, listener, 100_000, args.probes)
            stop.set()
            poster.join(timeout=120)
            mean = sum(durations) / len(durations) if durations else float("nan")
            rows.append(row(target, "batches", loaded, loaded_lost, len(durations), mean))
        finally:
            listener.close()
    return rows


def row(
    target: str, phase: str, latencies: list[float], lost: int, batches: int, batch_s: float
) -> dict[str, Any]:
    return {
        "target": target,
        "phase": phase,
        "probes": len(latencies) + lost,
        "lost": lost,
        "p50_ms": servers.percentile(latencies, 0.50),
        "p99_ms": servers.percentile(latencies, 0.99),
        "max_ms": max(latencies, default=float("nan")),
        "batches": batches,
        "batch_s": batch_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    servers.add_common_options(parser)
    parser.add_argument("--probes", type=int, default=200, help="probes per phase (200)")
    parser.add_argument(
        "--batch-size", type=int, default=9999, help="messages per batch request (9999)"
    )
    args = parser.parse_args()
    servers.begin(
        "batch_stall: another client's delivery latency while batches of "
        f"{args.batch_size} messages are posted",
        f"probes: {args.probes} per phase, one every {PROBE_INTERVAL * 1000:.0f} ms, each a "
        "signed POST /message on a new connection, timed to its arrival on a websocket",
    )
    servers.print_table(COLUMNS, servers.rows_per_target(args.target, lambda t: run_one(t, args)))


if __name__ == "__main__":
    main()
