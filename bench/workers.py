"""Worker mode (issue 16 item 3): fan-out deliveries per second with 1 and 2 workers.

    .venv/bin/python bench/workers.py                           # 1 and 2 workers, 1,000 subs
    .venv/bin/python bench/workers.py --publishers 4 --rate 400   # 4 callers sharing 400/s

Ours only (the original has no worker mode), so no network namespace: the server binds
127.0.0.1. Each row: a fresh redis-server of its own (`servers.private_redis`), our server
with `broker` on it and `workers = N` (1: one process, as without the setting; N > 1: the
supervisor and N workers on one port), `--subscribers` websockets on one channel opened
through that port (the kernel spreads them over the workers), then a publisher posting
`--rate` signed `POST /message` a second for `--seconds` (as `fanout.py`: the load generator
counts the marker in the raw stream, a sample of subscribers times it). A publisher makes one
call at a time, so one publisher is also bounded by how soon `/message` answers (after the
fan-out on the worker that took the call); `--publishers N` shares the rate among N, each on
a connection of its own (the kernel hands each to a worker). `per_worker`: how
the websockets landed, read from one `/metrics` scrape. The server's CPU is the supervisor's
and every worker's (utime+stime from /proc); redis-server's is printed apart.

The machine has 2 cores for everything: the workers, redis-server and the load generator
(its worker processes and the publisher). Two workers can only use the CPU the load generator
leaves them, so the 2-worker figure is a floor of what two cores give, not a measure of two
cores' worth of workers; on a host with more cores than workers the load generator runs
elsewhere.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import servers
from loadgen import LoadGenerator
from prometheus_client.parser import text_string_to_metric_families

CHANNEL = "bench"
COLUMNS = (
    "workers",
    "subs",
    "per_worker",
    "rate",
    "msgs",
    "deliveries",
    "lost",
    "deliv/s",
    "p50_ms",
    "p99_ms",
    "deliv/cpu_s",
    "srv_cpu%",
    "redis%",
    "lg_max%",
    "lg_share%",
    "pub/s",
)
START_TIMEOUT = 60.0


def write_ini(path: Path, port: int, broker: str, workers: int) -> None:
    path.write_text(
        "[channelstream]\n"
        f"host = {servers.HOST}\nport = {port}\nsecret = {servers.SECRET}\n"
        f"admin_secret = bench-admin\nlog_level = WARNING\nbroker = {broker}\n"
        f"redis_prefix = bench-workers-{port}\nworkers = {workers}\n"
        "metrics_allow_from = 127.0.0.1\n"
        # generous limits: the benchmark measures throughput, not the slow-consumer guard
        "max_queued_frames = 1000000\nmax_connections = 0\n"
    )


def children(pid: int) -> list[int]:
    """The child processes of `pid` (the workers of a supervisor)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with socket.create_connection((servers.HOST, port), timeout=10) as sock:
        sock.sendall(b"GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200") and not head.startswith(b"HTTP/1.0 200"):
        raise RuntimeError(f"/metrics answered {head[:40]!r}")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def websockets_by_worker(port: int, workers: int) -> str:
    if workers == 1:
        return "-"
    values = scrape(port)
    counts = [
        int(values.get(("channelstream_listeners", (("transport", "ws"), ("worker", str(w)))), 0))
        for w in range(1, workers + 1)
    ]
    return "/".join(str(count) for count in counts)


@contextlib.contextmanager
def running(workers: int, broker: str, workdir: Path) -> Any:
    """Our server with `workers` workers, once every worker answers: (the server, whose PID
    is the supervisor's with several workers, and the workers' PIDs)."""
    port = servers.free_port()
    ini = workdir / f"workers-{workers}.ini"
    write_ini(ini, port, broker, workers)
    server = servers.spawn_ours(ini, port, f"workers-{workers}.log")
    process, log_path = server.process, server.log_path
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:  # every worker answering in one scrape (or the one process serving)
            if process.poll() is not None:
                raise SystemExit(f"bench: server exited at start, see {log_path}")
            try:
                values = scrape(port)
                up = [
                    values.get(("channelstream_worker_up", (("worker", str(w)),)))
                    for w in range(1, workers + 1)
                ]
                if workers == 1 or all(value == 1 for value in up):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: server did not start, see {log_path}")
            time.sleep(0.1)  # paces the polling of a starting server
        pids = children(process.pid) if workers > 1 else []
        yield server, pids
    finally:
        server.stop()


