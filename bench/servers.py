"""What every benchmark shares: the private network namespace, starting and stopping our server
and the original Channelstream 0.7.1, /proc readings, signing, and printing tables.

The original binds a Flash policy server on 0.0.0.0:10843 that cannot be turned off. Binding
to all interfaces is not allowed on this machine's network, so every benchmark re-executes
itself under `unshare -n` (a private network namespace that only has a loopback device),
brings `lo` up, and starts both servers and the load generator inside it. Nothing in the
namespace is reachable from outside, and only one original can run in it at a time (the port).
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
OUR_VENV = REPO_DIR / ".venv"
ORIGINAL_VENV = BENCH_DIR / ".venv-original"
ORIGINAL_SHIM = ORIGINAL_VENV / "shim"
ORIGINAL_STAMP = ORIGINAL_VENV / ".provisioned"
ORIGINAL_VERSION = "0.7.1"
LOG_DIR = BENCH_DIR / ".logs"

SECRET = "bench-secret"
HOST = "127.0.0.1"
NETNS_ENV = "CHANNELSTREAM_BENCH_NETNS"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
CPUS = os.cpu_count() or 1
TARGETS = ("ours", "original")

SHIM_SOURCE = "import collections, collections.abc\ncollections.Mapping = collections.abc.Mapping\n"


# --- the private network namespace ------------------------------------------------------------


def enter_private_netns() -> None:
    """Re-execute this script under `unshare -n` (once), then bring the loopback device up.

    Called first thing by every benchmark's main(); returns inside the namespace.
    """
    if os.environ.get(NETNS_ENV) != str(os.getpid()):
        if os.environ.get(NETNS_ENV):
            raise SystemExit("bench: nested re-execution under unshare; giving up")
        unshare = shutil.which("unshare")
        if unshare is None or os.geteuid() != 0:
            raise SystemExit("bench: needs root and `unshare` (util-linux) for `unshare -n`")
        # exec keeps the PID, so the child recognises itself by it; Ctrl-C reaches it as usual.
        os.environ[NETNS_ENV] = str(os.getpid())
        argv = [unshare, "-n", "--", sys.executable, os.path.abspath(sys.argv[0]), *sys.argv[1:]]
        os.execv(unshare, argv)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    # Ctrl-C and SIGTERM both end the run through KeyboardInterrupt, so that the `finally`
    # blocks stop every process (SIGINT may arrive ignored when started in the background).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


# --- /proc readings ---------------------------------------------------------------------------


def cpu_split(pid: int) -> tuple[float, float]:
    """(utime, stime) of a process: user-space and kernel CPU, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    return sum(cpu_split(pid))


def rss_kib(pid: int) -> int:
    """Resident set size of a process, in KiB."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KIB


def host_idle_fraction(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Share of all CPUs' time spent idle between two `host_cpu_ticks()` readings."""
    total = after[0] - before[0]
    return (after[1] - before[1]) / total if total else 0.0


def host_cpu_ticks() -> tuple[int, int]:
    """(total ticks, idle+iowait ticks) over all CPUs, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values), values[3] + values[4]


@dataclass
class CpuWindow:
    """CPU seconds of a set of processes between start() and stop()."""

    pids: dict[str, int]
    started: float = 0.0
    stopped: float = 0.0

    def start(self) -> None:
        self._before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._host_before = host_cpu_ticks()
        self.started = time.time()

    def stop(self) -> None:
        self.stopped = time.time()
        self._host_after = host_cpu_ticks()
        self.used = {name: cpu_seconds(pid) - self._before[name] for name, pid in self.pids.items()}

    @property
    def seconds(self) -> float:
        return max(1e-9, self.stopped - self.started)

    def utilisation(self, name: str) -> float:
        """CPU seconds per wall second of one process (1.0 = one core busy)."""
        return self.used[name] / self.seconds

    @property
    def host_idle(self) -> float:
        return host_idle_fraction(self._host_before, self._host_after)


def loadgen_verdict(
    window: CpuWindow, server: str, loadgen: Sequence[str], limit: float = 0.8
) -> tuple[float, float, list[str]]:
    """(busiest load-generator process' share of one core, the load generator's share of the
    CPU the server left it, warnings).

    The load generator "has" the machine's CPUs minus what the server used in the window; it
    counts as a bottleneck when it used more than `limit` of that, or when one of its
    processes used more than `limit` of a core.
    """
    per_process = max(window.utilisation(name) for name in loadgen)
    total = sum(window.utilisation(name) for name in loadgen)
    available = max(0.05, CPUS - window.utilisation(server))
    share = total / available
    warnings = []
    if per_process > limit:
        warnings.append(f"a load-generator process used {per_process:.0%} of a core")
    if share > limit:
        warnings.append(f"the load generator used {share:.0%} of the CPU the server left it")
    return per_process, share, warnings


# --- signing ----------------------------------------------------------------------------------


class Tokens:
    """Signed `x-channelstream-secret` tokens, one per path, re-signed every 20 s.

    Tokens from `channelstream.signature.sign` sign the request path; the original accepts any
    value (it never checks what was signed, reference §6), ours wants the path.
    """

    def __init__(self, secret: str = SECRET, lifetime: float = 20.0) -> None:
        from channelstream.signature import sign

        self._sign = sign
        self._secret = secret
        self._lifetime = lifetime
        self._cache: dict[str, tuple[float, str]] = {}

    def __call__(self, path: str) -> str:
        now = time.monotonic()
        cached = self._cache.get(path)
        if cached is None or now - cached[0] > self._lifetime:
            cached = (now, self._sign(self._secret, path))
            self._cache[path] = cached
        return cached[1]


# --- servers ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    target: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s; always by PID."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def log_summary(self) -> str:
        """Tracebacks and ERROR/CRITICAL lines in the server's stderr, for the report."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "no log"
        tracebacks = text.count("Traceback (most recent call last)")
        errors = sum(1 for line in text.splitlines() if "ERROR" in line or "CRITICAL" in line)
        if not tracebacks and not errors:
            return "server log clean"
        return f"server log: {tracebacks} tracebacks, {errors} ERROR lines ({self.log_path})"


