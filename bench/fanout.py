"""Fan-out benchmark: N websocket subscribers on one channel, messages published through the
signed API, all on 127.0.0.1.

    .venv/bin/python bench/fanout.py --subscribers 1000 --messages 200 --rate 100

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


def start_server(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    ini = workdir / "bench.ini"
    ini.write_text(
        f"[channelstream]\nhost = 127.0.0.1\nport = {port}\nsecret = {SECRET}\n"
        "log_level = WARNING\nmax_queued_frames = 10000\n"
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


def run(subscribers: int, messages: int, rate: float, payload_bytes: int) -> dict[str, float]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as workdir:
        server = start_server(port, Path(workdir))
        try:
            return measure(base, port, server.pid, subscribers, messages, rate, payload_bytes)
        finally:
            server.terminate()
            server.wait(10)


def measure(
    base: str, port: int, pid: int, subscribers: int, messages: int, rate: float, size: int
) -> dict[str, float]:
    latencies: list[float] = []
    received = [0]
    expected = subscribers * messages
    done = Event()
    sockets = []
    rss_before = server_rss_kib(pid)
    for index in range(subscribers):
        conn_id = call(base, "/connect", {"username": f"user{index}", "channels": ["bench"]})[
            "conn_id"
        ]
        sockets.append(websocket.create_connection(f"ws://127.0.0.1:{port}/ws?conn_id={conn_id}"))
    rss_connected = server_rss_kib(pid)

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
    cpu_before = server_cpu_seconds(pid)
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
    cpu_used = server_cpu_seconds(pid) - cpu_before
    own_after = resource.getrusage(resource.RUSAGE_SELF)
    own_cpu = own_after.ru_utime + own_after.ru_stime - own_before.ru_utime - own_before.ru_stime
    gevent.killall(readers)
    for ws in sockets:
        ws.close()
    return {
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
    args = parser.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    columns = (
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
        result = run(count, args.messages, args.rate, args.payload_bytes)
        print(
            " | ".join(
                f"{result[c]:.2f}" if isinstance(result[c], float) else str(result[c])
                for c in columns
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
