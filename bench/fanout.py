"""Fan-out benchmark: N websocket subscribers on one channel, messages published through the
signed API, all on 127.0.0.1.

    .venv/bin/python bench/fanout.py --subscribers 1000 --messages 200 --rate 100
    .venv/bin/python bench/fanout.py --nodes 2 --broker redis://127.0.0.1:6379/0

With `--nodes 2` (needs `--broker redis://...`), subscribers are spread over the nodes and
messages published through the first one: the cross-node figure. Server CPU is summed over
the nodes.

Starts a server process (`channelstream -i` with a temporary ini) and measures from a separate
load-generator process (this one, on gevent): deliveries per second, publish-to-receive latency
p50/p99, and the server's CPU seconds per 1,000 deliveries (from /proc/PID/stat). The load
generator's own CPU time is printed too, to show whether it, not the server, was the bottleneck.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import websocket  # noqa: E402
from gevent.event import Event  # noqa: E402

from channelstream.signature import sign  # noqa: E402

SECRET = "bench-secret"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def server_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def start_server(port: int, workdir: Path, broker: str, prefix: str) -> subprocess.Popen[bytes]:
    ini = workdir / f"bench-{port}.ini"
    ini.write_text(
        f"[channelstream]\nhost = 127.0.0.1\nport = {port}\nsecret = {SECRET}\n"
        f"log_level = WARNING\nmax_queued_frames = 10000\nbroker = {broker}\n"
        f"redis_prefix = {prefix}\nadmin_secret = bench-admin\n"
    )
    binary = Path(sys.executable).parent / "channelstream"
    process = subprocess.Popen([str(binary), "-i", str(ini)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process
        except OSError:
            gevent.sleep(0.05)
    process.kill()
    raise SystemExit("server did not start")


def call(base: str, path: str, payload: object) -> object:
    request = urllib.request.Request(
        base + path,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "x-channelstream-secret": sign(SECRET, path)},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(
    subscribers: int, messages: int, rate: float, payload_bytes: int, nodes: int, broker: str
) -> dict[str, float]:
    ports = [free_port() for _ in range(nodes)]
    prefix = f"bench-{os.getpid()}-{time.time_ns()}"
    with tempfile.TemporaryDirectory() as workdir:
        servers = [start_server(port, Path(workdir), broker, prefix) for port in ports]
        try:
            return measure(
                ports, [s.pid for s in servers], subscribers, messages, rate, payload_bytes
            )
        finally:
            for server in servers:
                server.terminate()
                server.wait(10)
            if broker.startswith("redis"):
                import redis

                client = redis.Redis.from_url(broker)
                keys = list(client.scan_iter(match=f"{prefix}:*"))
                if keys:
                    client.delete(*keys)


def measure(
    ports: list[int], pids: list[int], subscribers: int, messages: int, rate: float, size: int
) -> dict[str, float]:
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    base = bases[0]
    latencies: list[float] = []
    received = [0]
    expected = subscribers * messages
    done = Event()
    sockets = []
    rss_before = sum(server_rss_kib(pid) for pid in pids)
    for index in range(subscribers):
        node = index % len(ports)
        conn_id = call(
            bases[node], "/connect", {"username": f"user{index}", "channels": ["bench"]}
        )["conn_id"]
        sockets.append(
            websocket.create_connection(f"ws://127.0.0.1:{ports[node]}/ws?conn_id={conn_id}")
        )
    rss_connected = sum(server_rss_kib(pid) for pid in pids)

    def reader(ws: websocket.WebSocket) -> None:
        while received[0] < expected:
            try:
                frames = json.loads(ws.recv())
            except Exception:
                return
            now = time.time()
            for frame in frames:
                if frame.get("type") == "message":
                    latencies.append(now - frame["message"]["sent"])
                    received[0] += 1
        done.set()

    readers = [gevent.spawn(reader, ws) for ws in sockets]
    padding = "x" * size
    cpu_before = sum(server_cpu_seconds(pid) for pid in pids)
    own_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.time()
    for number in range(messages):
        due = started + number / rate
        gevent.sleep(max(0.0, due - time.time()))
        call(
            base,
            "/message",
            [{"channel": "bench", "user": "bench", "message": {"sent": time.time(), "p": padding}}],
        )
    done.wait(timeout=60 + messages / rate)
    elapsed = time.time() - started
    cpu_used = sum(server_cpu_seconds(pid) for pid in pids) - cpu_before
    own_after = resource.getrusage(resource.RUSAGE_SELF)
    own_cpu = own_after.ru_utime + own_after.ru_stime - own_before.ru_utime - own_before.ru_stime
    gevent.killall(readers)
    for ws in sockets:
        ws.close()
    return {
        "nodes": len(ports),
        "subscribers": subscribers,
        "messages": messages,
        "deliveries": received[0],
        "expected": expected,
        "seconds": elapsed,
        "deliveries_per_s": received[0] / elapsed,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": 1000 * percentile(latencies, 0.99) if latencies else float("nan"),
        "server_cpu_s_per_1000": 1000 * cpu_used / max(1, received[0]),
        "server_cpu_s": cpu_used,
        "loadgen_cpu_s": own_cpu,
        "rss_per_connection_kib": (rss_connected - rss_before) / max(1, subscribers),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--rate", type=float, default=100.0, help="publishes per second")
    parser.add_argument("--payload-bytes", type=int, default=100)
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--broker", default="memory", help="memory or redis://host:port/db")
    args = parser.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.nodes > 1 and not args.broker.startswith("redis"):
        parser.error("--nodes > 1 needs --broker redis://...")
    columns = (
        "nodes",
        "subscribers",
        "deliveries",
        "expected",
        "deliveries_per_s",
        "p50_ms",
        "p99_ms",
        "server_cpu_s_per_1000",
        "server_cpu_s",
        "loadgen_cpu_s",
        "rss_per_connection_kib",
    )
    print(" | ".join(columns))
    for count in args.subscribers:
        result = run(count, args.messages, args.rate, args.payload_bytes, args.nodes, args.broker)
        print(
            " | ".join(
                f"{result[c]:.2f}" if isinstance(result[c], float) else str(result[c])
                for c in columns
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
