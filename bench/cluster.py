"""The cluster's ceiling (issue 16 item 4): two of our nodes on one Redis.

    .venv/bin/python bench/cluster.py                          # every part, default sizes
    .venv/bin/python bench/cluster.py --parts api follow       # some parts only
    .venv/bin/python bench/cluster.py --connections 20000 100000

Ours only (the original has no cluster), on the machine's Redis (`--redis`, default
redis://127.0.0.1:6379/0, shared with whatever else uses it) under a prefix of its own,
`bench-cluster-<random>`, whose keys are deleted at the end. No network namespace: our
servers bind 127.0.0.1 only. Node A starts first and so holds the leader lease (GC, snapshots);
node B only follows. Parts:

- `api`: signed `POST /message` (one item, to a channel nobody listens to) and `POST /connect`
  (a new user, one channel) on node A, `--concurrency` (32) in flight on keep-alive
  connections (the load client sets no socket options): calls a second, and the CPU of A per
  call and of B per command it follows.
- `follow`: commands (a one-item `Publish`, as `/message` makes it) appended to the log by this
  script at `--rates` per second (the entries a node would write; XADD in small pipelines), so
  a rate is not capped by what one node's API takes. B's CPU per command (utime+stime from
  /proc, its idle CPU with the same probes subtracted), Redis's CPU per command (INFO cpu
  deltas: Redis is shared, so others' use counts too), and B's worst event-loop pause as a
  client sees it: the longest `GET /health` on B, asked every `--probe-ms` (one at a time).
  `--extra-followers K` starts K more nodes that only follow (`readers`: 2 + K), for what
  each more reader costs Redis. `backlog`: B stopped (SIGSTOP) while `--backlog` entries are
  appended, then resumed: its CPU per command until it caught up, and the longest `/health`
  while it catches up.
- `snapshot`: `--connections` connections put into the state (Connect commands appended to the
  log, no listener: they stay until `gc_conns_after`, set to a day), then a probe message
  published through A's API every `--probe-ms` for `--snapshot-seconds` (several snapshot
  intervals of 10 s) to a channel with a websocket on each node: the worst publish-to-delivery
  delay on each node, and the snapshot's size.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
import servers
from loadgen import Counters, HttpClient, Loop, Process, WebSocket

from channelstream.broker.redis import encode_command
from channelstream.core.commands import Command, Connect, Publish

FEEDER = "bench-feeder"  # the origin of the commands this script appends
PROBE_CHANNEL = "probe"


# --- the cluster --------------------------------------------------------------------------------


def _write_ini(path: Path, port: int, redis_url: str, prefix: str) -> None:
    path.write_text(
        "[channelstream]\n"
        f"host = {servers.HOST}\nport = {port}\nsecret = {servers.SECRET}\n"
        f"admin_secret = bench-admin\nlog_level = WARNING\nbroker = {redis_url}\n"
        f"redis_prefix = {prefix}\n"
        "max_queued_frames = 1000000\nmax_connections = 0\nmax_message_size = 1048576\n"
        # connections without a listener stay in the state (the snapshot part's N)
        "gc_conns_after = 86400\n"
    )


def start_node(workdir: Path, label: str, redis_url: str, prefix: str) -> servers.Server:
    port = servers.free_port()
    ini = workdir / f"{label}.ini"
    _write_ini(ini, port, redis_url, prefix)
    server = servers.spawn_ours(ini, port, f"cluster-{label}.log")
    process, log_path = server.process, server.log_path
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"bench: node {label} exited at start, see {log_path}")
        with suppress(OSError):
            import socket

            socket.create_connection((servers.HOST, port), timeout=0.5).close()
            return server
        time.sleep(0.05)
    server.stop()
    raise SystemExit(f"bench: node {label} did not start, see {log_path}")


@dataclass
class Cluster:
    a: servers.Server
    b: servers.Server
    redis: redis.Redis
    prefix: str
    followers: tuple[servers.Server, ...] = ()  # more nodes that only follow (--extra-followers)

    @property
    def readers(self) -> int:
        """Nodes reading the log."""
        return 2 + len(self.followers)

    @property
    def log_key(self) -> str:
        return f"{self.prefix}:log"

    def redis_cpu(self) -> float:
        info = self.redis.info("cpu")
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


@contextmanager
def running_cluster(redis_url: str, extra_followers: int = 0) -> Iterator[Cluster]:
    prefix = f"bench-cluster-{uuid.uuid4().hex[:10]}"
    client = redis.Redis.from_url(redis_url, socket_timeout=30)
    started: list[servers.Server] = []
    with tempfile.TemporaryDirectory(prefix="cs-bench-cluster-") as workdir:
        try:
            a = start_node(Path(workdir), "a", redis_url, prefix)
            started.append(a)
            deadline = time.monotonic() + 10  # A holds the lease before B starts
            while client.get(f"{prefix}:leader") is None and time.monotonic() < deadline:
                time.sleep(0.05)
            b = start_node(Path(workdir), "b", redis_url, prefix)
            started.append(b)
            for number in range(extra_followers):
                started.append(start_node(Path(workdir), f"c{number}", redis_url, prefix))
            yield Cluster(a, b, client, prefix, tuple(started[2:]))
        finally:
            for server in started:
                with suppress(ProcessLookupError):
                    os.kill(server.pid, signal.SIGCONT)
                server.stop()
            for server in started:
                print(f"node :{server.port}: {server.log_summary()}")
            keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
            if keys:
                client.delete(*keys)
            client.close()


# --- what this script appends to the log ----------------------------------------------------------


def naive_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def publish_entry(channel: str, message: dict[str, Any]) -> str:
    """A one-item Publish as `/message` makes it."""
    now = naive_now()
    item: Any = {
        "channel": channel,
        "user": "bench",
        "message": message,
        "uuid": uuid.uuid4().hex,
        "timestamp": now.isoformat(),
        "pm_users": [],
        "exclude_users": [],
        "no_history": False,
    }
    return encode_command(Command(Publish(messages=(item,)), now, FEEDER))


def connect_entry(number: int, channels: int) -> str:
    """A Connect as `/connect` makes it: a new user with one channel."""
    operation = Connect(
        username=f"user-{number}",
        conn_id=uuid.uuid4().hex,
        channels=(f"room-{number % channels}",),
    )
    return encode_command(Command(operation, naive_now(), FEEDER))


def append(cluster: Cluster, entries: list[str], chunk: int = 1000) -> None:
    for start in range(0, len(entries), chunk):
        pipe = cluster.redis.pipeline(transaction=False)
        for entry in entries[start : start + chunk]:
            pipe.xadd(cluster.log_key, {"c": entry})
        pipe.execute()


def probe_entry(number: int) -> str:
    return publish_entry(PROBE_CHANNEL, {"bench_sent": time.time(), "n": number})


def feed(cluster: Cluster, rate: float, seconds: float) -> int:
    """Append one-item Publish commands at `rate` per second for `seconds`, one of every 50 a
    probe to PROBE_CHANNEL; how many. Each goes alone when it falls due, as commands from
    independent API calls do; above 1,000/s, what fell due in the last millisecond goes in one
    pipeline."""
    tick = max(0.001, 1 / rate)
    started = time.monotonic()
    sent = 0
    total = int(rate * seconds)
    filler = {"text": "x" * 100}
    while sent < total:
        due = min(total, int((time.monotonic() - started) * rate) + 1)
        entries = [
            probe_entry(n) if n % 50 == 0 else publish_entry("busy", filler)
            for n in range(sent, due)
        ]
        if entries:
            append(cluster, entries)
            sent = due
        time.sleep(tick)
    return sent


# --- the load and probe processes -----------------------------------------------------------------


def _api_main(pipe: Any, port: int, index: int) -> None:
    """Signed calls on `concurrency` keep-alive connections, each sending its next call when
    the previous one is answered, for `seconds`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    loop = Loop()
    tokens = servers.Tokens()
    while True:
        command, arguments = pipe.recv()
        if command == "exit":
            pipe.send(True)
            return
        pipe.send(_api_calls(loop, tokens, port, index, arguments))


