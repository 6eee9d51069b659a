"""Many websockets on one server process, held under a steady trickle of messages (issue 16,
item 5): `--connections` (20,000) websockets, each subscribed to a channel of its own and to
one channel all share, one message every 1/`--rate` seconds to each own channel, for
`--minutes` (5). Our server only.

    .venv/bin/python bench/many_websockets.py                                  # 20,000, 1/s, 5 min
    .venv/bin/python bench/many_websockets.py --connections 1000 --minutes 0.5 # a quick check
    .venv/bin/python bench/many_websockets.py --rate 0.2                       # one every 5 s

Runs inside a private network namespace (see servers.py), without installing the original.
The open-files limit is raised for the run (root may raise its hard limit; the server and the
load-generator processes inherit it).

1. Connect: each websocket as a web app and its page make it: the web app's signed
   `POST /connect` (channels `[c<n>, "shared"]`, user `u<n>`), then the page's
   `/ws?conn_id=...`; `--concurrency` (32) connections in flight over `--workers` (2)
   load-generator processes. Then `--settle` (10) s idle.
2. Hold: a publisher process posts signed `POST /message` calls of `--batch` (500) messages
   (consecutive own channels: every channel gets one message per round) on `--publish-
   connections` (4) kept-alive connections, on schedule (`connections x rate / batch` calls a
   second); a call waits when every connection is busy, and calls not sent by the end are
   dropped (counted). Every message carries the time its call was sent. The workers delimit
   every frame of every socket: latency (receive time minus send time) of every message into a
   histogram (0.1 ms buckets below 100 ms, 1 ms to 10 s), and for each socket the time between
   heartbeats (`[]` frames) and between any two frames.
3. After the hold, the workers wait until every sent message arrived (or nothing arrives for
   `--stall` s): `lost` = sent - received.

Server RSS (VmRSS) is read after it started and idled (`rss_before`), after connecting and
settling (`rss_idle`), and at the end of the hold (`rss_end`); server CPU, user and kernel apart,
from /proc/PID/stat, per minute and over the hold.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any, cast

import servers
from loadgen import (
    CONNECT_INFO,
    SENT_RE,
    Counters,
    HttpClient,
    Loop,
    Process,
    WebSocket,
    Worker,
    commands,
)

SHARED = "shared"
HEARTBEAT_INTERVAL = 5.0  # the server's default `heartbeat_interval` (servers.py does not set it)


def channel_of(number: int) -> str:
    return f"c{number}"


# --- latency histogram --------------------------------------------------------------------------


def bucket(seconds: float) -> int:
    """0.1 ms buckets below 100 ms, 1 ms buckets to 10 s, 100 ms buckets beyond."""
    ms = seconds * 1000.0
    if ms < 100.0:
        return max(0, int(ms * 10.0))
    if ms < 10000.0:
        return 1000 + int(ms - 100.0)
    return 10900 + int((ms - 10000.0) / 100.0)


def bucket_upper_ms(index: int) -> float:
    if index < 1000:
        return (index + 1) / 10.0
    if index < 10900:
        return float(index - 1000 + 101)
    return 10000.0 + (index - 10900 + 1) * 100.0


def merge_into(total: dict[int, int], part: dict[int, int]) -> None:
    for key, count in part.items():
        total[key] = total.get(key, 0) + count


def hist_percentile(hist: dict[int, int], fraction: float) -> float:
    """The upper edge (ms) of the bucket holding the `fraction` quantile."""
    count = sum(hist.values())
    if not count:
        return float("nan")
    rank = min(count - 1, int(fraction * count))
    seen = 0
    for key in sorted(hist):
        seen += hist[key]
        if seen > rank:
            return bucket_upper_ms(key)
    return float("nan")


# --- the load generator's side ------------------------------------------------------------------


class Stats:
    """What one worker's sockets received; `minute_*` since the parent last asked."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.messages = 0
        self.frames = 0
        self.heartbeats = 0
        self.hist: dict[int, int] = {}
        self.max_latency = 0.0
        self.minute_messages = 0
        self.minute_hist: dict[int, int] = {}
        self.minute_max = 0.0
        self.minute_max_hb_gap = 0.0
        self.minute_late_heartbeats = 0
        self.late_heartbeats = 0