def ensure_original() -> None:
    """Install channelstream 0.7.1 into bench/.venv-original once (reference §9.2)."""
    if ORIGINAL_STAMP.exists():
        return
    print(f"bench: provisioning channelstream {ORIGINAL_VERSION} into {ORIGINAL_VENV}", flush=True)
    python = shutil.which("python3.11") or sys.executable
    subprocess.run([python, "-m", "venv", str(ORIGINAL_VENV)], check=True)
    subprocess.run(
        [
            str(ORIGINAL_VENV / "bin" / "pip"),
            "install",
            "--quiet",
            f"channelstream=={ORIGINAL_VERSION}",
            "setuptools<82",
        ],
        check=True,
    )
    ORIGINAL_SHIM.mkdir(exist_ok=True)
    (ORIGINAL_SHIM / "sitecustomize.py").write_text(SHIM_SOURCE)
    ORIGINAL_STAMP.touch()


def _original_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHANNELSTREAM_")}
    env["PYTHONPATH"] = str(ORIGINAL_SHIM)
    return env


def _write_original_ini(path: Path, port: int) -> None:
    env = _original_env()
    env.update(
        CHANNELSTREAM_SECRET=SECRET,
        CHANNELSTREAM_PORT=str(port),
        CHANNELSTREAM_ADMIN_SECRET="bench-admin",
        CHANNELSTREAM_LOG_LEVEL="WARNING",
    )
    subprocess.run(
        [str(ORIGINAL_VENV / "bin" / "channelstream_utils"), "make_config", "-o", str(path)],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    parser = configparser.ConfigParser()
    parser.read(path)
    section = parser["channelstream"]
    section["host"] = HOST
    section["port"] = str(port)
    section["secret"] = SECRET
    section["log_level"] = "WARNING"
    with path.open("w") as handle:
        parser.write(handle)


def _write_our_ini(path: Path, port: int, broker: str) -> None:
    path.write_text(
        "[channelstream]\n"
        f"host = {HOST}\nport = {port}\nsecret = {SECRET}\nadmin_secret = bench-admin\n"
        f"log_level = WARNING\nbroker = {broker}\nredis_prefix = bench-{port}\n"
        # generous limits: the benchmarks measure throughput, not the slow-consumer guard
        "max_queued_frames = 1000000\nmax_connections = 0\nmax_message_size = 1048576\n"
    )


@contextlib.contextmanager
def private_redis() -> Iterator[tuple[str, int]]:
    """A redis-server of our own on a free loopback port (inside the private network
    namespace the machine's Redis is out of reach), without persistence; (URL, PID)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("bench: --broker redis needs redis-server (apt-get install redis-server)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="cs-bench-redis-") as workdir:
        process = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                HOST,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                workdir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection((HOST, port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise SystemExit("bench: redis-server did not start") from None
                    time.sleep(0.05)
            yield f"redis://{HOST}:{port}/0", process.pid
        finally:
            process.terminate()
            process.wait(timeout=10)


def spawn_ours(ini: Path, port: int, log_name: str) -> Server:
    """Our server started from `ini` (serving `port`), its output in LOG_DIR/`log_name`, no
    CHANNELSTREAM_* variables of this environment; not waited for."""
    LOG_DIR.mkdir(exist_ok=True)
    log_path = LOG_DIR / log_name
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHANNELSTREAM_")}
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [str(OUR_VENV / "bin" / "channelstream"), "-i", str(ini)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    return Server("ours", port, process, log_path)


def start_server(target: str, workdir: Path, label: str, broker: str = "memory") -> Server:
    port = free_port()
    ini = workdir / f"{target}-{port}.ini"
    LOG_DIR.mkdir(exist_ok=True)
    log_path = LOG_DIR / f"{label}-{target}.log"
    if target == "ours":
        _write_our_ini(ini, port, broker)
        argv = [str(OUR_VENV / "bin" / "channelstream"), "-i", str(ini)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHANNELSTREAM_")}
    elif target == "original":
        ensure_original()
        _write_original_ini(ini, port)
        argv = [str(ORIGINAL_VENV / "bin" / "channelstream"), "-i", str(ini)]
        env = _original_env()
    else:
        raise ValueError(target)
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            argv, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
    server = Server(target, port, process, log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"bench: {target} server exited at start, see {log_path}")
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            time.sleep(0.3)  # let it finish starting (GC greenlets, policy server)
            return server
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise SystemExit(f"bench: {target} server did not start, see {log_path}")


@contextlib.contextmanager
def running_server(target: str, label: str, broker: str = "memory") -> Iterator[Server]:
    """A started server, stopped by PID however the block ends. `broker` applies to ours
    only (the original has no broker)."""
    with tempfile.TemporaryDirectory(prefix="cs-bench-") as workdir:
        server = start_server(target, Path(workdir), label, broker)
        try:
            yield server
        finally:
            server.stop()


# --- command line and output ------------------------------------------------------------------


def add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target",
        choices=("ours", "original", "both"),
        default="both",
        help="which server(s) to measure (default: both, ours first)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="load-generator worker processes holding the websockets (default 2)",
    )


def targets(choice: str) -> list[str]:
    return list(TARGETS) if choice == "both" else [choice]


def format_value(value: object) -> str:
    if isinstance(value, float):
        if value != value:  # nan
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def print_table(columns: Sequence[str], rows: Sequence[dict[str, object]]) -> None:
    """Aligned plain-text table: text columns left-aligned, numbers right-aligned."""
    cells = [[format_value(row.get(column, "")) for column in columns] for row in rows]
    widths = [
        max([len(column), *(len(line[i]) for line in cells)]) for i, column in enumerate(columns)
    ]
    numeric = [
        all(isinstance(row[column], int | float) for row in rows if row.get(column, "") != "")
        for column in columns
    ]

    def render(values: Sequence[str]) -> str:
        parts = [
            value.rjust(width) if is_number else value.ljust(width)
            for value, width, is_number in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    print(render(columns))
    print("  ".join("-" * width for width in widths))
    for line in cells:
        print(render(line))
    sys.stdout.flush()


def ratio(ours: float, original: float) -> float:
    if not original or original != original or ours != ours:
        return float("nan")
    return ours / original


def ratio_row(
    rows: Sequence[dict[str, object]], key: Sequence[str], columns: Sequence[str]
) -> list[dict[str, object]]:
    """For each pair of rows (ours, original) with equal `key` values: a row of ours/original."""
    out = []
    for row in rows:
        if row.get("target") != "ours":
            continue
        for other in rows:
            if other.get("target") == "original" and all(other[k] == row[k] for k in key):
                ratios: dict[str, object] = {k: row[k] for k in key}
                ratios["target"] = "ours/original"
                for column in columns:
                    a, b = row.get(column), other.get(column)
                    if isinstance(a, int | float) and isinstance(b, int | float):
                        ratios[column] = ratio(float(a), float(b))
                out.append(ratios)
    return out


def percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def machine_note() -> str:
    return (
        f"machine: {CPUS} CPUs shared by the server and the load generator (and anything else "
        "running); loopback only, inside a private network namespace (unshare -n)"
    )


def run_rows(runs: Iterable[tuple[str, Callable[[], dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Measure each (label, measure) in turn, announcing it on stderr; Ctrl-C (or SIGTERM)
    stops the series and keeps the rows measured so far."""
    rows: list[dict[str, Any]] = []
    try:
        for label, measure in runs:
            print(f"... {label}", file=sys.stderr, flush=True)
            rows.append(measure())
    except KeyboardInterrupt:
        print("interrupted; partial results", file=sys.stderr)
    return rows


def rows_per_target(
    choice: str, measure: Callable[[str], list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """`measure(target)` for each target of `--target` (several rows each), in turn, as
    `run_rows` does (Ctrl-C keeps the rows measured so far)."""
    rows: list[dict[str, Any]] = []
    for chunk in run_rows(
        (target, lambda target=target: measure(target)) for target in targets(choice)
    ):
        rows.extend(chunk)
    return rows


def begin(*heading: str) -> None:
    """Install the original (first run only: the namespace has no network), enter the
    private network namespace, then print the run's heading lines and the machine note."""
    if not os.environ.get(NETNS_ENV):
        ensure_original()
    enter_private_netns()
    print(heading[0])
    print(machine_note())
    for line in heading[1:]:
        print(line)
    print(flush=True)


def print_row_notes(rows: list[dict[str, Any]], describe: Callable[[dict[str, Any]], str]) -> None:
    """One line per row (`describe(row)`), each followed by that row's warnings."""
    for row in rows:
        print(describe(row))
        for warning in row.get("warnings", []):
            print(f"  WARNING: {warning}")