def _api_calls(
    loop: Loop, tokens: servers.Tokens, port: int, index: int, arguments: dict[str, Any]
) -> dict[str, Any]:
    """One "calls" command of the API process."""
    kind, seconds, concurrency = arguments["kind"], arguments["seconds"], arguments["conc"]
    durations: list[float] = []
    errors = [0]
    counter = [0]
    stop_at = time.monotonic() + seconds

    def call(client: HttpClient) -> None:
        counter[0] += 1
        number = counter[0]
        if kind == "message":
            path: str = "/message"
            body: Any = [{"channel": "nobody", "user": "bench", "message": {"n": number}}]
        else:
            path = "/connect"
            body = {
                "username": f"api-{index}-{number}-{uuid.uuid4().hex[:6]}",
                "channels": ["lobby"],
            }
        sent = time.monotonic()

        def answered(status: int, answer: bytes) -> None:
            now = time.monotonic()
            durations.append(now - sent)
            if status != 200:
                errors[0] += 1
            if now < stop_at:
                call(client)

        client.request("POST", path, body, answered)

    clients = [HttpClient(loop, port, tokens) for _ in range(concurrency)]
    began = time.monotonic()
    for client in clients:
        call(client)
    while len(durations) < counter[0] or time.monotonic() < stop_at:
        loop.run_once(0.05)
    finished = time.monotonic()
    for client in clients:
        client._drop_socket()
    durations.sort()
    return {
        "calls": len(durations),
        "errors": errors[0],
        "seconds": finished - began,
        "p50_ms": 1000 * servers.percentile(durations, 0.5),
        "p99_ms": 1000 * servers.percentile(durations, 0.99),
    }