class Listener(WebSocket):
    """A websocket that delimits every frame: latency of every message, heartbeat and frame
    gaps of its own."""

    __slots__ = ("stats", "last_frame", "last_heartbeat", "max_frame_gap", "max_hb_gap", "hbs")

    def __init__(self, loop: Loop, port: int, path: str, stats: Stats, **kwargs: Any) -> None:
        self.stats = stats
        self.begin(time.time())
        super().__init__(loop, port, path, Counters(), **kwargs)

    def begin(self, now: float) -> None:
        self.last_frame = now
        self.last_heartbeat = now
        self.max_frame_gap = 0.0
        self.max_hb_gap = 0.0
        self.hbs = 0

    def _consume(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        position, size = 0, len(buffer)
        now = time.time()
        stats = self.stats
        frames = 0
        while size - position >= 2:
            length = buffer[position + 1] & 0x7F
            header = 2
            if length == 126:
                if size - position < 4:
                    break
                length = int.from_bytes(buffer[position + 2 : position + 4], "big")
                header = 4
            elif length == 127:
                if size - position < 10:
                    break
                length = int.from_bytes(buffer[position + 2 : position + 10], "big")
                header = 10
            end = position + header + length
            if end > size:
                break
            if buffer[position] & 0x0F in (0x1, 0x0):  # text or continuation
                frames += 1
                start = position + header
                if length == 2 and buffer[start:end] == b"[]":
                    gap = now - self.last_heartbeat
                    self.last_heartbeat = now
                    self.hbs += 1
                    stats.heartbeats += 1
                    if gap > self.max_hb_gap:
                        self.max_hb_gap = gap
                    if gap > stats.minute_max_hb_gap:
                        stats.minute_max_hb_gap = gap
                    if gap > 2 * HEARTBEAT_INTERVAL:
                        stats.late_heartbeats += 1
                        stats.minute_late_heartbeats += 1
                else:
                    for sent in SENT_RE.findall(buffer, start, end):
                        latency = now - float(sent)
                        key = bucket(latency)
                        stats.hist[key] = stats.hist.get(key, 0) + 1
                        stats.minute_hist[key] = stats.minute_hist.get(key, 0) + 1
                        stats.messages += 1
                        stats.minute_messages += 1
                        if latency > stats.minute_max:
                            stats.minute_max = latency
                            if latency > stats.max_latency:
                                stats.max_latency = latency
            position = end
        self.buffer = buffer[position:]
        if frames:
            stats.frames += frames
            gap = now - self.last_frame
            if gap > self.max_frame_gap:
                self.max_frame_gap = gap
            self.last_frame = now


class ManyWorker(Worker):
    """A load-generator worker holding `Listener`s, each on its own channel and the shared one."""

    def __init__(self, pipe: Any, port: int, index: int) -> None:
        super().__init__(pipe, port, index)
        self.stats = Stats()

    def do_open_own(self, first: int, count: int, concurrency: int, timeout: float) -> None:
        """Open websockets number `first` .. `first + count - 1`: the web app's signed
        `/connect` with channels [c<n>, shared], then the page's `/ws?conn_id=`, `concurrency`
        at a time, each slot on its own kept-alive connection. Replies as `do_open` does."""
        started = time.monotonic()
        result: dict[str, Any] = {
            "opened": 0,
            "failed": 0,
            "errors": {},
            "connect_ms": [],
            "attach_ms": [],
        }
        state = {"next": 0, "done": 0}

        def failed(reason: str) -> None:
            result["failed"] += 1
            key = reason[:80]
            result["errors"][key] = result["errors"].get(key, 0) + 1
            state["done"] += 1

        clients = [HttpClient(self.loop, self.port, self.tokens) for _ in range(concurrency)]

        def start(client: HttpClient) -> None:
            if state["next"] >= count:
                return
            number = first + state["next"]
            state["next"] += 1
            began = time.monotonic()
            channels = [channel_of(number), SHARED]
            body = {
                "username": f"u{number}",
                "channels": channels,
                "info": dict(CONNECT_INFO, exclude_channels=channels),
            }

            def connected(status: int, answer: bytes) -> None:
                if status != 200:
                    failed(f"/connect status {status} {answer[:60]!r}")
                    start(client)
                    return
                connected_at = time.monotonic()

                def opened(ws: WebSocket) -> None:
                    now = time.monotonic()
                    result["opened"] += 1
                    result["connect_ms"].append(1000 * (connected_at - began))
                    result["attach_ms"].append(1000 * (now - connected_at))
                    self.sockets.append(ws)
                    ws.on_close = self._socket_closed
                    state["done"] += 1
                    start(client)

                def refused(ws: WebSocket, reason: str) -> None:
                    failed(f"/ws {reason}")
                    start(client)

                Listener(
                    self.loop,
                    self.port,
                    f"/ws?conn_id={json.loads(answer)['conn_id']}",
                    self.stats,
                    on_open=opened,
                    on_close=refused,
                )

            client.request("POST", "/connect", body, connected)

        for client in clients:
            start(client)
        self.reply_when_opened(clients, state, count, (started, timeout), result)

    def listeners(self) -> list[Listener]:
        return cast(list[Listener], self.sockets)

    def do_begin_hold(self) -> None:
        now = time.time()
        self.stats.reset()
        for ws in self.listeners():
            ws.begin(now)
        self.reply(True)

    def do_minute(self) -> None:
        """The last minute's figures; the minute counters start again."""
        stats = self.stats
        self.reply(
            {
                "messages": stats.minute_messages,
                "hist": stats.minute_hist,
                "max": stats.minute_max,
                "max_hb_gap": stats.minute_max_hb_gap,
                "late_heartbeats": stats.minute_late_heartbeats,
                "open": sum(1 for ws in self.sockets if ws.state == "open"),
            }
        )
        stats.minute_messages = 0
        stats.minute_hist = {}
        stats.minute_max = 0.0
        stats.minute_max_hb_gap = 0.0
        stats.minute_late_heartbeats = 0

    def do_count(self) -> None:
        self.reply(self.stats.messages)

    def do_end_hold(self) -> None:
        """Totals and, per socket still open, the worst gaps including the one still open up
        to now (a socket the server closed is counted in `closed_by_server` instead)."""
        now = time.time()
        late = 2 * HEARTBEAT_INTERVAL
        listeners = [ws for ws in self.listeners() if ws.state == "open"]
        hb_gaps = [max(ws.max_hb_gap, now - ws.last_heartbeat) for ws in listeners]
        frame_gaps = [max(ws.max_frame_gap, now - ws.last_frame) for ws in listeners]
        stats = self.stats
        self.reply(
            {
                "messages": stats.messages,
                "frames": stats.frames,
                "heartbeats": stats.heartbeats,
                "hist": stats.hist,
                "max": stats.max_latency,
                "sockets": len(self.sockets),
                "open": len(listeners),
                "max_hb_gap": max(hb_gaps, default=0.0),
                "hb_late_sockets": sum(1 for gap in hb_gaps if gap > late),
                "late_heartbeats": stats.late_heartbeats,
                "no_hb_sockets": sum(1 for ws in listeners if not ws.hbs),
                "max_frame_gap": max(frame_gaps, default=0.0),
                "frame_late_sockets": sum(1 for gap in frame_gaps if gap > late),
                "closed_by_server": dict(self.closed_by_server),
            }
        )


def _worker_main(pipe: Any, port: int, index: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    ManyWorker(pipe, port, index).run()


def _publish(loop: Loop, clients: list[HttpClient], arguments: dict[str, Any]) -> dict[str, Any]:
    """`connections x rate` messages a second for `seconds`, as calls of `batch` messages on
    schedule (message m goes to channel m mod connections), over the kept-alive `clients`.
    A due call waits for a free connection; calls still waiting at the end are not sent."""
    connections, rate = arguments["connections"], arguments["rate"]
    seconds, batch = arguments["seconds"], arguments["batch"]
    padding = "x" * arguments["payload_bytes"]
    interval = batch / (connections * rate)
    total_calls = max(1, round(seconds / interval))
    idle = list(clients)
    state = {"next": 0, "answered": 0, "errors": 0, "messages": 0}
    lateness: list[float] = []
    durations: list[float] = []
    per_minute: list[int] = []
    started = time.time()
    stop_at = started + seconds

    def issue(client: HttpClient) -> None:
        number = state["next"]
        state["next"] += 1
        now = time.time()
        lateness.append(now - (started + number * interval))
        first = number * batch
        items = [
            {
                "channel": channel_of((first + i) % connections),
                "user": "bench",
                "message": {"bench_sent": now, "n": first + i, "p": padding},
            }
            for i in range(batch)
        ]
        minute = int((now - started) // 60)
        while len(per_minute) <= minute:
            per_minute.append(0)
        per_minute[minute] += batch
        state["messages"] += batch

        def answered(status: int, body: bytes) -> None:
            state["answered"] += 1
            durations.append(time.time() - now)
            if status != 200:
                state["errors"] += 1
            idle.append(client)
            pump()

        client.request("POST", "/message", items, answered)

    def pump() -> None:
        now = time.time()
        if now >= stop_at:
            return
        due = min(total_calls, int((now - started) / interval) + 1)
        while idle and state["next"] < due:
            issue(idle.pop())

    while time.time() < stop_at and state["next"] < total_calls:
        pump()
        # behind schedule with every connection busy: wait for an answer (no busy loop)
        wait = started + state["next"] * interval - time.time() if idle else 0.05
        loop.run_once(min(0.05, max(0.0, wait)))
    finished = time.time()
    issued = state["next"]
    deadline = time.time() + 120
    while state["answered"] < issued and time.time() < deadline:
        loop.run_once(0.5)
    durations.sort()
    lateness.sort()

    def pick(values: list[float], fraction: float) -> float:
        return values[min(len(values) - 1, int(fraction * len(values)))] if values else 0.0

    return {
        "calls": issued,
        "calls_asked": total_calls,
        "messages": state["messages"] - state["errors"] * batch,
        "errors": state["errors"],
        "unanswered": issued - state["answered"],
        "started": started,
        "finished": finished,
        "per_minute": per_minute,
        "call_ms_p50": 1000 * pick(durations, 0.5),
        "call_ms_p99": 1000 * pick(durations, 0.99),
        "late_ms_p99": 1000 * pick(lateness, 0.99),
        "late_ms_max": 1000 * (lateness[-1] if lateness else 0.0),
    }


def _publisher_main(pipe: Any, port: int, index: int) -> None:
    from servers import Tokens

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    loop = Loop()
    tokens = Tokens()
    for arguments in commands(pipe, "publish"):
        clients = [HttpClient(loop, port, tokens) for _ in range(arguments["http_connections"])]
        pipe.send(_publish(loop, clients, arguments))
        for client in clients:
            client._drop_socket()


# --- the parent ---------------------------------------------------------------------------------


def raise_open_files(needed: int) -> str:
    """Raise RLIMIT_NOFILE (soft and hard: root may) so that the server and the load
    generator, which inherit it, can hold `needed` descriptors each."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return f"open files limit {soft:,}"
    target = max(needed, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, target))
    except (ValueError, OSError) as error:
        return (
            f"WARNING: could not raise the open files limit {soft:,} to {target:,} ({error}; "
            "raising a hard limit needs CAP_SYS_RESOURCE): the server, which needs a few dozen "
            f"descriptors of its own and one per HTTP connection in flight, holds fewer than "
            f"{soft:,} websockets"
        )
    return f"open files limit raised {soft:,} -> {target:,}"


def widen_port_range(needed: int) -> str | None:
    """Inside the private namespace only: enough ephemeral ports for `needed` connections."""
    path = Path("/proc/sys/net/ipv4/ip_local_port_range")
    low, high = (int(v) for v in path.read_text().split())
    if high - low >= needed:
        return None
    path.write_text("1024 65535\n")
    return f"ephemeral ports {low}-{high} -> 1024-65535 (this namespace only)"


def server_open_files_limit(pid: int) -> str:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return " ".join(line.split()[3:5])
    return "?"


def mib(kib: int) -> float:
    return kib / 1024.0


def run(args: argparse.Namespace) -> None:
    n = args.connections
    seconds = args.minutes * 60.0
    workers = args.workers
    rows_connect: list[dict[str, Any]] = []
    rows_minutes: list[dict[str, Any]] = []
    overall: dict[str, Any] = {}
    notes: list[str] = []
    minute_cpu: list[tuple[float, float]] = []
    with servers.running_server("ours", f"many-{n}") as server:
        load = None
        try:
            notes.append(f"server open files limit: {server_open_files_limit(server.pid)}")
            time.sleep(args.settle_before)
            rss_before = server.rss_kib()
            load_processes = [
                Process(_worker_main, server.port, index, f"worker{index}")
                for index in range(workers)
            ]
            load = _Load(load_processes, Process(_publisher_main, server.port, 0, "publisher"))
            pids = {"server": server.pid, "parent": os.getpid(), **load.pids}

            # 1. connect
            window = servers.CpuWindow(pids)
            window.start()
            shares = [n // workers + (1 if i < n % workers else 0) for i in range(workers)]
            first = 0
            for worker, share in zip(load.workers, shares, strict=True):
                worker.send(
                    "open_own",
                    first=first,
                    count=share,
                    concurrency=max(1, args.concurrency // workers),
                    timeout=args.connect_timeout,
                )
                first += share
            results = [w.receive(args.connect_timeout + 60) for w in load.workers]
            window.stop()
            opened = sum(r["opened"] for r in results)
            failed = sum(r["failed"] for r in results)
            errors: dict[str, int] = {}
            for r in results:
                for reason, count in r["errors"].items():
                    errors[reason] = errors.get(reason, 0) + count
            connect_ms = [v for r in results for v in r["connect_ms"]]
            attach_ms = [v for r in results for v in r["attach_ms"]]
            open_s = max(r["seconds"] for r in results)
            per_process, share_lg, _ = servers.loadgen_verdict(
                window, "server", [k for k in pids if k != "server"]
            )
            rows_connect.append(
                {
                    "conns": opened,
                    "failed": failed,
                    "open_s": open_s,
                    "conns/s": opened / max(1e-9, open_s),
                    "connect_p50": servers.percentile(connect_ms, 0.5),
                    "connect_p99": servers.percentile(connect_ms, 0.99),
                    "attach_p50": servers.percentile(attach_ms, 0.5),
                    "attach_p99": servers.percentile(attach_ms, 0.99),
                    "cpu_ms/conn": 1000 * window.used["server"] / max(1, opened),
                    "srv_cpu%": 100 * window.utilisation("server"),
                    "lg_max%": 100 * per_process,
                    "lg_share%": 100 * share_lg,
                }
            )
            if errors:
                notes.append(f"connect errors: {errors}")
            if opened < n:
                notes.append(f"WARNING: only {opened:,} of {n:,} websockets opened")
            idle0 = servers.cpu_split(server.pid)
            idle_started = time.time()
            time.sleep(args.settle)
            idle1 = servers.cpu_split(server.pid)
            idle_wall = time.time() - idle_started
            rss_idle = server.rss_kib()

            # 2. hold
            load.broadcast("begin_hold")
            window = servers.CpuWindow(pids)
            split0 = servers.cpu_split(server.pid)
            window.start()
            load.publisher.send(
                "publish",
                connections=n,
                rate=args.rate,
                seconds=seconds,
                batch=args.batch,
                http_connections=args.publish_connections,
                payload_bytes=args.payload_bytes,
            )
            hold_started = time.time()
            minutes = math.ceil(seconds / 60.0)
            hist_total: dict[int, int] = {}
            previous = split0
            previous_time = hold_started
            for minute in range(1, minutes + 1):
                end = hold_started + min(60.0 * minute, seconds)
                while time.time() < end:
                    time.sleep(min(1.0, max(0.0, end - time.time())))
                    if not server.alive():
                        raise SystemExit(f"bench: the server died, see {server.log_path}")
                parts = load.broadcast("minute", answer_within=120)
                now_split = servers.cpu_split(server.pid)
                now = time.time()
                wall = max(1e-9, now - previous_time)
                hist: dict[int, int] = {}
                for part in parts:
                    merge_into(hist, part["hist"])
                merge_into(hist_total, hist)
                minute_cpu.append(
                    ((now_split[0] - previous[0]) / wall, (now_split[1] - previous[1]) / wall)
                )
                rows_minutes.append(
                    {
                        "minute": minute,
                        "received": sum(p["messages"] for p in parts),
                        "recv/s": sum(p["messages"] for p in parts) / wall,
                        "p50_ms": hist_percentile(hist, 0.5),
                        "p99_ms": hist_percentile(hist, 0.99),
                        "max_ms": 1000 * max(p["max"] for p in parts),
                        "hb_gap_max_s": max(p["max_hb_gap"] for p in parts),
                        "late_hbs": sum(p["late_heartbeats"] for p in parts),
                        "open": sum(p["open"] for p in parts),
                        "srv_usr%": 100 * minute_cpu[-1][0],
                        "srv_sys%": 100 * minute_cpu[-1][1],
                        "rss_MiB": mib(server.rss_kib()),
                    }
                )
                print(
                    "... minute {minute}: {received:,} received, p99 {p99_ms:.1f} ms, "
                    "server {srv_usr%:.0f}% user {srv_sys%:.0f}% kernel, "
                    "RSS {rss_MiB:.1f} MiB".format(**rows_minutes[-1]),
                    file=sys.stderr,
                    flush=True,
                )
                previous, previous_time = now_split, now
            published = load.publisher.receive(timeout=300)
            rss_end = server.rss_kib()
            window.stop()
            split1 = servers.cpu_split(server.pid)
            for row, sent in zip(rows_minutes, published["per_minute"], strict=False):
                row["sent"] = sent
            # 3. drain: until every sent message arrived, or nothing for `stall` s
            received, progress_at = -1, time.monotonic()
            while True:
                count = sum(load.broadcast("count", answer_within=60))
                if count != received:
                    received, progress_at = count, time.monotonic()
                if count >= published["messages"] or time.monotonic() - progress_at > args.stall:
                    break
                time.sleep(0.5)
            ends = load.broadcast("end_hold", answer_within=120)
            load.broadcast("close_all", answer_within=120)
            hist_all: dict[int, int] = {}
            for part in ends:
                merge_into(hist_all, part["hist"])
            per_process, share_lg, lg_warnings = servers.loadgen_verdict(
                window, "server", [k for k in pids if k != "server"]
            )
            hold_s = window.seconds
            received = sum(p["messages"] for p in ends)
            user_s, system_s = split1[0] - split0[0], split1[1] - split0[1]
            closed: dict[str, int] = {}
            for part in ends:
                for reason, count in part["closed_by_server"].items():
                    closed[reason] = closed.get(reason, 0) + count
            overall = {
                "conns": opened,
                "rate/conn": args.rate,
                "asked/s": opened * args.rate,
                "sent/s": published["messages"]
                / max(1e-9, published["finished"] - published["started"]),
                "sent": published["messages"],
                "received": received,
                "lost": published["messages"] - received,
                "p50_ms": hist_percentile(hist_all, 0.5),
                "p99_ms": hist_percentile(hist_all, 0.99),
                "max_ms": 1000 * max(p["max"] for p in ends),
                "srv_usr%": 100 * user_s / hold_s,
                "srv_sys%": 100 * system_s / hold_s,
                "usr_us/msg": 1e6 * user_s / max(1, received),
                "sys_us/msg": 1e6 * system_s / max(1, received),
                "lg_max%": 100 * per_process,
                "lg_share%": 100 * share_lg,
                "hb_gap_max_s": max(p["max_hb_gap"] for p in ends),
                "hb_late_socks": sum(p["hb_late_sockets"] for p in ends),
                "no_hb_socks": sum(p["no_hb_sockets"] for p in ends),
                "frame_gap_max_s": max(p["max_frame_gap"] for p in ends),
                "open_at_end": sum(p["open"] for p in ends),
            }
            memory = {
                "conns": opened,
                "idle_usr%": 100 * (idle1[0] - idle0[0]) / idle_wall,
                "idle_sys%": 100 * (idle1[1] - idle0[1]) / idle_wall,
                "rss_before_MiB": mib(rss_before),
                "rss_idle_MiB": mib(rss_idle),
                "rss_end_MiB": mib(rss_end),
                "KiB/conn_idle": (rss_idle - rss_before) / max(1, opened),
                "KiB/conn_end": (rss_end - rss_before) / max(1, opened),
            }
            notes.append(
                f"hold: {hold_s:.1f} s, {published['calls']:,} calls of {args.batch} messages "
                f"({published['calls_asked']:,} asked, {published['errors']} failed, "
                f"{published['unanswered']} unanswered), call p50 {published['call_ms_p50']:.1f} "
                f"ms p99 {published['call_ms_p99']:.1f} ms, calls sent late by p99 "
                f"{published['late_ms_p99']:.0f} ms max {published['late_ms_max']:.0f} ms; "
                f"frames {sum(p['frames'] for p in ends):,}, heartbeats "
                f"{sum(p['heartbeats'] for p in ends):,}, late heartbeats (gap > "
                f"{2 * HEARTBEAT_INTERVAL:g} s) {sum(p['late_heartbeats'] for p in ends):,}, "
                f"sockets whose worst frame gap > {2 * HEARTBEAT_INTERVAL:g} s "
                f"{sum(p['frame_late_sockets'] for p in ends):,}; host idle "
                f"{100 * window.host_idle:.0f}%; load generator CPU s: "
                + ", ".join(f"{k} {v:.1f}" for k, v in window.used.items() if k != "server")
            )
            if closed:
                notes.append(f"WARNING: sockets closed by the server: {closed}")
            for warning in lg_warnings:
                notes.append(f"WARNING: {warning}")
            if overall["lost"]:
                notes.append(f"WARNING: {overall['lost']:,} messages not received")
            if published["calls"] < published["calls_asked"]:
                notes.append(
                    f"WARNING: the publisher sent {published['calls']:,} of "
                    f"{published['calls_asked']:,} calls (connections busy: the server is "
                    "slower than the asked rate)"
                )
        finally:
            if load is not None:
                load.stop()
        notes.append(server.log_summary())

    print("connect phase")
    servers.print_table(list(rows_connect[0]), rows_connect)
    print()
    print("hold, per minute (sent: messages the publisher sent in that minute)")
    columns = (
        ["minute", "sent", *[k for k in rows_minutes[0] if k not in ("minute", "sent")]]
        if rows_minutes
        else []
    )
    if rows_minutes:
        servers.print_table(columns, rows_minutes)
    print()
    if overall:
        print("hold, overall")
        servers.print_table(list(overall), [overall])
        print()
        print(f"memory (idle_usr%, idle_sys%: server CPU in the {args.settle:g} s idle settle)")
        servers.print_table(list(memory), [memory])
        print()
    for note in notes:
        print(note)
    print()
    print(
        "latency: receive time minus the send time of the message's call, every message of "
        "every socket (histogram: 0.1 ms buckets below 100 ms, 1 ms to 10 s; p50/p99 are "
        "bucket upper edges); hb_gap: time between two `[]` heartbeats of one socket "
        f"(heartbeat_interval {HEARTBEAT_INTERVAL:g} s; the gap still open at the end counts); "
        "late_hbs / hb_late_socks: heartbeat gaps / open sockets with a gap over "
        f"{2 * HEARTBEAT_INTERVAL:g} s; no_hb_socks: open sockets without a heartbeat in the "
        "hold; open_at_end: sockets open at the end (the others were closed by the server); "
        "frame_gap: time between any two frames of one socket; srv_usr% / srv_sys%: server user "
        "/ kernel CPU (100 = one core); usr_us/msg, sys_us/msg: per message received; "
        "KiB/conn: (RSS - rss_before) / connections."
    )


class _Load:
    """The worker processes and the publisher (as loadgen.LoadGenerator, with our workers)."""

    def __init__(self, workers: list[Process], publisher: Process) -> None:
        self.workers = workers
        self.publisher = publisher

    @property
    def pids(self) -> dict[str, int]:
        return {p.name: p.pid for p in [*self.workers, self.publisher]}

    def broadcast(
        self, command: str, answer_within: float | None = None, **arguments: Any
    ) -> list[Any]:
        for worker in self.workers:
            worker.send(command, **arguments)
        return [worker.receive(answer_within) for worker in self.workers]

    def stop(self) -> None:
        for process in [*self.workers, self.publisher]:
            process.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=20000, help="websockets (20,000)")
    parser.add_argument(
        "--rate", type=float, default=1.0, help="messages per second to each own channel (1)"
    )
    parser.add_argument("--minutes", type=float, default=5.0, help="hold time (5)")
    parser.add_argument("--batch", type=int, default=500, help="messages per POST /message (500)")
    parser.add_argument(
        "--publish-connections",
        type=int,
        default=4,
        help="kept-alive connections the publisher's calls go over (4)",
    )
    parser.add_argument("--payload-bytes", type=int, default=100, help="padding per message (100)")
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes (2)")
    parser.add_argument("--concurrency", type=int, default=32, help="connects in flight (32)")
    parser.add_argument("--connect-timeout", type=float, default=1800.0)
    parser.add_argument("--settle", type=float, default=10.0, help="idle s after connecting (10)")
    parser.add_argument("--settle-before", type=float, default=3.0)
    parser.add_argument("--stall", type=float, default=20.0, help="drain: give up after s silence")
    args = parser.parse_args()
    # Ours only: enter the namespace directly (servers.begin would install the original).
    servers.enter_private_netns()
    limit_note = raise_open_files(args.connections + 4096)
    port_note = widen_port_range(args.connections + 2000)
    print(
        f"many websockets: {args.connections:,} websockets on one server process, each on its own "
        f"channel and `{SHARED}`; one message every {1 / args.rate:g} s to each own channel "
        f"({args.connections * args.rate:,.0f} messages/s) in signed POST /message calls of "
        f"{args.batch} over {args.publish_connections} kept-alive connections, for "
        f"{args.minutes:g} minutes; our server only"
    )
    print(servers.machine_note())
    print(limit_note + (f"; {port_note}" if port_note else ""))
    print(flush=True)
    try:
        run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        main()
