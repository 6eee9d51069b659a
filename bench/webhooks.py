"""Webhooks: what sending them costs the fan-out, and how long an event takes to reach the web
app. Our server only (the original Channelstream 0.7.1 has no webhooks).

    .venv/bin/python bench/webhooks.py                      # 500 subscribers, 500 calls
    .venv/bin/python bench/webhooks.py --subscribers 200 --seconds 3 --runs 1 --calls 100
    .venv/bin/python bench/webhooks.py --part b --broker redis     # latency only, on Redis

Runs inside a private network namespace like the other benchmarks (see servers.py). The web
app's webhook endpoint is a real HTTP server in a process of its own (`ReceiverProcess`: the
standard library's threaded http.server, every request's signature verified, answered 204),
so its CPU is never the server's and its socket is a real one.

a) Fan-out with webhooks off, then on (a fresh server and receiver each): `--subscribers`
   websockets (`/connect` + `/ws` through the load generator of loadgen.py) on one channel,
   a publisher posting `--rate` messages a second for `--seconds` seconds, as fanout.py does;
   then the subscribers drop their sockets and the server ends their connections
   (`gc_conns_after = 4`). With webhooks on, each subscriber makes `user_online` and
   `member_added` when it connects and `member_removed`, `user_offline` (reason `gc`) and
   `connection_closed` when it has gone. Two CPU windows of the server, from /proc/PID/stat:
   the publishing alone (fanout.py's window: deliveries per server CPU-second), and the whole
   cycle from the first connect until every connection has ended and, with webhooks on,
   every event has been answered by the receiver. `--runs` (3) of each, alternating off and
   on; the table ends with the medians and on/off of the medians (run-to-run spread on this
   2-core machine is larger than most differences).
b) Event latency, the state change to the receiver: `--calls` pairs of signed `POST /connect`
   (a new user, no channel) and `POST /disconnect` of that connection, one call at a time on
   one kept-alive `http.client` connection (no socket options), as a web app calls. For each
   call: from its answer (and from its start) to the receiver getting the matching event,
   `user_online` by user name for the connect, `connection_closed` by conn_id for the
   disconnect. First on a quiet server, then while a fan-out runs on it (`--subscribers`
   websockets, `--rate` messages a second). Clocks: time.time() in two processes of one host.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import servers
from loadgen import LoadGenerator

CHANNEL = "bench"
GC_CONNS_AFTER = 4  # part a: dropped subscribers' connections end this long after the drop
FANOUT_COLUMNS = (
    "webhooks",
    "run",
    "subs",
    "rate",
    "msgs",
    "deliveries",
    "lost",
    "deliv/cpu_s",
    "p50_ms",
    "p99_ms",
    "srv_cpu%",
    "lg_max%",
    "lg_share%",
    "pub/s",
    "events",
    "requests",
    "cycle_cpu_s",
    "cycle_deliv/cpu_s",
)
FANOUT_RATIO_COLUMNS = ("deliv/cpu_s", "p50_ms", "p99_ms", "cycle_cpu_s", "cycle_deliv/cpu_s")
LATENCY_COLUMNS = (
    "load",
    "call",
    "event",
    "calls",
    "call_p50_ms",
    "call_p99_ms",
    "p50_ms",
    "p99_ms",
    "max_ms",
    "start_p50_ms",
    "start_p99_ms",
    "start_max_ms",
    "missing",
)


# --- the web app's webhook endpoint, in a process of its own -----------------------------------


def _receiver_main(pipe: multiprocessing.connection.Connection, port: int, secret: str) -> None:
    """The receiver process: a threaded HTTP server answering 204 to every verified batch,
    recording when each event arrived; the parent asks for what came over `pipe`."""
    from channelstream.exceptions import WebhookSignatureError
    from channelstream.webhook_signature import SIGNATURE_HEADER, verify_webhook

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    lock = threading.Lock()
    seen: dict[str, Any] = {"requests": 0, "events": 0, "forged": 0, "by_name": {}}
    arrivals: dict[str, dict[str, float]] = {}  # name -> user or conn_id -> first arrival

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the sender's pool wants

        def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            arrived = time.time()
            try:
                events = verify_webhook(secret, body, self.headers.get(SIGNATURE_HEADER))
                status = 204
            except WebhookSignatureError:
                events, status = [], 400
            with lock:
                seen["requests"] += 1
                seen["forged"] += status != 204
                seen["events"] += len(events)
                for event in events:
                    name = event["name"]
                    seen["by_name"][name] = seen["by_name"].get(name, 0) + 1
                    key = event.get("conn_id") if name == "connection_closed" else event.get("user")
                    if key is not None:
                        arrivals.setdefault(name, {}).setdefault(key, arrived)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer((servers.HOST, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    pipe.send("ready")
    while True:
        try:
            command, arguments = pipe.recv()
        except EOFError:
            return
        with lock:
            if command == "stats":
                pipe.send(json.loads(json.dumps(seen)))
            elif command == "arrivals":
                pipe.send({name: dict(arrivals.get(name, {})) for name in arguments["names"]})
            elif command == "exit":
                pipe.send(True)
                return


class ReceiverProcess:
    """The receiver process, started and stopped by PID."""

    def __init__(self, secret: str = servers.SECRET) -> None:
        self.port = servers.free_port()
        context = multiprocessing.get_context("fork")
        self.pipe, child = context.Pipe()
        self.process = context.Process(
            target=_receiver_main, args=(child, self.port, secret), daemon=True
        )
        self.process.start()
        child.close()
        if not self.pipe.poll(10) or self.pipe.recv() != "ready":
            self.stop()
            raise SystemExit("bench: the webhook receiver did not start")

    @property
    def url(self) -> str:
        return f"http://{servers.HOST}:{self.port}/hook"

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def call(self, command: str, **arguments: Any) -> Any:
        self.pipe.send((command, arguments))
        if not self.pipe.poll(30):
            raise TimeoutError("the webhook receiver did not answer")
        return self.pipe.recv()

    def stats(self) -> dict[str, Any]:
        return self.call("stats")

    def count(self, name: str) -> int:
        return int(self.stats()["by_name"].get(name, 0))

    def stop(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(OSError, TimeoutError, EOFError):
                self.call("exit")
            self.process.join(5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.pipe.close()


@contextlib.contextmanager
def receiver_process() -> Iterator[ReceiverProcess]:
    receiver = ReceiverProcess()
    try:
        yield receiver
    finally:
        receiver.stop()


# --- our server, with webhook settings --------------------------------------------------------


@contextlib.contextmanager
def our_server(label: str, broker: str, settings: dict[str, Any]) -> Iterator[servers.Server]:
    """Ours as servers.running_server starts it (same ini, same readiness check), with
    `settings` added to its [channelstream] section; stopped by PID however the block ends."""
    with tempfile.TemporaryDirectory(prefix="cs-bench-") as workdir:
        port = servers.free_port()
        ini = Path(workdir) / f"ours-{port}.ini"
        servers._write_our_ini(ini, port, broker)
        with ini.open("a") as handle:
            for key, value in settings.items():
                handle.write(f"{key} = {value}\n")
        servers.LOG_DIR.mkdir(exist_ok=True)
        log_path = servers.LOG_DIR / f"{label}-ours.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHANNELSTREAM_")}
        with log_path.open("wb") as log_file:
            process = servers.subprocess.Popen(
                [str(servers.OUR_VENV / "bin" / "channelstream"), "-i", str(ini)],
                stdout=log_file,
                stderr=servers.subprocess.STDOUT,
                stdin=servers.subprocess.DEVNULL,
                env=env,
            )
        server = servers.Server("ours", port, process, log_path)
        try:
            wait_ready(server)
            yield server
        finally:
            server.stop()


def wait_ready(server: servers.Server, timeout: float = 30.0) -> None:
    """Until GET /ready answers 200 (the broker reached, the node leads: it sends webhooks)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            raise SystemExit(f"bench: our server exited at start, see {server.log_path}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            connection = http.client.HTTPConnection(servers.HOST, server.port, timeout=2)
            try:
                connection.request("GET", "/ready")
                if connection.getresponse().status == 200:
                    return
            finally:
                connection.close()
        time.sleep(0.05)
    raise SystemExit(f"bench: our server did not get ready, see {server.log_path}")


class Api:
    """Signed calls, one at a time, on one kept-alive `http.client` connection (a web app's
    pooled HTTP client; no socket options)."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection(servers.HOST, port, timeout=60)
        self.tokens = servers.Tokens()

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        headers = {"x-channelstream-secret": self.tokens(path)}
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        self.connection.request(method, path, body=data, headers=headers)
        response = self.connection.getresponse()
        return response.status, response.read()

    def ok(self, path: str, body: Any) -> Any:
        status, raw = self.request("POST", path, body)
        if status != 200:
            raise SystemExit(f"bench: POST {path} answered {status}: {raw[:200]!r}")
        return json.loads(raw)

    def metrics(self) -> dict[str, float]:
        """GET /metrics (signed), the samples without labels."""
        from prometheus_client.parser import text_string_to_metric_families

        status, raw = self.request("GET", "/metrics")
        if status != 200:
            raise SystemExit(f"bench: GET /metrics answered {status}")
        return {
            sample.name: sample.value
            for family in text_string_to_metric_families(raw.decode())
            for sample in family.samples
            if not sample.labels
        }

    def close(self) -> None:
        self.connection.close()


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` (an endpoint, the receiver's counts) every 0.1 s; SystemExit after
    `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


def sender_note(samples: dict[str, float]) -> str:
    """What the server's /metrics say of its webhook requests (none when webhooks are off)."""
    count = samples.get("channelstream_webhook_request_seconds_count", 0)
    if not count:
        return "sender: no webhook request"
    mean_ms = 1000 * samples["channelstream_webhook_request_seconds_sum"] / count
    return (
        f"sender: {count:.0f} requests, {mean_ms:.2f} ms each on average (POST to answer), "
        f"{samples.get('channelstream_webhook_requests_failed_total', 0):.0f} failed"
    )


def server_settings(receiver: ReceiverProcess | None, **extra: Any) -> dict[str, Any]:
    settings: dict[str, Any] = dict(extra)
    if receiver is not None:
        settings["webhook_url"] = receiver.url  # webhook_secret: `secret`, as the receiver's
    return settings


# --- a) the fan-out, webhooks off and on ------------------------------------------------------


def run_fanout(webhooks: bool, run: int, args: argparse.Namespace) -> dict[str, Any]:
    subscribers, rate = args.subscribers, args.rate
    count = max(1, int(rate * args.seconds))
    row: dict[str, Any] = {
        "webhooks": "on" if webhooks else "off",
        "run": run,
        "subs": subscribers,
        "rate": rate,
        "msgs": count,
    }
    warnings: list[str] = []
    with contextlib.ExitStack() as stack:
        broker, redis_pid = "memory", None
        if args.broker == "redis":
            broker, redis_pid = stack.enter_context(servers.private_redis())
        receiver = stack.enter_context(receiver_process())  # idle when webhooks are off
        settings = server_settings(receiver if webhooks else None, gc_conns_after=GC_CONNS_AFTER)
        server = stack.enter_context(
            our_server(f"webhooks-fanout-{row['webhooks']}", broker, settings)
        )
        api = Api(server.port)
        stack.callback(api.close)
        load = LoadGenerator(server.port, args.workers, publisher=True)
        stack.callback(load.stop)
        pids = {"server": server.pid, "parent": os.getpid(), "receiver": receiver.pid, **load.pids}
        if redis_pid is not None:
            pids["redis"] = redis_pid
        cycle = servers.CpuWindow(pids)
        cycle.start()
        sample_every = max(1, subscribers // args.latency_sample)
        opened = load.open(subscribers, args.concurrency, [CHANNEL], sample_every)
        if opened["failed"] or opened["opened"] < subscribers:
            row["warnings"] = [f"opened {opened['opened']}/{subscribers}: {opened['errors']}"]
            return row
        if webhooks:
            wait_until(
                lambda: receiver.count("member_added") >= subscribers,
                120,
                "the subscribers' member_added events",
            )
        time.sleep(args.settle)
        assert load.publisher is not None
        load.broadcast("reset")
        load.publisher.call("publish", count=5, rate=rate, channel=CHANNEL)
        warm = load.broadcast("wait", expected_per_socket=5, timeout=120, stall=args.stall)
        load.broadcast("reset")
        window = servers.CpuWindow(pids)
        window.start()
        published, reports = load.publish_and_wait(count, rate, CHANNEL, args.max_drain, args.stall)
        window.stop()
        # The subscribers go (sockets dropped); the server ends their connections.
        load.broadcast("close_all")
        wait_until(
            lambda: api.metrics()["channelstream_connections"] == 0,
            GC_CONNS_AFTER + 60,
            "the dropped subscribers' connections to end",
        )
        if webhooks:
            wait_until(
                lambda: (
                    receiver.count("connection_closed") >= subscribers
                    and api.metrics()["channelstream_webhook_queue_length"] == 0
                ),
                120,
                "every connection_closed event to be answered",
            )
        cycle.stop()
        received_events = receiver.stats()
        sender = sender_note(api.metrics())
        if not server.alive():
            warnings.append(f"the server died, see {server.log_path}")
        log_summary = server.log_summary()
    received = sum(r["messages"] for r in reports)
    warm_received = sum(r["messages"] for r in warm)
    expected = subscribers * count
    latencies = [value for r in reports for value in r["latencies"]]
    server_cpu = window.used["server"]
    loadgen = [name for name in window.pids if name not in ("server", "redis", "receiver")]
    per_process, share, lg_warnings = servers.loadgen_verdict(window, "server", loadgen)
    row.update(
        {
            "deliveries": received,
            "lost": expected - received,
            "deliv/cpu_s": received / max(1e-9, server_cpu),
            "p50_ms": 1000 * servers.percentile(latencies, 0.50),
            "p99_ms": 1000 * servers.percentile(latencies, 0.99),
            "srv_cpu%": 100 * window.utilisation("server"),
            "lg_max%": 100 * per_process,
            "lg_share%": 100 * share,
            "pub/s": published["rate"],
            "events": received_events["events"],
            "requests": received_events["requests"],
            "cycle_cpu_s": cycle.used["server"],
            "cycle_deliv/cpu_s": (received + warm_received) / max(1e-9, cycle.used["server"]),
            "note": (
                f"window {window.seconds:.1f} s, host idle {100 * window.host_idle:.0f}%; "
                f"cycle {cycle.seconds:.1f} s, {received + warm_received:,} deliveries, "
                f"receiver CPU {cycle.used['receiver']:.2f} s; events by name "
                f"{received_events['by_name'] or '{}'}; {sender}; {log_summary}"
            ),
        }
    )
    if redis_pid is not None:
        row["note"] += f"; redis-server CPU {cycle.used['redis']:.2f} s (not counted)"
    warnings += lg_warnings
    if expected != received:
        warnings.append(f"{expected - received:,} of {expected:,} deliveries missing")
    if published["errors"]:
        warnings.append(f"{published['errors']} publish requests failed")
    if published["rate"] < 0.95 * rate:
        warnings.append(f"publisher reached {published['rate']:.0f}/s of {rate:.0f}/s")
    if received_events["forged"]:
        warnings.append(f"{received_events['forged']} webhook requests failed verification")
    wanted_events = 5 * subscribers + 2  # + channel_occupied, channel_vacated
    if webhooks and received_events["events"] != wanted_events:
        warnings.append(f"{received_events['events']:,} events received, {wanted_events:,} made")
    row["warnings"] = warnings
    return row


def median_rows(rows: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """The median of each column over the runs, off and on, and on/off of the medians."""
    medians: dict[str, dict[str, Any]] = {}
    for mode in ("off", "on"):
        measured = [r for r in rows if r.get("webhooks") == mode and "deliveries" in r]
        if not measured:
            return []
        median: dict[str, Any] = {"webhooks": mode, "run": "median", "subs": args.subscribers}
        for column in FANOUT_COLUMNS[3:]:
            values = [r[column] for r in measured if isinstance(r.get(column), int | float)]
            if values:
                median[column] = statistics.median(values)
        medians[mode] = median
    ratio: dict[str, Any] = {"webhooks": "on/off", "run": "median", "subs": args.subscribers}
    for column in FANOUT_RATIO_COLUMNS:
        ratio[column] = servers.ratio(float(medians["on"][column]), float(medians["off"][column]))
    return [medians["off"], medians["on"], ratio]


# --- b) event latency ------------------------------------------------------------------------


def timed_pairs(api: Api, calls: int, prefix: str) -> dict[str, list[tuple[str, float, float]]]:
    """`calls` pairs of /connect (a new user) then /disconnect (its connection), one call at
    a time: {"connect": [(user, started, answered)], "disconnect": [(conn_id, ...)]}."""
    done: dict[str, list[tuple[str, float, float]]] = {"connect": [], "disconnect": []}
    for number in range(calls):
        user = f"{prefix}-{number}"
        started = time.time()
        conn_id = api.ok("/connect", {"username": user, "channels": []})["conn_id"]
        answered = time.time()
        done["connect"].append((user, started, answered))
        started = time.time()
        api.ok("/disconnect", {"conn_id": conn_id})
        answered = time.time()
        done["disconnect"].append((conn_id, started, answered))
    return done


def latency_rows(
    load_name: str,
    done: dict[str, list[tuple[str, float, float]]],
    arrivals: dict[str, dict[str, float]],
) -> list[dict[str, Any]]:
    rows = []
    for call, event in (("connect", "user_online"), ("disconnect", "connection_closed")):
        from_answer, from_start, call_ms, missing = [], [], [], 0
        for key, started, answered in done[call]:
            call_ms.append(1000 * (answered - started))
            arrived = arrivals[event].get(key)
            if arrived is None:
                missing += 1
                continue
            from_answer.append(1000 * (arrived - answered))
            from_start.append(1000 * (arrived - started))
        rows.append(
            {
                "load": load_name,
                "call": call,
                "event": event,
                "calls": len(done[call]),
                "call_p50_ms": servers.percentile(call_ms, 0.50),
                "call_p99_ms": servers.percentile(call_ms, 0.99),
                "p50_ms": servers.percentile(from_answer, 0.50),
                "p99_ms": servers.percentile(from_answer, 0.99),
                "max_ms": max(from_answer, default=float("nan")),
                "start_p50_ms": servers.percentile(from_start, 0.50),
                "start_p99_ms": servers.percentile(from_start, 0.99),
                "start_max_ms": max(from_start, default=float("nan")),
                "missing": missing,
            }
        )
    return rows


def run_latency(under_fanout: bool, args: argparse.Namespace) -> list[dict[str, Any]]:
    load_name = f"fan-out {args.subscribers}x{args.rate:g}/s" if under_fanout else "quiet"
    warnings: list[str] = []
    with contextlib.ExitStack() as stack:
        broker = "memory"
        if args.broker == "redis":
            broker, _ = stack.enter_context(servers.private_redis())
        receiver = stack.enter_context(receiver_process())
        label = "webhooks-latency-" + ("fanout" if under_fanout else "quiet")
        server = stack.enter_context(our_server(label, broker, server_settings(receiver)))
        api = Api(server.port)
        stack.callback(api.close)
        load = None
        if under_fanout:
            load = LoadGenerator(server.port, args.workers, publisher=True)
            stack.callback(load.stop)
            opened = load.open(args.subscribers, args.concurrency, [CHANNEL])
            if opened["failed"] or opened["opened"] < args.subscribers:
                raise SystemExit(f"bench: opened {opened['opened']}/{args.subscribers}")
            wait_until(
                lambda: receiver.count("member_added") >= args.subscribers,
                120,
                "the subscribers' member_added events",
            )
        timed_pairs(api, 5, "warm")  # warm-up: the sender's connection to the receiver
        wait_until(lambda: receiver.count("connection_closed") >= 5, 30, "the warm-up's events")
        count = max(1, int(args.rate * args.latency_seconds))
        if load is not None:
            assert load.publisher is not None
            load.broadcast("reset")
            load.publisher.send("publish", count=count, rate=args.rate, channel=CHANNEL)
            for worker in load.workers:
                worker.send(
                    "wait",
                    expected_per_socket=count,
                    timeout=count / args.rate + args.max_drain,
                    stall=args.stall,
                )
            time.sleep(0.5)  # the fan-out under way before the first call
        calls_started = time.time()
        done = timed_pairs(api, args.calls, "lat")
        calls_ended = time.time()
        wanted = len(done["disconnect"]) + 5
        wait_until(
            lambda: receiver.count("connection_closed") >= wanted,
            120,
            "the connection_closed events of every call",
        )
        arrivals = receiver.call("arrivals", names=["user_online", "connection_closed"])
        if load is not None:
            assert load.publisher is not None
            published = load.publisher.receive(timeout=count / args.rate + args.max_drain + 600)
            reports = [
                w.receive(timeout=count / args.rate + args.max_drain + 60) for w in load.workers
            ]
            received = sum(r["messages"] for r in reports)
            if published["finished"] < calls_ended:
                warnings.append(
                    f"the calls ({calls_ended - calls_started:.1f} s) outlasted the fan-out "
                    f"({published['finished'] - published['started']:.1f} s): "
                    "raise --latency-seconds"
                )
            if received != count * args.subscribers:
                warnings.append(
                    f"fan-out: {count * args.subscribers - received:,} deliveries missing"
                )
            fanout_note = f"; fan-out {received:,} deliveries, publisher {published['rate']:.0f}/s"
        else:
            fanout_note = ""
        stats = receiver.stats()
        sender = sender_note(api.metrics())
        log_summary = server.log_summary()
    rows = latency_rows(load_name, done, arrivals)
    rows[0]["note"] = (
        f"{load_name}: {args.calls} connect + disconnect pairs in "
        f"{calls_ended - calls_started:.2f} s; receiver got {stats['events']:,} events in "
        f"{stats['requests']:,} requests ({stats['events'] / max(1, stats['requests']):.1f} "
        f"per request){fanout_note}; {sender}; {log_summary}"
    )
    if stats["forged"]:
        warnings.append(f"{stats['forged']} webhook requests failed verification")
    rows[0]["warnings"] = warnings
    return rows


# --- main -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--target", choices=("ours",), default="ours", help="ours only: 0.7.1 has no webhooks"
    )
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes (2)")
    parser.add_argument("--subscribers", type=int, default=500, help="fan-out subscribers (500)")
    parser.add_argument("--rate", type=float, default=100.0, help="publishes per second (100)")
    parser.add_argument("--seconds", type=float, default=10.0, help="a) publishing time (10)")
    parser.add_argument("--runs", type=int, default=3, help="a) runs of off and on (3)")
    parser.add_argument("--calls", type=int, default=500, help="b) connect+disconnect pairs")
    parser.add_argument(
        "--latency-seconds", type=float, default=15.0, help="b) fan-out load's length (15)"
    )
    parser.add_argument(
        "--part", choices=("a", "b", "both"), default="both", help="a) fan-out, b) latency"
    )
    parser.add_argument(
        "--broker",
        choices=("memory", "redis"),
        default="memory",
        help="our server's broker: redis starts a private redis-server",
    )
    parser.add_argument("--concurrency", type=int, default=32, help="connects in flight (32)")
    parser.add_argument("--settle", type=float, default=2.0, help="pause after connecting (2)")
    parser.add_argument("--stall", type=float, default=20.0, help="give up after s silence")
    parser.add_argument("--max-drain", type=float, default=300.0, help="wait after publishing")
    parser.add_argument(
        "--latency-sample", type=int, default=200, help="subscribers that time messages (200)"
    )
    args = parser.parse_args()
    servers.enter_private_netns()  # ours only: the original is never installed or started
    print("webhooks: the cost of sending them, and an event's way to the web app (ours only)")
    print(servers.machine_note())
    print(
        f"broker: {args.broker}; receiver: a separate process (http.server, signatures "
        "verified, answers 204)"
    )
    print(flush=True)

    fanout_rows: list[dict[str, Any]] = []
    latency: list[dict[str, Any]] = []
    if args.part in ("a", "both"):
        fanout_rows = servers.run_rows(
            (
                f"a) fan-out, run {run}, webhooks {'on' if on else 'off'}",
                lambda on=on, run=run: run_fanout(on, run, args),
            )
            for run in range(1, args.runs + 1)
            for on in (False, True)
        )
    if args.part in ("b", "both"):
        for chunk in servers.run_rows(
            (
                f"b) latency, {'under fan-out' if fan else 'quiet'}",
                lambda fan=fan: run_latency(fan, args),
            )
            for fan in (False, True)
        ):
            latency.extend(chunk)

    if fanout_rows:
        print(
            f"a) fan-out, {args.subscribers:,} subscribers x {args.rate:g} msg/s for "
            f"{args.seconds:g} s, webhooks off then on, {args.runs} runs each (alternating)"
        )
        servers.print_table(FANOUT_COLUMNS, fanout_rows + median_rows(fanout_rows, args))
        print()
        servers.print_row_notes(
            fanout_rows,
            lambda row: (
                f"webhooks {row['webhooks']}, run {row['run']}: {row.get('note', 'no measurement')}"
            ),
        )
        print()
        print(
            "deliv/cpu_s: deliveries per server CPU second over the publishing window (as "
            "fanout.py); p50/p99: publish-to-receive latency of sampled subscribers; events, "
            "requests: what the receiver got over the whole cycle; cycle_cpu_s: server CPU from "
            "the first connect until every connection ended and every event was answered; "
            "cycle_deliv/cpu_s: all deliveries (warm-up included) per cycle CPU second."
        )
        print()
    if latency:
        print(
            f"b) event latency, state change to the receiver: {args.calls} x (signed /connect, "
            "then /disconnect), one at a time on a kept-alive http.client connection"
        )
        servers.print_table(LATENCY_COLUMNS, latency)
        print()
        servers.print_row_notes([r for r in latency if "note" in r], lambda row: row["note"])
        print()
        print(
            "p50/p99/max_ms: from the call's answer to the receiver reading the matching event "
            "(user_online by user, connection_closed by conn_id); start_*: from the call's "
            "start; call_*: the call itself; missing: events not received."
        )


if __name__ == "__main__":
    main()
