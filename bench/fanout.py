"""Fan-out: N websocket subscribers on one channel, messages published through the signed API
(POST /message) at a fixed rate, each carrying its send time; our server and the original
Channelstream 0.7.1 side by side.

    .venv/bin/python bench/fanout.py                       # 1,000 and 10,000 subscribers, both
    .venv/bin/python bench/fanout.py --subscribers 200 --seconds 5 --target ours
    .venv/bin/python bench/fanout.py --subscribers 1000 --target ours --burst
    .venv/bin/python bench/fanout.py --send-floor

Runs inside a private network namespace (see servers.py). For each target and subscriber count
a fresh server starts; the load generator's worker processes open the websockets (/connect,
then /ws), a publisher process posts `rate` messages a second for `seconds` seconds, and the
workers count what arrives until every subscriber has every message (or nothing arrives for
`--stall` seconds). CPU is read from /proc/PID/stat over that window; the server's user-space
and kernel shares (utime, stime) are also printed apart, per delivery (`usr_us/d`, `sys_us/d`).

`--burst`: instead of a paced stream, `--bursts` bursts (3) of `--burst-calls` (20) signed
`POST /message` calls of `--burst-size` (10) messages each, posted back to back on one kept-alive
connection (`--burst-connections` to spread them), every subscriber timing every message
(`--burst-sample N`: only N of them, the others count): publish-to-receive p50/p99/max over all
timed deliveries of a burst, and the CPU split.

`--send-floor`: no server; one Python process sends a frame of `--floor-bytes` to each of N
loopback TCP sockets (`--subscribers`), `--rate` rounds a second, while another process drains
them; its user and kernel CPU per send: the floor of a delivery (the `send` system call).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import select
import signal
import socket
import time
from functools import partial
from typing import Any

import servers
from loadgen import HttpClient, LoadGenerator, Loop, Process, commands

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
    "usr_us/d",
    "sys_us/d",
    "lg_max%",
    "lg_share%",
    "pub/s",
)
RATIO_COLUMNS = ("deliv/s", "p50_ms", "p99_ms", "cpu_s/1k", "deliv/cpu_s", "usr_us/d", "sys_us/d")
BURST_COLUMNS = (
    "target",
    "burst",
    "subs",
    "calls",
    "per_call",
    "msgs",
    "deliveries",
    "lost",
    "p50_ms",
    "p99_ms",
    "max_ms",
    "publish_ms",
    "drain_ms",
    "srv_cpu_s",
    "usr_us/d",
    "sys_us/d",
    "lg_max%",
    "lg_share%",
)
FLOOR_COLUMNS = (
    "sockets",
    "rate",
    "rounds/s",
    "bytes",
    "sends",
    "usr_us/send",
    "sys_us/send",
    "cpu%",
    "drainer%",
    "short",
)


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
            split_before = servers.cpu_split(server.pid)
            window.start()
            published, reports = load.publish_and_wait(
                count, rate, CHANNEL, args.max_drain, args.stall
            )
            window.stop()
            split_after = servers.cpu_split(server.pid)
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
    closed: dict[str, int] = {}
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
            "usr_us/d": 1e6 * (split_after[0] - split_before[0]) / max(1, received),
            "sys_us/d": 1e6 * (split_after[1] - split_before[1]) / max(1, received),
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


# --- burst: 20 calls of 10 messages, every subscriber timing every message ----------------------


def _post_burst(loop: Loop, clients: list[HttpClient], arguments: dict[str, Any]) -> dict[str, Any]:
    """`calls` `POST /message` of `per_call` messages each, back to back (the next call when
    the previous one is answered) on each of `connections` kept-alive connections; every
    message carries the time its call was sent."""
    calls, per_call = arguments["calls"], arguments["per_call"]
    channel, connections = arguments["channel"], arguments["connections"]
    padding = "x" * arguments.get("payload_bytes", 100)
    state = {"next": 0, "answered": 0, "errors": 0}
    durations: list[float] = []

    def issue(client: HttpClient) -> None:
        if state["next"] >= calls:
            return
        number = state["next"]
        state["next"] += 1
        sent = time.time()
        items = [
            {
                "channel": channel,
                "user": "bench",
                "message": {"bench_sent": sent, "n": number * per_call + i, "p": padding},
            }
            for i in range(per_call)
        ]

        def answered(status: int, body: bytes) -> None:
            state["answered"] += 1
            durations.append(time.time() - sent)
            if status != 200:
                state["errors"] += 1
            issue(client)

        client.request("POST", "/message", items, answered)

    started = time.time()
    for client in clients[:connections]:
        issue(client)
    while state["answered"] < calls:
        loop.run_once(1.0)
    finished = time.time()
    durations.sort()
    return {
        "published": (calls - state["errors"]) * per_call,
        "errors": state["errors"],
        "started": started,
        "finished": finished,
        "call_ms_p50": 1000 * durations[len(durations) // 2] if durations else 0.0,
        "call_ms_max": 1000 * durations[-1] if durations else 0.0,
    }


def _burst_publisher_main(pipe: Any, port: int, index: int) -> None:
    """A process that posts bursts through the signed API (see `_post_burst`), as a web
    app's HTTP client calls: signed, kept-alive, no socket options of its own."""
    from servers import Tokens

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    loop = Loop()
    tokens = Tokens()
    clients: list[HttpClient] = []
    for arguments in commands(pipe, "burst"):
        while len(clients) < arguments["connections"]:
            clients.append(HttpClient(loop, port, tokens))
        pipe.send(_post_burst(loop, clients, arguments))