@contextlib.contextmanager
def stopping(load: LoadGenerator) -> Any:
    try:
        yield load
    finally:
        load.stop()


def publish_and_wait(
    load: LoadGenerator, extra: list[LoadGenerator], count: int, args: argparse.Namespace
) -> tuple[dict[str, Any], list[Any]]:
    """`count` messages at `args.rate`, split over the publishers (each one request at a
    time), while the load generator's workers wait for all of them on every socket: (the
    publishers' report together, the workers' reports)."""
    if not extra:
        return load.publish_and_wait(count, args.rate, CHANNEL, args.max_drain, args.stall)
    publishers = [load.publisher, *(more.publisher for more in extra)]
    shares = [count // len(publishers)] * len(publishers)
    shares[0] += count - sum(shares)
    for publisher, share in zip(publishers, shares, strict=True):
        assert publisher is not None
        publisher.send("publish", count=share, rate=args.rate / len(publishers), channel=CHANNEL)
    for worker in load.workers:
        worker.send(
            "wait",
            expected_per_socket=count,
            timeout=count / args.rate + args.max_drain,
            stall=args.stall,
        )
    answers = [p.receive(timeout=count / args.rate + args.max_drain + 600) for p in publishers if p]
    reports = [w.receive(timeout=count / args.rate + args.max_drain + 60) for w in load.workers]
    started = min(answer["started"] for answer in answers)
    finished = max(answer["finished"] for answer in answers)
    published = {
        "started": started,
        "errors": sum(answer["errors"] for answer in answers),
        "rate": count / max(1e-9, finished - started),
    }
    return published, reports


def run_one(workers: int, args: argparse.Namespace) -> dict[str, Any]:
    count = max(1, int(args.rate * args.seconds))
    row: dict[str, Any] = {
        "workers": workers,
        "subs": args.subscribers,
        "rate": args.rate,
        "msgs": count,
    }
    with contextlib.ExitStack() as stack:
        broker, redis_pid = stack.enter_context(servers.private_redis())
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cs-bench-")))
        server, worker_pids = stack.enter_context(running(workers, broker, workdir))
        load = LoadGenerator(server.port, args.workers, publisher=True)
        # more publishers: load generators holding no sockets, each on its own connection
        extra = [
            stack.enter_context(stopping(LoadGenerator(server.port, 0, publisher=True)))
            for _ in range(args.publishers - 1)
        ]
        try:
            sample_every = max(1, args.subscribers // args.latency_sample)
            opened = load.open(args.subscribers, args.concurrency, [CHANNEL], sample_every)
            if opened["failed"] or opened["opened"] < args.subscribers:
                row["warnings"] = [f"opened {opened['opened']}: {opened['errors']}"]
                return row
            row["per_worker"] = websockets_by_worker(server.port, workers)
            time.sleep(args.settle)
            assert load.publisher is not None
            load.broadcast("reset")
            load.publisher.call("publish", count=5, rate=args.rate, channel=CHANNEL)
            load.broadcast("wait", expected_per_socket=5, timeout=120, stall=args.stall)
            load.broadcast("reset")
            server_pids = {"server": server.pid}
            server_pids |= {f"worker{i}": pid for i, pid in enumerate(worker_pids, 1)}
            loadgen_pids = {"parent": os.getpid(), **load.pids}
            for index, more in enumerate(extra, 2):
                loadgen_pids |= {f"{name}{index}": pid for name, pid in more.pids.items()}
            window = servers.CpuWindow({**server_pids, "redis": redis_pid, **loadgen_pids})
            window.start()
            published, reports = publish_and_wait(load, extra, count, args)
            window.stop()
            load.broadcast("close_all")
        finally:
            load.stop()
        alive = server.alive()
    received = sum(r["messages"] for r in reports)
    expected = args.subscribers * count
    latencies = [value for r in reports for value in r["latencies"]]
    last = max(r["last_receive"] for r in reports) or window.stopped
    server_cpu = sum(window.used[name] for name in server_pids)
    # the load generator's verdict against all of the server's processes together
    window.used["all-server"] = server_cpu
    per_process, share, warnings = servers.loadgen_verdict(window, "all-server", list(loadgen_pids))
    row.update(
        {
            "deliveries": received,
            "lost": expected - received,
            "deliv/s": received / max(1e-9, last - published["started"]),
            "p50_ms": 1000 * servers.percentile(latencies, 0.50),
            "p99_ms": 1000 * servers.percentile(latencies, 0.99),
            "deliv/cpu_s": received / max(1e-9, server_cpu),
            "srv_cpu%": 100 * server_cpu / window.seconds,
            "redis%": 100 * window.utilisation("redis"),
            "lg_max%": 100 * per_process,
            "lg_share%": 100 * share,
            "pub/s": published["rate"],
            "window_s": window.seconds,
            "host_idle%": 100 * window.host_idle,
            "per_process": ", ".join(
                f"{name} {100 * window.utilisation(name):.0f}%" for name in server_pids
            ),
            "log": server.log_summary(),
        }
    )
    if not alive:
        warnings.append(f"server died, see {server.log_path}")
    if expected != received:
        warnings.append(f"{expected - received:,} of {expected:,} deliveries missing")
    if published["errors"]:
        warnings.append(f"{published['errors']} publish requests failed")
    if published["rate"] < 0.95 * args.rate:
        warnings.append(f"publisher reached {published['rate']:.0f}/s of {args.rate:.0f}/s")
    row["warnings"] = warnings
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--server-workers", type=int, nargs="+", default=[1, 2], help="workers per row (1 2)"
    )
    parser.add_argument("--subscribers", type=int, default=1000, help="websockets (1,000)")
    parser.add_argument("--rate", type=float, default=100.0, help="publishes per second (100)")
    parser.add_argument(
        "--publishers",
        type=int,
        default=1,
        help="publisher processes sharing --rate, each one request at a time on its own "
        "kept-alive connection (1)",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="publishing time (10)")
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="load-generator processes holding the websockets, as in every script (2); the "
        "server's workers are --server-workers",
    )
    parser.add_argument("--concurrency", type=int, default=32, help="connects in flight (32)")
    parser.add_argument("--settle", type=float, default=2.0, help="pause after connecting (2)")
    parser.add_argument("--stall", type=float, default=20.0, help="give up after s silence")
    parser.add_argument("--max-drain", type=float, default=300.0, help="wait after publishing")
    parser.add_argument(
        "--latency-sample", type=int, default=200, help="subscribers that time messages (200)"
    )
    args = parser.parse_args()
    print(
        f"worker mode: {args.subscribers:,} websocket subscribers on one channel, signed POST "
        f"/message at {args.rate:g}/s for {args.seconds:g} s from {args.publishers} "
        "publisher(s), broker: a private redis-server"
    )
    print(
        f"machine: {servers.CPUS} CPUs shared by the workers, redis-server and the load "
        "generator (and anything else running); loopback only"
    )
    print(flush=True)
    rows = servers.run_rows(
        (f"{workers} worker(s)", lambda workers=workers: run_one(workers, args))
        for workers in args.server_workers
    )
    servers.print_table(COLUMNS, rows)
    print()
    servers.print_row_notes(
        rows,
        lambda row: (
            f"{row['workers']} worker(s): "
            + (
                f"window {row['window_s']:.1f} s, host idle {row['host_idle%']:.0f}%, "
                f"server processes: {row['per_process']}; {row['log']}"
                if "window_s" in row
                else "no measurement"
            )
        ),
    )
    print()
    print(
        "per_worker: websockets on each worker; deliv/s: deliveries / (last receive - first "
        "publish); p50/p99: publish-to-receive latency of sampled subscribers; deliv/cpu_s: "
        "deliveries per CPU second of all server processes; srv_cpu%: their CPU per wall "
        "second (100 = one core); redis%: redis-server's; lg_max%, lg_share%: the load "
        "generator, as in fanout.py; pub/s: publish rate reached."
    )


if __name__ == "__main__":
    main()