def _probe_main(pipe: Any, port: int, index: int) -> None:
    """Websockets on each node subscribed to PROBE_CHANNEL (timing every probe message), a
    `GET /health` loop per node, and optionally a probe message published every interval."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    loop = Loop()
    tokens = servers.Tokens()
    sockets: dict[int, WebSocket] = {}
    counters: dict[int, Counters] = {}
    while True:
        command, arguments = pipe.recv()
        if command == "exit":
            pipe.send(True)
            return
        if command == "open":
            for node_port in arguments["ports"]:
                answer: dict[str, Any] = {}
                client = HttpClient(loop, node_port, tokens)
                client.request(
                    "POST",
                    "/connect",
                    {"username": f"probe-{node_port}", "channels": [PROBE_CHANNEL]},
                    lambda status, body, answer=answer: answer.update(status=status, body=body),
                )
                while not answer:
                    loop.run_once(0.1)
                conn_id = json.loads(answer["body"])["conn_id"]
                client._drop_socket()
                counters[node_port] = Counters()
                opened: list[bool] = []
                sockets[node_port] = WebSocket(
                    loop,
                    node_port,
                    f"/ws?conn_id={conn_id}",
                    counters[node_port],
                    sampled=True,
                    on_open=lambda ws, opened=opened: opened.append(True),
                )
                while not opened:
                    loop.run_once(0.1)
            pipe.send(True)
            continue
        pipe.send(_probe_run(loop, tokens, pipe, counters, arguments))


def _probe_run(
    loop: Loop,
    tokens: servers.Tokens,
    pipe: Any,
    counters: dict[int, Counters],
    arguments: dict[str, Any],
) -> dict[str, Any]:
    """One "run" of the probe process: for `seconds`, or until told to stop."""
    # "run": for `seconds`, or until told to stop (a byte on the pipe)
    interval = arguments["interval"]
    publish_port = arguments.get("publish_port")
    health: dict[int, list[float]] = {p: [] for p in arguments["health_ports"]}
    for node_counters in counters.values():
        node_counters.reset()
        node_counters.latencies = SentAndDelay()
    publisher = HttpClient(loop, publish_port, tokens) if publish_port else None
    published = [0]
    health_clients = {p: HttpClient(loop, p, tokens) for p in health}
    in_flight: dict[int, float] = {}
    stop_at = time.monotonic() + arguments["seconds"]
    next_tick = time.monotonic()
    while time.monotonic() < stop_at and not pipe.poll():
        now = time.monotonic()
        if now >= next_tick:
            next_tick += interval
            for node_port, client in health_clients.items():
                if node_port in in_flight:
                    continue
                in_flight[node_port] = now

                def answered(status: int, body: bytes, node_port: int = node_port) -> None:
                    health[node_port].append(time.monotonic() - in_flight.pop(node_port))

                client.request("GET", "/health", None, answered)
            if publisher is not None:
                published[0] += 1
                message = {"bench_sent": time.time(), "n": published[0]}
                publisher.request(
                    "POST",
                    "/message",
                    [{"channel": PROBE_CHANNEL, "user": "probe", "message": message}],
                    lambda status, body: None,
                )
        loop.run_once(max(0.0, min(next_tick - time.monotonic(), 0.05)))
    if pipe.poll():
        pipe.recv()
    drain_until = time.monotonic() + 2.0  # probes in flight
    while time.monotonic() < drain_until and (in_flight or publisher and publisher.current):
        loop.run_once(0.05)
    # a still unanswered /health counts as long as it has waited
    for node_port, asked in in_flight.items():
        health[node_port].append(time.monotonic() - asked)
    in_flight.clear()
    for client in [*health_clients.values(), *([publisher] if publisher else [])]:
        client._drop_socket()
    return {
        "published": published[0],
        "health": {p: values for p, values in health.items()},
        "latency": {p: list(c.latencies) for p, c in counters.items()},
    }


class SentAndDelay(list):  # type: ignore[type-arg]
    """A sampled websocket's latencies kept as (send time, delay) pairs: the websocket
    appends `now - sent` just as it reads the message."""

    def append(self, delay: float) -> None:
        super().append((time.time() - delay, delay))


def delays(pairs: list[tuple[float, float]]) -> list[float]:
    return [delay for _, delay in pairs]


class Probe:
    """The probe process: open its websockets once, then run it in phases."""

    def __init__(self, cluster: Cluster) -> None:
        self.process = Process(_probe_main, 0, 0, "probe")
        self.cluster = cluster
        self.process.call("open", 60, ports=[cluster.a.port, cluster.b.port])

    def start(
        self,
        seconds: float,
        interval: float,
        publish_port: int | None = None,
        health_ports: tuple[int, ...] = (),
    ) -> None:
        self.process.send(
            "run",
            seconds=seconds,
            interval=interval,
            publish_port=publish_port,
            health_ports=list(health_ports),
        )

    def finish(self, stop: bool = True, timeout: float = 3600) -> dict[str, Any]:
        if stop:
            self.process.pipe.send(("stop", {}))
        return self.process.receive(timeout)  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.process.stop()


def summary_ms(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": 1000 * servers.percentile(values, 0.5),
        "p99": 1000 * servers.percentile(values, 0.99),
        "max": 1000 * max(values) if values else float("nan"),
    }


def wait_for_probe(result_latencies: list[float], what: str) -> None:
    if not result_latencies:
        print(f"  WARNING: no probe message arrived on {what}")


# --- the parts ------------------------------------------------------------------------------------


def cpu(pid: int) -> float:
    return servers.cpu_seconds(pid)


def part_api(cluster: Cluster, args: argparse.Namespace) -> None:
    rows = []
    loader = Process(_api_main, cluster.a.port, 0, "api")
    try:
        for kind in ("message", "connect"):
            print(f"... api {kind}", file=sys.stderr, flush=True)
            a0, b0, r0 = cpu(cluster.a.pid), cpu(cluster.b.pid), cluster.redis_cpu()
            l0 = cpu(loader.pid)
            result = loader.call(
                "calls",
                args.api_seconds + 60,
                kind=kind,
                seconds=args.api_seconds,
                conc=args.concurrency,
            )
            a1, b1, r1 = cpu(cluster.a.pid), cpu(cluster.b.pid), cluster.redis_cpu()
            calls, seconds = result["calls"], result["seconds"]
            rows.append(
                {
                    "call": f"/{kind}",
                    "in_flight": args.concurrency,
                    "calls": calls,
                    "errors": result["errors"],
                    "calls/s": calls / seconds,
                    "p50_ms": result["p50_ms"],
                    "p99_ms": result["p99_ms"],
                    "A_cpu%": 100 * (a1 - a0) / seconds,
                    "A_ms/call": 1000 * (a1 - a0) / max(1, calls),
                    "B_ms/cmd": 1000 * (b1 - b0) / max(1, calls),
                    "redis_ms/cmd": 1000 * (r1 - r0) / max(1, calls),
                    "client_cpu%": 100 * (cpu(loader.pid) - l0) / seconds,
                }
            )
    finally:
        loader.stop()
    print("api: signed calls on node A (B follows)")
    servers.print_table(list(rows[0]), rows)
    print()


def part_follow(cluster: Cluster, args: argparse.Namespace, probe: Probe) -> None:
    b = cluster.b
    interval = args.probe_ms / 1000
    # B's CPU with nothing to follow but the probes themselves: subtracted below
    probe.start(3600, interval, health_ports=(b.port,))
    time.sleep(0.5)
    b0, started = cpu(b.pid), time.monotonic()
    time.sleep(args.idle_seconds)
    idle_per_s = (cpu(b.pid) - b0) / (time.monotonic() - started)
    probe.finish()
    rows = []
    for rate in args.rates:
        print(f"... follow {rate}/s", file=sys.stderr, flush=True)
        probe.start(3600, interval, health_ports=(b.port,))
        time.sleep(0.3)
        b0, r0, started = cpu(b.pid), cluster.redis_cpu(), time.monotonic()
        sent = feed(cluster, rate, args.follow_seconds)
        marker = probe_entry(-1)
        append(cluster, [marker])
        before = (b0, r0, started)
        rows.append(_followed(cluster, probe, before, idle_per_s, ("live", rate, sent + 1), 120))
    if args.backlog:
        print(f"... backlog {args.backlog}", file=sys.stderr, flush=True)
        os.kill(b.pid, signal.SIGSTOP)
        try:
            filler = {"text": "x" * 100}
            entries = [publish_entry("busy", filler) for _ in range(args.backlog)]
            append(cluster, entries)
            append(cluster, [probe_entry(-1)])
        finally:
            b0, r0, started = cpu(b.pid), cluster.redis_cpu(), time.monotonic()
            os.kill(b.pid, signal.SIGCONT)
            probe.start(3600, interval, health_ports=(b.port,))  # none waits out the stop
        what = ("backlog", float("nan"), args.backlog + 1)
        row = _followed(cluster, probe, (b0, r0, started), idle_per_s, what, 300)
        rows.append(row)
    print(
        f"follow: node B follows commands appended to the log (B's idle CPU with the probes, "
        f"{100 * idle_per_s:.2f} % of a core, subtracted in B_ms/cmd; /health every "
        f"{args.probe_ms} ms)"
    )
    columns = list(rows[0]) + (["catch_up_s"] if args.backlog else [])
    servers.print_table(columns, rows)
    print()


def _followed(
    cluster: Cluster,
    probe: Probe,
    before: tuple[float, float, float],
    idle_per_s: float,
    what: tuple[str, float, int],
    timeout: float,
) -> dict[str, Any]:
    """The row of one follow measurement (`what`: mode, rate, commands), once B applied the
    log's last entry (at most `timeout` s): B's and Redis's CPU per command since `before`
    (B's CPU, Redis's CPU, time.monotonic()), B's idle CPU subtracted, and what the probes
    saw; a backlog's row also has how long catching up took."""
    b = cluster.b
    b0, r0, started = before
    mode, rate, commands = what
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.05)
        if _applied_everything(cluster, b):
            break
    elapsed = time.monotonic() - started
    b1, r1 = cpu(b.pid), cluster.redis_cpu()
    result = probe.finish()
    health = summary_ms(result["health"][b.port])
    latency = summary_ms(delays(result["latency"][b.port]))
    row: dict[str, Any] = {
        "mode": mode,
        "readers": cluster.readers,
        "rate/s": rate,
        "commands": commands,
        "B_cpu%": 100 * (b1 - b0) / elapsed,
        "B_ms/cmd": 1000 * (b1 - b0 - idle_per_s * elapsed) / commands,
        "redis_ms/cmd": 1000 * (r1 - r0) / commands,
        "health_p99_ms": health["p99"],
        "health_max_ms": health["max"],
        "probe_p50_ms": latency["p50"],
        "probe_max_ms": latency["max"],
    }
    if mode == "backlog":
        row["catch_up_s"] = elapsed
    return row


