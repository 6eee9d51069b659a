"""Idle memory: server RSS per idle websocket connection (connect + subscribe to a channel +
attach /ws), for our server and the original Channelstream 0.7.1 side by side.

    .venv/bin/python bench/idle_memory.py                    # 10,000 connections, both
    .venv/bin/python bench/idle_memory.py --connections 1000 --target ours

Runs inside a private network namespace (see servers.py). RSS (VmRSS, /proc/PID/statm) is read
after the server started and settled, then the load generator opens the connections, waits
`--settle` seconds (heartbeats keep flowing; nothing else), reads it again:
KiB per connection = (RSS after - RSS before) / connections.
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from typing import Any

import servers
from loadgen import LoadGenerator

COLUMNS = (
    "target",
    "conns",
    "open_at_end",
    "rss_before_MiB",
    "rss_after_MiB",
    "KiB/conn",
    "open_s",
    "conns/s",
)
RATIO_COLUMNS = ("rss_after_MiB", "KiB/conn", "conns/s")


def run_one(target: str, args: argparse.Namespace) -> dict[str, Any]:
    row: dict[str, Any] = {"target": target, "conns": args.connections, "warnings": []}
    with servers.running_server(target, "idle_memory") as server:
        time.sleep(args.settle_before)
        before = server.rss_kib()
        load = LoadGenerator(server.port, args.workers)
        try:
            opened = load.open(args.connections, args.concurrency, ["idle"])
            time.sleep(args.settle)
            after = server.rss_kib()
            reports = load.broadcast("report", answer_within=60)
            load.broadcast("close_all", answer_within=120)
        finally:
            load.stop()
        if not server.alive():
            row["warnings"].append(f"{target} server died, see {server.log_path}")
        row["log"] = server.log_summary()
    open_at_end = sum(r["open"] for r in reports)
    row.update(
        {
            "open_at_end": open_at_end,
            "rss_before_MiB": before / 1024,
            "rss_after_MiB": after / 1024,
            "KiB/conn": (after - before) / max(1, args.connections),
            "open_s": opened["seconds"],
            "conns/s": opened["opened"] / max(1e-9, opened["seconds"]),
        }
    )
    if opened["failed"]:
        row["warnings"].append(f"{opened['failed']} connections failed: {opened['errors']}")
    if open_at_end != args.connections:
        closed: dict[str, int] = {}
        for r in reports:
            for reason, number in r["closed_by_server"].items():
                closed[reason] = closed.get(reason, 0) + number
        row["warnings"].append(
            f"only {open_at_end:,} of {args.connections:,} open after the settle period; "
            f"closed by the server: {closed}"
        )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    servers.add_common_options(parser)
    parser.add_argument("--connections", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=32, help="connects in flight (32)")
    parser.add_argument(
        "--settle", type=float, default=20.0, help="seconds between opening and reading RSS"
    )
    parser.add_argument(
        "--settle-before", type=float, default=3.0, help="seconds after start before reading RSS"
    )
    args = parser.parse_args()
    servers.begin(
        "idle memory: N idle websockets (/connect with one channel, then /ws), server RSS"
    )
    rows = servers.run_rows(
        (f"{target}, {args.connections:,} connections", partial(run_one, target, args))
        for target in servers.targets(args.target)
    )
    servers.print_table(COLUMNS, rows + servers.ratio_row(rows, ["conns"], RATIO_COLUMNS))
    print()
    servers.print_row_notes(rows, lambda row: f"{row['target']}: {row.get('log', '')}")
    print()
    print(
        "rss_before/after: server VmRSS before opening and after the settle period "
        f"({args.settle:g} s); KiB/conn: (after - before) / conns; open_at_end: websockets "
        "still open when RSS was read; open_s, conns/s: time to open them all "
        f"({args.concurrency} connects in flight)."
    )


if __name__ == "__main__":
    main()
