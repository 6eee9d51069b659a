"""Connect rate: signed POST /connect + websocket attach (/ws) per second, with some
concurrency, for our server and the original Channelstream 0.7.1 side by side.

    .venv/bin/python bench/connect_rate.py                   # 5,000 connections, 32 in flight
    .venv/bin/python bench/connect_rate.py --connections 1000 --target ours

Runs inside a private network namespace (see servers.py). Each load-generator worker keeps
`concurrency / workers` slots busy; a slot posts /connect on its keep-alive HTTP connection,
opens /ws with the conn_id it got, and starts the next one when the upgrade is answered. The
websockets stay open until the end (so the last ones are made next to thousands of open ones).
"""

from __future__ import annotations

import argparse
import os
from functools import partial
from typing import Any

import servers
from loadgen import LoadGenerator

COLUMNS = (
    "target",
    "conns",
    "failed",
    "conns/s",
    "connect_p50",
    "connect_p99",
    "attach_p50",
    "attach_p99",
    "total_p50",
    "total_p99",
    "cpu_ms/conn",
    "srv_cpu%",
    "lg_max%",
    "lg_share%",
)
RATIO_COLUMNS = ("conns/s", "total_p50", "total_p99", "cpu_ms/conn")


def run_one(target: str, args: argparse.Namespace) -> dict[str, Any]:
    row: dict[str, Any] = {"target": target, "conns": args.connections, "warnings": []}
    with servers.running_server(target, "connect_rate") as server:
        load = LoadGenerator(server.port, args.workers)
        try:
            load.open(min(50, args.connections), 4, ["warmup"])  # imports, caches, pools
            load.broadcast("close_all")
            window = servers.CpuWindow({"server": server.pid, "parent": os.getpid(), **load.pids})
            window.start()
            opened = load.open(args.connections, args.concurrency, ["rate"])
            window.stop()
            load.broadcast("close_all", answer_within=120)
        finally:
            load.stop()
        if not server.alive():
            row["warnings"].append(f"{target} server died, see {server.log_path}")
        row["log"] = server.log_summary()
    loadgen = [name for name in window.pids if name != "server"]
    per_process, share, lg_warnings = servers.loadgen_verdict(window, "server", loadgen)
    p = servers.percentile
    row.update(
        {
            "failed": opened["failed"],
            "conns/s": opened["opened"] / window.seconds,
            "connect_p50": p(opened["connect_ms"], 0.5),
            "connect_p99": p(opened["connect_ms"], 0.99),
            "attach_p50": p(opened["attach_ms"], 0.5),
            "attach_p99": p(opened["attach_ms"], 0.99),
            "total_p50": p(opened["total_ms"], 0.5),
            "total_p99": p(opened["total_ms"], 0.99),
            "cpu_ms/conn": 1000 * window.used["server"] / max(1, opened["opened"]),
            "srv_cpu%": 100 * window.utilisation("server"),
            "lg_max%": 100 * per_process,
            "lg_share%": 100 * share,
            "seconds": window.seconds,
            "host_idle%": 100 * window.host_idle,
        }
    )
    row["warnings"] += lg_warnings
    if opened["failed"]:
        row["warnings"].append(f"{opened['failed']} connections failed: {opened['errors']}")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    servers.add_common_options(parser)
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32, help="connects in flight (32)")
    args = parser.parse_args()
    servers.begin("connect rate: signed POST /connect + /ws upgrade, connections kept open")
    rows = servers.run_rows(
        (f"{target}, {args.connections:,} connections", partial(run_one, target, args))
        for target in servers.targets(args.target)
    )
    servers.print_table(COLUMNS, rows + servers.ratio_row(rows, ["conns"], RATIO_COLUMNS))
    print()
    servers.print_row_notes(
        rows,
        lambda row: (
            f"{row['target']}: "
            + (
                f"{row['seconds']:.1f} s, host idle {row['host_idle%']:.0f}%, {row['log']}"
                if "seconds" in row
                else "no measurement"
            )
        ),
    )
    print()
    print(
        f"conns/s: connections opened per second ({args.concurrency} in flight); connect_*: "
        "/connect request time (ms); attach_*: /ws upgrade time (ms); total_*: both (ms); "
        "cpu_ms/conn: server CPU ms per connection; srv_cpu%: server CPU per wall second "
        "(100 = one core); lg_max%: busiest load-generator process (% of one core); "
        "lg_share%: load generator's share of the CPU the server left. Valid when failed = 0 "
        "and lg_max%, lg_share% < 80."
    )


if __name__ == "__main__":
    main()
