"""Worker mode: `workers` processes serving one host:port, each a node of the Redis cluster,
started and stopped together by one supervisor (`channelstream --workers N`, or `workers = N`).

Why a supervisor of our own and not gunicorn's gevent worker: docs/deployment.md, "Worker
mode". In short, gunicorn's worker ends once its request pool is empty, and websockets taken
over from the request (`transport/websocket.py`) are outside that pool, so they would be cut
without their 1001; its SIGINT stops at once; and it offers nothing for one /metrics of all
workers.

How it works:

- The supervisor binds one listening socket per worker, all on host:port with SO_REUSEPORT
  (the kernel spreads new connections over them by a hash of the addresses), and one Unix
  socket per worker in a private directory, where that worker answers its siblings with its
  figures (`api.metrics`: one scrape shows every worker). It starts each worker as
  `python -m channelstream.workers` with both sockets inherited, and with the read end of a
  pipe only the supervisor can write to: when the supervisor dies, however, the pipe ends and
  each worker stops as on SIGTERM.
- The supervisor keeps the sockets while a worker restarts: connections the kernel hands that
  worker's socket meanwhile wait in its backlog instead of being refused.
- SIGTERM or SIGINT is forwarded to every worker, which drains as a single process does
  (`server.serve`: /ready 503 for drain_grace, websockets closed with 1001, exit 0); a second
  one is forwarded too (it ends the grace). The supervisor exits 0 once every worker exited 0.
- A worker that exits on its own is restarted, after a delay that doubles (1 s up to 30 s)
  while workers keep dying within 30 s of starting. Exit status 2 (a refusal at start) is
  not retried: every worker is stopped and the supervisor exits 2.
- A secret left unset is made once, by the supervisor (`Settings`), and handed to every
  worker as `CHANNELSTREAM_<KEY>`: a signature, an admin cookie or a token made for one worker
  holds on all.

Nothing at the top of this module imports sockets: a worker runs it as `__main__` and patches
gevent first.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from channelstream.exceptions import EXIT_BAD_CONFIG, ChannelstreamException

if TYPE_CHECKING:  # sockets are imported once gevent patched them
    import socket

    from gevent.event import Event
    from gevent.subprocess import Popen

    from channelstream.api.metrics import Metrics, WorkerFigures
    from channelstream.settings import Settings

log = logging.getLogger("channelstream.workers")

RESTART_DELAY = 1.0  # seconds before a worker that died is started again
RESTART_DELAY_MAX = 30.0
STABLE_AFTER = 30.0  # a worker that ran this long died by accident: its delay starts over
STOP_MARGIN = 5.0  # seconds past shutdown_timeout before a worker that does not stop is killed
LISTEN_BACKLOG = 128  # gevent's StreamServer default, as one process listens
SIBLING_TIMEOUT = 2.0  # seconds a scrape waits for a sibling's figures
EXIT_WORKER_FAILED = 1
# Made at random per start when unset: the same value must reach every worker.
SHARED_SECRETS = ("secret", "admin_secret", "cookie_secret")


class WorkersError(ChannelstreamException):
    """Worker mode cannot start; the message says what to change."""


def shared_environ(settings: Settings, environ: Mapping[str, str]) -> dict[str, str]:
    """The workers' environment: `environ`, and every secret the supervisor settled on as
    `CHANNELSTREAM_<KEY>` (unless a `_FILE` variable names it: the workers read that file)."""
    from channelstream.settings import SETTINGS_BY_NAME

    shared = dict(environ)
    for name in SHARED_SECRETS:
        setting = SETTINGS_BY_NAME[name]
        if setting.file_env_var not in environ:
            shared[setting.env_var] = str(getattr(settings, name))
    return shared


def exit_description(returncode: int) -> str:
    """ "exit status 3" or "killed by SIGKILL" (subprocess's negative return codes)."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


def figures_path(directory: Path, worker: int) -> Path:
    """Where worker `worker` answers its siblings with its figures."""
    return directory / f"worker-{worker}.sock"


def bind_listeners(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` TCP sockets listening on host:port together (SO_REUSEPORT); port 0 picks one
    free port for all. Raises ListenError as one process's bind does, also when another
    process already listens there with SO_REUSEPORT (another worker mode's supervisor), which
    would otherwise share the port with us."""
    import socket

    from channelstream.server import ListenError

    listeners: list[socket.socket] = []
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        if port:
            with socket.socket(family, kind, proto) as probe:  # without SO_REUSEPORT
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(address)
        for _ in range(count):
            sock = socket.socket(family, kind, proto)
            listeners.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            sock.listen(LISTEN_BACKLOG)
            address = sock.getsockname()  # the port chosen, when 0 was asked
    except OSError as error:
        for sock in listeners:
            sock.close()
        raise ListenError.from_os_error(host, port, error) from None
    return listeners


@dataclass
class Worker:
    """One worker's place: its sockets (kept across restarts) and its current process."""

    number: int
    listener: socket.socket
    figures: socket.socket
    process: Popen[bytes] | None = None
    started: float = 0.0
    delay: float = RESTART_DELAY
    status: int | None = None  # the last process's exit status, once the stop is under way


@dataclass
class Supervisor:
    """Starts the workers, restarts one that dies, and stops them all on SIGTERM/SIGINT."""

    settings: Settings
    ini: str | None
    workers: list[Worker]
    figures_dir: Path
    environ: dict[str, str]
    stop_requested: Event  # set by the first stop signal (or a worker's refusal)
    refused: bool = False  # a worker refused to start (exit status 2)
    _parent_read: int = -1
    _parent_write: int = -1

    def command(self, worker: Worker) -> list[str]:
        argv = [sys.executable, "-m", "channelstream.workers"]
        argv += ["--worker", str(worker.number), "--of", str(len(self.workers))]
        argv += ["--listen-fd", str(worker.listener.fileno())]
        argv += ["--figures-fd", str(worker.figures.fileno())]
        argv += ["--figures-dir", str(self.figures_dir)]
        argv += ["--supervisor-fd", str(self._parent_read)]
        if self.ini:
            argv += ["--ini", self.ini]
        return argv

    def run(self) -> int:
        """Serve until stopped; the supervisor's exit status."""
        import gevent

        self._parent_read, self._parent_write = os.pipe()
        watchers = [
            gevent.signal_handler(signum, self.on_signal, signum)
            for signum in (signal.SIGTERM, signal.SIGINT)
        ]
        try:
            gevent.joinall([gevent.spawn(self.keep_running, worker) for worker in self.workers])
        finally:
            for watcher in watchers:
                watcher.cancel()
            self.close()
        if self.refused:
            return EXIT_BAD_CONFIG
        failed = [w for w in self.workers if w.status not in (0, None)]
        for worker in failed:
            log.warning(
                "worker %d stopped with %s", worker.number, exit_description(worker.status or 0)
            )
        log.info("Supervisor stopped")
        return EXIT_WORKER_FAILED if failed else 0

    def start(self, worker: Worker) -> Popen[bytes]:
        from gevent import subprocess

        process = subprocess.Popen(
            self.command(worker),
            stdin=subprocess.DEVNULL,
            env=self.environ,
            pass_fds=(worker.listener.fileno(), worker.figures.fileno(), self._parent_read),
            # out of the terminal's process group: Ctrl-C reaches the supervisor alone, which
            # forwards it once (twice would cut the workers' drain grace short)
            start_new_session=True,
        )
        worker.process = process
        worker.started = time.monotonic()
        log.info("worker %d started (pid %d)", worker.number, process.pid)
        if self.stop_requested.is_set():  # the stop came while it was being started
            process.send_signal(signal.SIGTERM)
        return process

    def keep_running(self, worker: Worker) -> None:
        """Run `worker` until the stop, restarting it when it ends before."""
        while not self.stop_requested.is_set():
            process = self.start(worker)
            returncode = process.wait()
            if self.stop_requested.is_set():
                worker.status = returncode
                log.info(
                    "worker %d (pid %d) stopped: %s",
                    worker.number,
                    process.pid,
                    exit_description(returncode),
                )
                return
            if returncode == EXIT_BAD_CONFIG:
                self.refused = True
                self.stop(
                    signal.SIGTERM,
                    f"worker {worker.number} (pid {process.pid}) refused to start (exit status 2)",
                )
                return
            if time.monotonic() - worker.started >= STABLE_AFTER:
                worker.delay = RESTART_DELAY
            delay, worker.delay = worker.delay, min(worker.delay * 2, RESTART_DELAY_MAX)
            log.warning(
                "worker %d (pid %d) exited unexpectedly: %s; restarting it in %.0f s",
                worker.number,
                process.pid,
                exit_description(returncode),
                delay,
            )
            self.stop_requested.wait(delay)

    def running(self) -> list[Popen[bytes]]:
        return [
            w.process for w in self.workers if w.process is not None and w.process.poll() is None
        ]

    def on_signal(self, signum: int) -> None:
        """SIGTERM or SIGINT: the first stops every worker, a second is forwarded too."""
        name = signal.Signals(signum).name
        if self.stop_requested.is_set():
            pids = ", ".join(str(process.pid) for process in self.running())
            log.info("%s received again: forwarding it to the workers (pids %s)", name, pids)
            for process in self.running():
                process.send_signal(signum)
            return
        self.stop(signum, f"{name} received")

    def stop(self, signum: int, reason: str) -> None:
        """Send `signum` to every worker (each drains) and end the restarts."""
        import gevent

        running = self.running()
        pids = ", ".join(str(process.pid) for process in running)
        log.info("%s: stopping %d workers (pids %s)", reason, len(running), pids)
        self.stop_requested.set()
        # The workers hold their own copies: each stops accepting when its drain says so.
        for worker in self.workers:
            worker.listener.close()
        gevent.spawn(self.kill_stragglers)
        for process in running:
            process.send_signal(signum)

    def kill_stragglers(self) -> None:
        """SIGKILL for a worker still running past shutdown_timeout (and a margin)."""
        import gevent

        timeout = self.settings.shutdown_timeout + STOP_MARGIN
        gevent.sleep(timeout)
        for worker in self.workers:
            process = worker.process
            if process is not None and process.poll() is None:
                log.warning(
                    "worker %d (pid %d) did not stop within %.0f s: killing it",
                    worker.number,
                    process.pid,
                    timeout,
                )
                process.kill()

    def close(self) -> None:
        for worker in self.workers:
            worker.listener.close()
            worker.figures.close()
            figures_path(self.figures_dir, worker.number).unlink(missing_ok=True)
        for fd in (self._parent_read, self._parent_write):
            if fd >= 0:
                os.close(fd)
        self._parent_read = self._parent_write = -1
        self.figures_dir.rmdir()


def supervise(
    settings: Settings,
    ini: str | None,
    workers: int,
    log_startup: Callable[[Settings, str | None], None],
) -> int:
    """Worker mode: serve with `workers` processes until stopped; the exit status. Raises
    WorkersError (with the memory broker) or ListenError before anything starts."""
    import socket
    import tempfile

    from gevent.event import Event

    if settings.broker == "memory":
        raise WorkersError(
            f"{workers} workers need the Redis broker (broker = redis://HOST:PORT/DB, or "
            "CHANNELSTREAM_BROKER): with broker = memory each worker would be a server of "
            "its own"
        )
    listeners = bind_listeners(settings.host, settings.port, workers)
    log_startup(settings, ini)
    figures_dir = Path(tempfile.mkdtemp(prefix="channelstream-workers-"))  # mode 0700
    places = []
    for number, listener in enumerate(listeners, start=1):
        figures = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        figures.bind(str(figures_path(figures_dir, number)))
        figures.listen(LISTEN_BACKLOG)
        places.append(Worker(number, listener, figures))
    host, port = listeners[0].getsockname()[:2]
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    log.info(
        "Serving on http://%s with %d workers (supervisor pid %d)", address, workers, os.getpid()
    )
    environ = shared_environ(settings, os.environ)
    supervisor = Supervisor(settings, ini, places, figures_dir, environ, Event())
    return supervisor.run()


# --- a worker ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Siblings:
    """The other workers' figures, fetched from their Unix sockets for one scrape."""

    directory: Path
    worker: int
    workers: int

    def fetch(self) -> list[WorkerFigures]:
        import gevent

        jobs = [
            gevent.spawn(self.fetch_one, number)
            for number in range(1, self.workers + 1)
            if number != self.worker
        ]
        gevent.joinall(jobs, timeout=SIBLING_TIMEOUT)
        gevent.killall([job for job in jobs if not job.ready()], block=False)
        return [job.value for job in jobs if job.successful() and job.value is not None]

    def fetch_one(self, number: int) -> WorkerFigures | None:
        import socket

        from channelstream.api.metrics import WorkerFigures

        chunks = []
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(SIBLING_TIMEOUT)
                sock.connect(str(figures_path(self.directory, number)))
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
            return WorkerFigures.decode(b"".join(chunks))
        except (OSError, ValueError) as error:
            log.info("worker %d's figures are not in this scrape: %s", number, error)
            return None


class WorkerLogPrefix(logging.Filter):
    """Starts every log line of a worker with which worker and process wrote it."""

    def __init__(self, worker: int) -> None:
        super().__init__()
        self.prefix = f"worker {worker} (pid {os.getpid()}): "

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "worker_prefixed", False):
            record.msg = f"{self.prefix}{record.msg}"
            record.worker_prefixed = True
        return True


def _worker_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m channelstream.workers",
        description="One worker of `channelstream --workers N` (started by its supervisor).",
    )
    parser.add_argument("--worker", type=int, required=True, help="this worker's number")
    parser.add_argument("--of", type=int, required=True, help="how many workers there are")
    parser.add_argument("--listen-fd", type=int, required=True)
    parser.add_argument("--figures-fd", type=int, required=True)
    parser.add_argument("--figures-dir", required=True)
    parser.add_argument("--supervisor-fd", type=int, required=True)
    parser.add_argument("--ini", default=None)
    return parser


def _stop_with_supervisor(fd: int, gone: Event) -> None:
    """Wait for the supervisor's pipe to end (nothing is ever written to it), then stop as
    on SIGTERM: a worker never outlives its supervisor."""
    from gevent.socket import wait_read

    while True:
        wait_read(fd)
        if not os.read(fd, 1):
            break
    log.warning("the supervisor is gone: stopping")
    gone.set()
    os.kill(os.getpid(), signal.SIGTERM)


def _clean_up_after_supervisor(directory: Path, worker: int) -> None:
    """What the supervisor, gone, cannot remove: this worker's socket file, and the directory
    once the last worker's is gone."""
    figures_path(directory, worker).unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # a sibling's socket is still there
        directory.rmdir()


def _send_figures(metrics: Metrics, sock: socket.socket, address: Any) -> None:
    try:
        sock.sendall(metrics.worker_figures().encode())
    except OSError:
        pass  # the asking sibling gave up
    finally:
        sock.close()


def worker_main(argv: Sequence[str] | None = None) -> None:
    """One worker: the app served on the supervisor's listening socket until SIGTERM/SIGINT
    (or the supervisor's end), its figures served to its siblings meanwhile."""
    args = _worker_parser().parse_args(argv)

    from gevent import monkey

    monkey.patch_all()

    import socket
    from functools import partial

    import gevent
    from gevent.event import Event
    from gevent.server import StreamServer

    from channelstream.cli import load_settings

    settings = load_settings(args.ini)
    for handler in logging.getLogger().handlers:
        handler.addFilter(WorkerLogPrefix(args.worker))
    listener = socket.socket(fileno=args.listen_fd)
    figures_socket = socket.socket(fileno=args.figures_fd)
    supervisor_gone = Event()
    gevent.spawn(_stop_with_supervisor, args.supervisor_fd, supervisor_gone)

    from channelstream.app import make_app
    from channelstream.server import serve

    app = make_app(settings)
    metrics = app.registry.channelstream_metrics
    siblings = Siblings(Path(args.figures_dir), args.worker, args.of)
    metrics.join_workers(args.worker, args.of, siblings.fetch)
    figures_server = StreamServer(figures_socket, partial(_send_figures, metrics))
    figures_server.start()
    try:
        serve(
            app,
            settings.host,
            settings.port,
            shutdown_timeout=settings.shutdown_timeout,
            request_timeout=settings.request_timeout,
            drain_grace=settings.drain_grace,
            listener=listener,
        )
    finally:
        figures_server.close()
        if supervisor_gone.is_set():
            _clean_up_after_supervisor(Path(args.figures_dir), args.worker)


if __name__ == "__main__":
    worker_main()