def _burst_row(
    base: dict[str, Any],
    label: object,
    latencies: list[float],
    received: int,
    expected: int,
    published: dict[str, Any],
    last_receive: float,
    window: servers.CpuWindow,
    split: tuple[float, float],
) -> dict[str, Any]:
    loadgen = [name for name in window.pids if name not in ("server", "redis")]
    per_process, share, lg_warnings = servers.loadgen_verdict(window, "server", loadgen)
    row = dict(base)
    row.update(
        {
            "burst": label,
            "deliveries": received,
            "lost": expected - received,
            "p50_ms": 1000 * servers.percentile(latencies, 0.50),
            "p99_ms": 1000 * servers.percentile(latencies, 0.99),
            "max_ms": 1000 * max(latencies) if latencies else float("nan"),
            "publish_ms": 1000 * (published["finished"] - published["started"]),
            "drain_ms": 1000 * (last_receive - published["started"]),
            "srv_cpu_s": window.used["server"],
            "usr_us/d": 1e6 * split[0] / max(1, received),
            "sys_us/d": 1e6 * split[1] / max(1, received),
            "lg_max%": 100 * per_process,
            "lg_share%": 100 * share,
            "samples": len(latencies),
            "window_s": window.seconds,
            "host_idle%": 100 * window.host_idle,
            "call_ms_p50": published["call_ms_p50"],
            "call_ms_max": published["call_ms_max"],
        }
    )
    warnings = list(lg_warnings)
    if expected != received:
        warnings.append(f"{expected - received:,} of {expected:,} deliveries missing")
    if published["errors"]:
        warnings.append(f"{published['errors']} publish requests failed")
    row["warnings"] = warnings
    return row


class _MergedWindow:
    """Several CpuWindows added up (for the `all` row of the bursts)."""

    def __init__(self, windows: list[servers.CpuWindow]) -> None:
        self.pids = windows[0].pids
        self.used = {name: sum(w.used[name] for w in windows) for name in self.pids}
        self.seconds = sum(w.seconds for w in windows)
        self._idle = sum(w.host_idle * w.seconds for w in windows) / max(1e-9, self.seconds)

    def utilisation(self, name: str) -> float:
        return self.used[name] / self.seconds

    @property
    def host_idle(self) -> float:
        return self._idle


