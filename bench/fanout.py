"""Fan-out: N websocket subscribers on one channel, messages published through the signed API
(POST /message) at a fixed rate, each carrying its send time; our server and the original
Channelstream 0.7.1 side by side.

    .venv/bin/python bench/fanout.py                       # 1,000 and 10,000 subscribers, both
    .venv/bin/python bench/fanout.py --subscribers 200 --seconds 5 --target ours

Runs inside a private network namespace (see servers.py). For each target and subscriber count
a fresh server starts; the load generator's worker processes open the websockets (/connect,
then /ws), a publisher process posts `rate` messages a second for `seconds` seconds, and the
workers count what arrives until every subscriber has every message (or nothing arrives for
`--stall` seconds). CPU is read from /proc/PID/stat over that window.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from functools import partial
from typing import Any

import servers
from loadgen import LoadGenerator

CHANNEL = "bench"
COLUMNS = (
    "target",
    "subs",
    "rate",
    "msgs",
    "deliveries",
    "lost",
    "deliv/s",
    "p50_ms",
    "p99_ms",
    "cpu_s/1k",
    "deliv/cpu_s",
    "srv_cpu%",
    "lg_max%",
    "lg_share%",
    "pub/s",
)
RATIO_COLUMNS = ("deliv/s", "p50_ms", "p99_ms", "cpu_s/1k", "deliv/cpu_s")


def default_rate(subscribers: int) -> float:
    return 100.0 if subscribers <= 1000 else 10.0


def run_one(target: str, subscribers: int, args: argparse.Namespace) -> dict[str, Any]:
    rate = args.rate or default_rate(subscribers)
    count = max(1, int(rate * args.seconds))
    row: dict[str, Any] = {"target": target, "subs": subscribers, "rate": rate, "msgs": count}
    with contextlib.ExitStack() as stack:
        broker, redis_pid = "memory", None
        if target == "ours" and args.broker == "redis":
            broker, redis_pid = stack.enter_context(servers.private_redis())
            row["target"] = "ours+redis"
        server = stack.enter_context(
            servers.running_server(target, f"fanout-{subscribers}", broker)
        )
        load = LoadGenerator(server.port, args.workers, publisher=True)
        try:
            sample_every = max(1, subscribers // args.latency_sample)
            opened = load.open(subscribers, args.concurrency, [CHANNEL], sample_every)
            if opened["failed"] or opened["opened"] < subscribers:
                row["warnings"] = [f"opened {opened['opened']}/{subscribers}: {opened['errors']}"]
                return row
            time.sleep(args.settle)
            assert load.publisher is not None
            # warm-up: a few messages, received everywhere, then the counters start from zero
            load.broadcast("reset")
            load.publisher.call("publish", count=5, rate=rate, channel=CHANNEL)
            load.broadcast("wait", expected_per_socket=5, timeout=120, stall=args.stall)
            load.broadcast("reset")
            pids = {"server": server.pid, "parent": os.getpid(), **load.pids}
            if redis_pid is not None:
                pids["redis"] = redis_pid
            window = servers.CpuWindow(pids)
            window.start()
            load.publisher.send("publish", count=count, rate=rate, channel=CHANNEL)
            for worker in load.workers:
                worker.send(
                    "wait",
                    expected_per_socket=count,
                    timeout=count / rate + args.max_drain,
                    stall=args.stall,
                )
            published = load.publisher.receive(timeout=count / rate + args.max_drain + 600)
            reports = [w.receive(timeout=count / rate + args.max_drain + 60) for w in load.workers]
            window.stop()
            load.broadcast("close_all")
        finally:
            load.stop()
        warnings = []
        if not server.alive():
            warnings.append(f"{target} server died, see {server.log_path}")
    received = sum(r["messages"] for r in reports)
    expected = subscribers * count
    latencies = [value for r in reports for value in r["latencies"]]
    last = max(r["last_receive"] for r in reports) or window.stopped
    server_cpu = window.used["server"]
    loadgen = [name for name in window.pids if name not in ("server", "redis")]
    per_process, share, lg_warnings = servers.loadgen_verdict(window, "server", loadgen)
    closed = {}
    for r in reports:
        for reason, number in r["closed_by_server"].items():
            closed[reason] = closed.get(reason, 0) + number
    row.update(
        {
            "deliveries": received,
            "lost": expected - received,
            "deliv/s": received / max(1e-9, last - published["started"]),
            "p50_ms": 1000 * servers.percentile(latencies, 0.50),
            "p99_ms": 1000 * servers.percentile(latencies, 0.99),
            "cpu_s/1k": 1000 * server_cpu / max(1, received),
            "deliv/cpu_s": received / max(1e-9, server_cpu),
            "srv_cpu%": 100 * window.utilisation("server"),
            "lg_max%": 100 * per_process,
            "lg_share%": 100 * share,
            "pub/s": published["rate"],
            "samples": len(latencies),
            "window_s": window.seconds,
            "host_idle%": 100 * window.host_idle,
            "log": server.log_summary(),
        }
    )
    if "redis" in window.pids:
        row["log"] += f", redis-server CPU {window.used['redis']:.2f} s (not in cpu_s/1k)"
    warnings += lg_warnings
    if expected != received:
        warnings.append(f"{expected - received:,} of {expected:,} deliveries missing")
    if published["errors"]:
        warnings.append(f"{published['errors']} publish requests failed")
    if closed:
        warnings.append(f"sockets closed by the server: {closed}")
    if published["rate"] < 0.95 * rate:
        warnings.append(f"publisher reached {published['rate']:.0f}/s of {rate:.0f}/s")
    row["warnings"] = warnings
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    servers.add_common_options(parser)
    parser.add_argument("--subscribers", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument(
        "--broker",
        choices=("memory", "redis"),
        default="memory",
        help="our server's broker: redis starts a private redis-server (the original has none)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="publishes per second (default: 100 up to 1,000 subscribers, 10 above)",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="publishing time (10)")
    parser.add_argument("--concurrency", type=int, default=32, help="connects in flight (32)")
    parser.add_argument("--settle", type=float, default=2.0, help="pause after connecting (2)")
    parser.add_argument("--stall", type=float, default=20.0, help="give up after s silence")
    parser.add_argument("--max-drain", type=float, default=300.0, help="wait after publishing")
    parser.add_argument(
        "--latency-sample", type=int, default=200, help="subscribers that time messages (200)"
    )
    args = parser.parse_args()
    servers.begin(
        "fan-out: N websocket subscribers on one channel, signed POST /message at a fixed rate",
        "rates: 100/s up to 1,000 subscribers, 10/s above (100,000 deliveries/s at 10,000 x "
        "100/s is beyond one Python process)"
        if not args.rate
        else f"rate: {args.rate:g}/s",
    )
    rows = servers.run_rows(
        (f"{target}, {subscribers:,} subscribers", partial(run_one, target, subscribers, args))
        for subscribers in args.subscribers
        for target in servers.targets(args.target)
    )
    servers.print_table(COLUMNS, rows + servers.ratio_row(rows, ["subs"], RATIO_COLUMNS))
    print()
    servers.print_row_notes(
        rows,
        lambda row: (
            f"{row['target']} {row['subs']:,}: "
            + (
                f"{row['samples']:,} latency samples, window {row['window_s']:.1f} s, "
                f"host idle {row['host_idle%']:.0f}%, {row['log']}"
                if "samples" in row
                else "no measurement"
            )
        ),
    )
    print()
    print(
        "deliv/s: deliveries / (last receive - first publish); p50/p99: publish-to-receive "
        "latency of sampled subscribers; cpu_s/1k: server CPU s per 1,000 deliveries; "
        "deliv/cpu_s: deliveries per server CPU second; srv_cpu%: server CPU per wall second "
        "(100 = one core); lg_max%: busiest load-generator process (% of one core); "
        "lg_share%: load generator's share of the CPU the server left; pub/s: publish rate "
        "reached. A run is valid when lost = 0, lg_max% and lg_share% < 80 and no WARNING."
    )


if __name__ == "__main__":
    main()
