"""Connect rate: signed POST /connect + websocket attach (/ws) per second, with some
concurrency, for our server and the original Channelstream 0.7.1 side by side; for ours also
through a connection token (`/ws?token=`: one request instead of two), in the same run.

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
    "via",
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
    "usr_ms/conn",
    "sys_ms/conn",
    "srv_cpu%",
    "lg_max%",
    "lg_share%",
)
RATIO_COLUMNS = ("conns/s", "total_p50", "total_p99", "cpu_ms/conn")


def run_one(target: str, args: argparse.Namespace, via: str = "connect") -> dict[str, Any]:
    """One server, `args.connections` connections opened `via` /connect + /ws, or a token."""
    row: dict[str, Any] = {
        "target": target,
        "via": via,
        "conns": args.connections,
        "warnings": [],
    }
    with servers.running_server(target, "connect_rate") as server:
        load = LoadGenerator(server.port, args.workers)
        try:
            load.open(min(50, args.connections), 4, ["warmup"], via=via)  # imports, caches
            load.broadcast("close_all")
            window = servers.CpuWindow({"server": server.pid, "parent": os.getpid(), **load.pids})
            split_before = servers.cpu_split(server.pid)
            window.start()
            opened = load.open(args.connections, args.concurrency, ["rate"], via=via)
            window.stop()
            split_after = servers.cpu_split(server.pid)
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
            "usr_ms/conn": 1000 * (split_after[0] - split_before[0]) / max(1, opened["opened"]),
            "sys_ms/conn": 1000 * (split_after[1] - split_before[1]) / max(1, opened["opened"]),
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


def token_ratio(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ours through a token over ours through /connect + /ws (same sizes, same run)."""
    by_via = {row.get("via"): row for row in rows if row.get("target") == "ours"}
    token, connect = by_via.get("token"), by_via.get("connect")
    if token is None or connect is None:
        return []
    out: dict[str, Any] = {"target": "token/connect", "conns": token["conns"]}
    for column in RATIO_COLUMNS:
        a, b = token.get(column), connect.get(column)
        if isinstance(a, int | float) and isinstance(b, int | float):
            out[column] = servers.ratio(float(a), float(b))
    return [out]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    servers.add_common_options(parser)
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32, help="connects in flight (32)")
    args = parser.parse_args()
    servers.begin(
        "connect rate: signed POST /connect + /ws upgrade (and, for ours, /ws?token= alone), "
        "connections kept open"
    )
    runs = [(target, "connect") for target in servers.targets(args.target)]
    if "ours" in servers.targets(args.target):
        runs.insert(1, ("ours", "token"))  # the original has no connection tokens
    rows = servers.run_rows(
        (
            f"{target} via {via}, {args.connections:,} connections",
            partial(run_one, target, args, via),
        )
        for target, via in runs
    )
    ratios = servers.ratio_row(rows, ["conns", "via"], RATIO_COLUMNS)
    servers.print_table(COLUMNS, rows + ratios + token_ratio(rows))
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
        f"conns/s: connections opened per second ({args.concurrency} in flight); via: "
        "connect = signed /connect then /ws?conn_id=, token = /ws?token= alone (a JWT the "
        "load generator signs, as a web app would); connect_*: /connect request time (ms, 0 "
        "via token); attach_*: /ws upgrade time (ms); total_*: both (ms); "
        "cpu_ms/conn: server CPU ms per connection (usr_ms, sys_ms: its user and kernel "
        "parts); srv_cpu%: server CPU per wall second "
        "(100 = one core); lg_max%: busiest load-generator process (% of one core); "
        "lg_share%: load generator's share of the CPU the server left. Valid when failed = 0 "
        "and lg_max%, lg_share% < 80."
    )


if __name__ == "__main__":
    main()