def run_burst(target: str, subscribers: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """One server, `subscribers` websockets (every one timing every message), a warm-up, then
    `args.bursts` bursts `args.burst_pause` s apart; a row per burst and an `all` row."""
    per_burst = args.burst_calls * args.burst_size
    base: dict[str, Any] = {
        "target": target,
        "subs": subscribers,
        "calls": args.burst_calls,
        "per_call": args.burst_size,
        "msgs": per_burst,
    }
    rows: list[dict[str, Any]] = []
    bursts: list[tuple[list[float], int, dict[str, Any], float, Any, tuple[float, float]]] = []
    with contextlib.ExitStack() as stack:
        broker, redis_pid = "memory", None
        if target == "ours" and args.broker == "redis":
            broker, redis_pid = stack.enter_context(servers.private_redis())
            base["target"] = "ours+redis"
        server = stack.enter_context(servers.running_server(target, f"burst-{subscribers}", broker))
        load = LoadGenerator(server.port, args.workers)
        try:
            load.publisher = Process(_burst_publisher_main, server.port, 0, "publisher")
            sample_every = max(1, subscribers // args.burst_sample) if args.burst_sample else 1
            opened = load.open(subscribers, args.concurrency, [CHANNEL], sample_every)
            if opened["failed"] or opened["opened"] < subscribers:
                row = dict(base, burst="-")
                row["warnings"] = [f"opened {opened['opened']}/{subscribers}: {opened['errors']}"]
                return [row]
            time.sleep(args.settle)
            # warm-up: one call of 5 messages, received everywhere
            load.broadcast("reset")
            load.publisher.call(
                "burst", calls=1, per_call=5, channel=CHANNEL, connections=1, payload_bytes=100
            )
            load.broadcast("wait", expected_per_socket=5, timeout=120, stall=args.stall)
            pids = {"server": server.pid, "parent": os.getpid(), **load.pids}
            if redis_pid is not None:
                pids["redis"] = redis_pid
            for number in range(1, args.bursts + 1):
                time.sleep(args.burst_pause)
                load.broadcast("reset")
                window = servers.CpuWindow(pids)
                split_before = servers.cpu_split(server.pid)
                window.start()
                load.publisher.send(
                    "burst",
                    calls=args.burst_calls,
                    per_call=args.burst_size,
                    channel=CHANNEL,
                    connections=args.burst_connections,
                    payload_bytes=100,
                )
                for worker in load.workers:
                    worker.send(
                        "wait",
                        expected_per_socket=per_burst,
                        timeout=args.max_drain,
                        stall=args.stall,
                    )
                published = load.publisher.receive(timeout=args.max_drain + 600)
                reports = [w.receive(timeout=args.max_drain + 60) for w in load.workers]
                window.stop()
                split_after = servers.cpu_split(server.pid)
                split = (split_after[0] - split_before[0], split_after[1] - split_before[1])
                latencies = [value for r in reports for value in r["latencies"]]
                received = sum(r["messages"] for r in reports)
                last = max(r["last_receive"] for r in reports) or window.stopped
                row = _burst_row(
                    base,
                    number,
                    latencies,
                    received,
                    subscribers * per_burst,
                    published,
                    last,
                    window,
                    split,
                )
                closed: dict[str, int] = {}
                for r in reports:
                    for reason, count in r["closed_by_server"].items():
                        closed[reason] = closed.get(reason, 0) + count
                if closed:
                    row["warnings"].append(f"sockets closed by the server: {closed}")
                rows.append(row)
                bursts.append((latencies, received, published, last, window, split))
            load.broadcast("close_all")
        finally:
            load.stop()
        if not server.alive():
            for row in rows:
                row["warnings"].append(f"{target} server died, see {server.log_path}")
        log = server.log_summary()
    for row in rows:
        row["log"] = log
    if len(bursts) > 1:
        windows = [b[4] for b in bursts]
        merged = _MergedWindow(windows)
        published_all = {
            "finished": sum(b[2]["finished"] - b[2]["started"] for b in bursts),
            "started": 0.0,
            "errors": sum(b[2]["errors"] for b in bursts),
            "call_ms_p50": float("nan"),
            "call_ms_max": max(b[2]["call_ms_max"] for b in bursts),
        }
        all_row = _burst_row(
            dict(base, msgs=per_burst * len(bursts)),
            "all",
            [value for b in bursts for value in b[0]],
            sum(b[1] for b in bursts),
            subscribers * per_burst * len(bursts),
            published_all,
            0.0,
            merged,  # type: ignore[arg-type]
            (sum(b[5][0] for b in bursts), sum(b[5][1] for b in bursts)),
        )
        # publish_ms / drain_ms of `all`: the mean of the bursts
        all_row["publish_ms"] = all_row["publish_ms"] / len(bursts)
        all_row["drain_ms"] = sum(1000 * (b[3] - b[2]["started"]) for b in bursts) / len(bursts)
        all_row["log"] = log
        rows.append(all_row)
    return rows


# --- the send floor: a bare Python loop of non-blocking sends ----------------------------------


def _ws_frame(size: int) -> bytes:
    payload = b"[" + b"x" * max(0, size - 2) + b"]"
    if len(payload) < 126:
        return bytes([0x81, len(payload)]) + payload
    return bytes([0x81, 126]) + len(payload).to_bytes(2, "big") + payload


def send_floor(sockets: int, rate: float, seconds: float, size: int) -> dict[str, Any]:
    """`rate` rounds a second for `seconds`: one `send` of a `size`-byte websocket frame to
    each of `sockets` loopback TCP connections (TCP_NODELAY, non-blocking, as the server's
    websockets), another process draining the other ends with epoll. CPU of the sending
    process per send, user and kernel apart."""
    listener = socket.socket()
    listener.bind((servers.HOST, 0))
    listener.listen(1024)
    readers, senders = [], []
    for _ in range(sockets):
        reader = socket.create_connection(listener.getsockname())
        sender, _ = listener.accept()
        sender.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sender.setblocking(False)
        readers.append(reader)
        senders.append(sender)
    listener.close()
    child = os.fork()
    if child == 0:  # the drainer
        try:
            for sender in senders:
                sender.close()
            poller = select.epoll()
            by_fd = {}
            for reader in readers:
                reader.setblocking(False)
                poller.register(reader.fileno(), select.EPOLLIN)
                by_fd[reader.fileno()] = reader
            while by_fd:
                for fd, _events in poller.poll(1.0):
                    try:
                        data = by_fd[fd].recv(262144)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        poller.unregister(fd)
                        by_fd.pop(fd).close()
        finally:
            os._exit(0)
    for reader in readers:
        reader.close()
    frame = _ws_frame(size)
    rounds = max(1, int(rate * seconds))
    short = 0
    try:
        time.sleep(0.5)
        user0, system0 = servers.cpu_split(os.getpid())
        child0 = sum(servers.cpu_split(child))
        host0 = servers.host_cpu_ticks()
        started = time.time()
        for number in range(rounds):
            delay = started + number / rate - time.time()
            if delay > 0:
                time.sleep(delay)
            for sender in senders:
                try:
                    if sender.send(frame) < len(frame):
                        short += 1
                except BlockingIOError:
                    short += 1
        elapsed = time.time() - started
        user1, system1 = servers.cpu_split(os.getpid())
        child1 = sum(servers.cpu_split(child))
        host1 = servers.host_cpu_ticks()
    finally:
        for sender in senders:
            sender.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if os.waitpid(child, os.WNOHANG)[0]:
                break
            time.sleep(0.05)
        else:
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
    sends = rounds * sockets
    return {
        "sockets": sockets,
        "rate": rate,
        "bytes": len(frame),
        "sends": sends,
        "usr_us/send": 1e6 * (user1 - user0) / sends,
        "sys_us/send": 1e6 * (system1 - system0) / sends,
        "rounds/s": rounds / max(1e-9, elapsed),
        "cpu%": 100 * ((user1 - user0) + (system1 - system0)) / max(1e-9, elapsed),
        "drainer%": 100 * (child1 - child0) / max(1e-9, elapsed),
        "short": short,
        "drainer_cpu_s": child1 - child0,
        "host_idle%": 100 * servers.host_idle_fraction(host0, host1),
    }


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
    parser.add_argument(
        "--burst",
        action="store_true",
        help="the burst scenario instead of the paced one (see the module's doc)",
    )
    parser.add_argument("--bursts", type=int, default=3, help="bursts per server (3)")
    parser.add_argument("--burst-calls", type=int, default=20, help="POST /message per burst (20)")
    parser.add_argument("--burst-size", type=int, default=10, help="messages per call (10)")
    parser.add_argument(
        "--burst-connections",
        type=int,
        default=1,
        help="kept-alive connections the burst's calls are spread over (1: one after the other)",
    )
    parser.add_argument(
        "--burst-sample",
        type=int,
        default=0,
        help="subscribers that time messages in a burst (default 0: every one; the others "
        "only count, which costs the load generator less)",
    )
    parser.add_argument("--burst-pause", type=float, default=2.0, help="s before each burst (2)")
    parser.add_argument(
        "--send-floor",
        action="store_true",
        help="no server: CPU per send of a bare Python loop over loopback sockets "
        "(--subscribers sockets, --rate rounds/s, default 100, for --seconds)",
    )
    parser.add_argument(
        "--floor-bytes", type=int, default=340, help="frame size for --send-floor (340)"
    )
    args = parser.parse_args()
    if args.send_floor:
        main_send_floor(args)
        return
    if args.burst:
        main_burst(args)
        return
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


def burst_note(row: dict[str, Any]) -> str:
    """The line under a burst row: samples, window, the calls' durations, host idle, log."""
    head = f"{row['target']} {row['subs']:,} burst {row['burst']}: "
    if "samples" not in row:
        return head + "no measurement"
    median = row["call_ms_p50"]
    calls = "call " if median != median else f"call p50 {median:.1f} ms "  # nan: merged rows
    return (
        head
        + f"{row['samples']:,} latency samples, window {row['window_s']:.2f} s, "
        + calls
        + f"max {row['call_ms_max']:.1f} ms, host idle {row['host_idle%']:.0f}%, "
        + f"{row.get('log', '')}"
    )


def main_burst(args: argparse.Namespace) -> None:
    servers.begin(
        "fan-out burst: N websocket subscribers on one channel, each burst "
        f"{args.burst_calls} signed POST /message calls of {args.burst_size} messages "
        f"(back to back on {args.burst_connections} kept-alive connection(s)); "
        + (
            f"{args.burst_sample} subscribers time every message, the others count"
            if args.burst_sample
            else "every subscriber times every message"
        )
    )
    rows: list[dict[str, Any]] = []
    for subscribers in args.subscribers:
        rows += servers.rows_per_target(
            args.target, partial(run_burst, subscribers=subscribers, args=args)
        )
    servers.print_table(BURST_COLUMNS, rows)
    print()
    servers.print_row_notes(rows, burst_note)
    print()
    print(
        "p50/p99/max: publish-to-receive latency (the send time of the message's call to the "
        "reader's clock) over every delivery of the burst; publish_ms: first call sent to last "
        "call answered; drain_ms: first call sent to the last delivery; srv_cpu_s: server CPU in "
        "the window (10 ms ticks); usr_us/d, sys_us/d: server user / kernel CPU per delivery; "
        "`all`: every burst together (publish_ms, drain_ms: their mean)."
    )


def main_send_floor(args: argparse.Namespace) -> None:
    rate = args.rate or 100.0
    print(
        "send floor: one Python process, one non-blocking send of a websocket frame to each "
        "loopback TCP socket per round, another process draining (no server)"
    )
    print(servers.machine_note().split(";")[0])
    print(flush=True)
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    rows = []
    for sockets in args.subscribers:
        if 2 * sockets + 64 > limit:  # both ends live in this process until the fork
            print(
                f"{sockets:,} sockets: skipped, needs {2 * sockets + 64:,} open files of {limit:,}"
            )
            continue
        rows.append(send_floor(sockets, rate, args.seconds, args.floor_bytes))
    servers.print_table(FLOOR_COLUMNS, rows)
    print()
    for row in rows:
        print(
            f"{row['sockets']:,} sockets: drainer CPU {row['drainer_cpu_s']:.2f} s; "
            f"short sends (kernel buffer full): {row['short']}; host idle {row['host_idle%']:.0f}%"
        )
    print()
    print(
        "usr_us/send: the sending process's user CPU per send (the Python loop); sys_us/send: "
        "its kernel CPU per send (the send system call, including the loopback delivery into "
        "the reader's socket, which runs in the sender's context); cpu%, drainer%: the sender's "
        "and the draining process' CPU, % of one core; rounds/s: the rate reached."
    )


if __name__ == "__main__":
    main()
