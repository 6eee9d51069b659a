"""Churn soak: connect / subscribe / publish / disconnect at a steady moderate rate for
`--minutes` (default 10), server RSS sampled every 10 s; our server and the original
Channelstream 0.7.1 run at the same time, side by side.

    .venv/bin/python bench/soak.py                           # 10 minutes, both servers
    .venv/bin/python bench/soak.py --minutes 2 --target ours

Runs inside a private network namespace (see servers.py). One load-generator worker per server
opens `--rate` connections a second (/connect to one of `--channels` channels as one of `--users`
user names, /ws, /subscribe to a second channel, one POST /message to the first) and keeps about
`--live` of them: past that, the oldest leaves, in turn by close frame + /disconnect, by close
frame only (left to the server's GC), and by /disconnect only (the server closes the socket).
This measures memory, not speed, so both servers run concurrently and share the CPUs.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing.connection
import sys
import time
from typing import Any

import servers
from loadgen import LoadGenerator

SAMPLE_EVERY = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    servers.add_common_options(parser)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=20.0, help="new connections a second (20)")
    parser.add_argument("--live", type=int, default=200, help="connections kept open (200)")
    parser.add_argument("--channels", type=int, default=10, help="channels used (10)")
    parser.add_argument("--users", type=int, default=1000, help="user names cycled (1000)")
    args = parser.parse_args()
    names = servers.targets(args.target)
    seconds = args.minutes * 60
    # the flatness window: the last 5 minutes, or the second half of a shorter run
    window = min(300.0, seconds / 2)
    servers.begin(
        "churn soak: connect / subscribe / publish / disconnect, server RSS every 10 s",
        f"{args.rate:g} new connections/s per server, ~{args.live} open, {args.channels} "
        f"channels, {args.users} user names; disconnects rotate over close+/disconnect, "
        "close only (server GC), /disconnect only",
        *(
            ["both servers run at the same time (memory, not speed, is measured)"]
            if len(names) > 1
            else []
        ),
    )

    samples: list[dict[str, Any]] = []
    totals: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        running = {
            name: stack.enter_context(servers.running_server(name, "soak")) for name in names
        }
        loads = {}
        for name, server in running.items():
            loads[name] = LoadGenerator(server.port, 1, label=f"{name}-")
            stack.callback(loads[name].stop)
        time.sleep(2)
        started = time.monotonic()
        for name in names:
            loads[name].workers[0].send(
                "churn",
                rate=args.rate,
                seconds=seconds + 1.0,
                live=args.live,
                channels=args.channels,
                users=args.users,
            )
        pipes = {loads[name].workers[0].pipe: name for name in names}
        next_sample = started
        finished: set[str] = set()
        try:
            while len(finished) < len(names):
                now = time.monotonic()
                if now >= next_sample and now - started <= seconds + 0.5:
                    sample: dict[str, Any] = {"t_s": round(now - started)}
                    for name, server in running.items():
                        sample[f"{name}_MiB"] = (
                            server.rss_kib() / 1024 if server.alive() else float("nan")
                        )
                        sample[f"{name}_cycles"] = totals.get(name, {}).get("cycles", 0)
                        sample[f"{name}_live"] = totals.get(name, {}).get("live", 0)
                    samples.append(sample)
                    print(
                        "... "
                        + "  ".join(f"{k}={servers.format_value(v)}" for k, v in sample.items()),
                        file=sys.stderr,
                        flush=True,
                    )
                    next_sample += SAMPLE_EVERY
                wait = max(0.05, next_sample - time.monotonic())
                for pipe in multiprocessing.connection.wait(list(pipes), timeout=wait):
                    assert isinstance(pipe, multiprocessing.connection.Connection)
                    message = pipe.recv()
                    totals[pipes[pipe]] = message
                    if message["final"]:
                        finished.add(pipes[pipe])
        except KeyboardInterrupt:
            print("interrupted; partial results", file=sys.stderr)
        logs = {name: server.log_summary() for name, server in running.items()}
        alive = {name: server.alive() for name, server in running.items()}

    columns = ["t_s"] + [f"{name}_{part}" for name in names for part in ("MiB", "cycles", "live")]
    servers.print_table(columns, samples)
    print()
    summary = []
    for name in names:
        series = [(s["t_s"], s[f"{name}_MiB"]) for s in samples]
        row: dict[str, Any] = {"target": name}
        if series:
            end_t, end = series[-1]
            start_candidates = [(t, v) for t, v in series if t >= end_t - window]
            base_t, base = start_candidates[0]
            values = [v for _, v in series]
            row.update(
                {
                    "rss_first_MiB": values[0],
                    "rss_max_MiB": max(values),
                    "rss_end_MiB": end,
                    "window": f"{base_t}-{end_t} s",
                    "change%": 100 * (end - base) / base if base else float("nan"),
                    "max_in_window%": 100 * (max(v for _, v in start_candidates) - base) / base
                    if base
                    else float("nan"),
                }
            )
        total = totals.get(name, {})
        for key in ("cycles", "published", "received", "retired", "failed", "api_errors"):
            row[key] = total.get(key, 0)
        row["errors"] = total.get("errors", {})
        summary.append(row)
    servers.print_table(
        (
            "target",
            "rss_first_MiB",
            "rss_max_MiB",
            "rss_end_MiB",
            "window",
            "change%",
            "max_in_window%",
            "cycles",
            "published",
            "received",
            "failed",
            "api_errors",
        ),
        summary,
    )
    print()
    for row in summary:
        print(f"{row['target']}: {logs[row['target']]}")
        if not alive[row["target"]]:
            print(f"  WARNING: the {row['target']} server died")
        if row["errors"]:
            print(f"  errors: {row['errors']}")
        change = row.get("change%", float("nan"))
        if change == change and abs(change) > 5:
            print(f"  WARNING: RSS changed {change:+.1f}% over {row['window']} (target: 5%)")
    print()
    print(
        "MiB: server VmRSS; cycles: connections opened and used (connect, ws, subscribe, "
        "publish) and live: connections open, both as last reported by the load generator "
        "(every 10 s, so one sample late); change%: RSS change over the window "
        f"(the last {window / 60:g} minutes: the last 5, or the second half of shorter runs); "
        "max_in_window%: highest RSS in the window over its first sample; received: messages "
        "the churned websockets got."
    )


if __name__ == "__main__":
    main()