def _applied_everything(cluster: Cluster, node: servers.Server) -> bool:
    """Whether `node` applied the log's last entry: its /metrics-free way, the admin-free
    way: ask it to catch up (a signed `/info` syncs with the cluster before answering)."""
    import urllib.request

    path = "/info"
    request = urllib.request.Request(
        f"http://{servers.HOST}:{node.port}{path}",
        data=json.dumps({"info": {"channels": ["nobody-at-all"]}}).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "x-channelstream-secret": _TOKENS(path),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status == 200
    except OSError:
        return False


_TOKENS = servers.Tokens()


def part_snapshot(cluster: Cluster, args: argparse.Namespace, probe: Probe) -> None:
    interval = args.probe_ms / 1000
    rows = []
    total = 0
    trimmed_key = f"{cluster.prefix}:trimmed"
    for target in [0, *args.connections]:
        if target > total:
            print(f"... snapshot: {target} connections", file=sys.stderr, flush=True)
            entries = [connect_entry(n, args.channels) for n in range(total, target)]
            append(cluster, entries)
            total = target
            for node in (cluster.a, cluster.b):
                deadline = time.monotonic() + 600
                while not _applied_everything(cluster, node) and time.monotonic() < deadline:
                    time.sleep(0.5)
            time.sleep(8)  # presence_grace passes: the connections go absent in one GC
        print(f"... snapshot probes at {total} connections", file=sys.stderr, flush=True)
        snapshots = 0
        forks: list[float] = []  # when a child of A appeared (its snapshot encoder)
        children_file = Path(f"/proc/{cluster.a.pid}/task/{cluster.a.pid}/children")
        known: set[str] = set()
        seen = cluster.redis.get(trimmed_key)
        a0, b0 = cpu(cluster.a.pid), cpu(cluster.b.pid)
        probe.start(
            args.snapshot_seconds,
            interval,
            publish_port=cluster.a.port,
            health_ports=(cluster.a.port, cluster.b.port),
        )
        started = time.monotonic()
        polls = 0
        while time.monotonic() - started < args.snapshot_seconds:
            time.sleep(0.01)
            children = set(children_file.read_text().split())
            if children - known:
                forks.append(time.time())
            known = children
            polls += 1
            if polls % 10 == 0:
                value = cluster.redis.get(trimmed_key)
                if value != seen:
                    seen = value
                    snapshots += 1
        result = probe.finish(stop=False)
        elapsed = time.monotonic() - started
        a1, b1 = cpu(cluster.a.pid), cpu(cluster.b.pid)
        size = cluster.redis.strlen(f"{cluster.prefix}:snapshot")
        row: dict[str, Any] = {
            "connections": total,
            "snapshot_MB": size / 1e6,
            "B/conn": size / total if total else float("nan"),
            "snapshots": snapshots,
            "forks": len(forks),
            "probes": result["published"],
        }
        for name, node in (("A", cluster.a), ("B", cluster.b)):
            pairs = result["latency"][node.port]
            latency = summary_ms(delays(pairs))
            health = summary_ms(result["health"][node.port])
            near = [d for sent, d in pairs if any(-0.05 <= sent - f <= 0.5 for f in forks)]
            row[f"{name}_lost"] = result["published"] - latency["n"]
            row[f"{name}_p50_ms"] = latency["p50"]
            row[f"{name}_p99_ms"] = latency["p99"]
            row[f"{name}_max_ms"] = latency["max"]
            row[f"{name}_fork_max_ms"] = 1000 * max(near) if near else float("nan")
            row[f"{name}_health_max_ms"] = health["max"]
        row["A_cpu%"] = 100 * (a1 - a0) / elapsed
        row["B_cpu%"] = 100 * (b1 - b0) / elapsed
        rows.append(row)
    print(
        f"snapshot: probe published through A every {args.probe_ms} ms for "
        f"{args.snapshot_seconds} s, delivered to a websocket on each node (A leads: it "
        "snapshots every 10 s); connections without listeners, one channel each; "
        "snapshots: trims seen; forks: children of A seen (its snapshot encoders); "
        "*_fork_max_ms: the worst delay of probes sent from 50 ms before to 500 ms after a fork"
    )
    servers.print_table(list(rows[0]), rows)
    print()


def part_fork(args: argparse.Namespace) -> None:
    """What the leader pays for a snapshot, in this process (no server): the state of N
    connections built by the same Connect commands, then the old way (walk and encode here)
    against the new one (fork: the parent pays the fork; the child walks and encodes). Also
    what else stops a node for longer as N grows: the leader's `CollectGarbage` every second,
    applied by every node; a full collection of Python's cyclic GC; restoring the snapshot
    (decode and `state_from_data`), as a joining node or one trimmed behind does."""
    import gc

    rows = []
    for total in args.connections:
        print(f"... fork: {total} connections", file=sys.stderr, flush=True)
        rows.append(_fork_row(total, args.channels))
        gc.collect()
    print(
        "fork: the leader's snapshot in one process (no server): walking and encoding in the "
        "process (before) against the parent's fork (after; worst of 3) and the child's time"
    )
    servers.print_table(list(rows[0]), rows)
    print()


def _fork_row(total: int, channels: int) -> dict[str, Any]:
    import gc

    from channelstream import encoding
    from channelstream.broker.forked import fork_encoder, read_encoded
    from channelstream.core.commands import CollectGarbage, apply_command
    from channelstream.core.snapshot import state_from_data, state_to_data
    from channelstream.core.state import State

    gc.collect()
    rss_before = servers.rss_kib(os.getpid())
    state = State()
    now = naive_now()
    for number in range(total):
        operation = Connect(
            username=f"user-{number}",
            conn_id=uuid.uuid4().hex,
            channels=(f"room-{number % channels}",),
        )
        apply_command(state, Command(operation, now, FEEDER))

    state_kib = servers.rss_kib(os.getpid()) - rss_before

    def encode() -> bytes:
        return encoding.dumps(state_to_data(state)).encode()

    started = time.perf_counter()
    payload = encode()
    in_process = time.perf_counter() - started
    forks, waits = [], []
    for _ in range(3):
        started = time.perf_counter()
        child = fork_encoder(encode)
        forked = time.perf_counter()
        encoded = read_encoded(child)
        forks.append(forked - started)
        waits.append(time.perf_counter() - forked)
        assert encoded is not None and len(encoded) == len(payload)
    collect = []
    for second in (10, 11, 12):  # the first makes them all absent: the steady ones after
        command = CollectGarbage(
            connections_after=86400, users_after=86400, channels_after=86400, presence_grace=5
        )
        started = time.perf_counter()
        apply_command(state, Command(command, now + timedelta(seconds=second), FEEDER))
        collect.append(time.perf_counter() - started)
    started = time.perf_counter()
    gc.collect()
    full_gc = time.perf_counter() - started
    started = time.perf_counter()  # what a joining (or trimmed-behind) node does
    state_from_data(json.loads(payload), State())
    restore = time.perf_counter() - started
    return {
        "connections": total,
        "state_MiB": state_kib / 1024,
        "KiB/conn": state_kib / total,
        "snapshot_MB": len(payload) / 1e6,
        "in_process_s": in_process,
        "fork_ms_max": 1000 * max(forks),
        "child_s": max(waits),
        "collect_garbage_ms": 1000 * max(collect[1:]),
        "full_py_gc_ms": 1000 * full_gc,
        "restore_s": restore,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--parts",
        nargs="+",
        default=["api", "follow", "snapshot", "fork"],
        choices=("api", "follow", "snapshot", "fork"),
    )
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--api-seconds", type=float, default=10.0)
    parser.add_argument("--rates", type=float, nargs="+", default=[200, 1000, 3000])
    parser.add_argument("--follow-seconds", type=float, default=10.0)
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--backlog", type=int, default=20000)
    parser.add_argument("--probe-ms", type=float, default=20.0)
    parser.add_argument(
        "--extra-followers",
        type=int,
        default=0,
        help="more nodes that only follow (0): Redis's CPU per command with more readers",
    )
    parser.add_argument("--connections", type=int, nargs="+", default=[20000, 100000])
    parser.add_argument("--channels", type=int, default=1000)
    parser.add_argument("--snapshot-seconds", type=float, default=35.0)
    args = parser.parse_args()
    print("cluster: two of our nodes on one Redis (issue 16 item 4)")
    print(servers.machine_note().replace(", inside a private network namespace (unshare -n)", ""))
    print(f"redis: {args.redis} (shared); commit {_commit()}")
    print(flush=True)
    signal.signal(signal.SIGTERM, _interrupt)
    with running_cluster(args.redis, args.extra_followers) as cluster:
        probe = Probe(cluster)
        try:
            if "api" in args.parts:
                part_api(cluster, args)
            if "follow" in args.parts:
                part_follow(cluster, args, probe)
            if "snapshot" in args.parts:
                part_snapshot(cluster, args, probe)
            if "fork" in args.parts:
                part_fork(args)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
        finally:
            probe.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(servers.REPO_DIR), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


if __name__ == "__main__":
    main()
