"""Worker mode: `channelstream -i FILE` with `workers = 2` is one supervisor and two worker
processes serving one port, each a node of the test's Redis cluster.

Which worker a websocket landed on is read from one `/metrics` scrape (any worker answers it
for all): `channelstream_listeners{transport="ws",worker="N"}` rises on that worker.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.apiclient import WsListener, has_text, http_request, wait_for_log
from tests.e2e.conftest import clean_environ, console_script
from tests.multinode.conftest import ClusterNode
from tests.multinode.helpers import poll, text, unique

WORKERS = 2
START_TIMEOUT = 20.0  # both workers up: two interpreters importing the app on 2 busy cores
MOST_SOCKETS = 40  # websockets opened, at most, until each worker holds one
STARTED = re.compile(r"worker (\d+) started \(pid (\d+)\)")


@dataclass(frozen=True)
class Scrape:
    """One `/metrics` answer: value by (sample name, sorted labels)."""

    values: dict[tuple[str, tuple[tuple[str, str], ...]], float]

    def value(self, name: str, **labels: str) -> float | None:
        return self.values.get((name, tuple(sorted(labels.items()))))

    def websockets(self, worker: int) -> int:
        found = self.value("channelstream_listeners", transport="ws", worker=str(worker))
        return int(found or 0)

    def up(self) -> set[int]:
        return {w for w in range(1, WORKERS + 1) if self.value_up(w)}

    def value_up(self, worker: int) -> bool:
        return self.value("channelstream_worker_up", worker=str(worker)) == 1

    def pids(self) -> dict[int, int]:
        """Worker number -> pid, from `channelstream_worker_info`."""
        return {
            int(dict(labels)["worker"]): int(dict(labels)["pid"])
            for (name, labels), _ in self.values.items()
            if name == "channelstream_worker_info"
        }

    def labelled(self, name: str, **labels: str) -> dict[int, float]:
        """Worker number -> value of `name` with `labels` (and a `worker` label)."""
        found = {}
        for (sample, pairs), value in self.values.items():
            given = dict(pairs)
            worker = given.pop("worker", None)
            if sample == name and worker is not None and given == labels:
                found[int(worker)] = value
        return found


def scrape(node: ClusterNode) -> Scrape:
    answer = http_request(f"{node.base_url}/metrics", timeout=10)
    assert answer.status == 200, answer.body[:300]
    values = {}
    for family in text_string_to_metric_families(answer.body.decode()):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return Scrape(values)


def start_workers(start_node: Callable[..., ClusterNode]) -> ClusterNode:
    """The supervisor, once every worker answers in one scrape."""
    node = start_node(workers=WORKERS, metrics_allow_from="127.0.0.1")
    poll(
        lambda: scrape(node).up() == set(range(1, WORKERS + 1)),
        START_TIMEOUT,
        f"{WORKERS} workers up; log:\n{node.log_text()}",
    )
    return node


@dataclass
class Placed:
    """A websocket and the worker it landed on."""

    listener: WsListener
    worker: int


def listen_on_every_worker(
    node: ClusterNode, listen: Callable[..., WsListener], channel: str, want: set[int]
) -> list[Placed]:
    """Open websockets (one connection each, on `channel`) one at a time until one is on
    each worker of `want`; which worker took each is seen in a scrape after it attached."""
    placed: list[Placed] = []
    before = scrape(node)
    for index in range(MOST_SOCKETS):
        conn_id = node.api.connect(f"user-{index}", [channel])
        listener = listen(node, conn_id)  # attached once this returns (ping, pong)
        after = scrape(node)
        risen = [w for w in range(1, WORKERS + 1) if after.websockets(w) > before.websockets(w)]
        assert len(risen) == 1, f"websocket {index}: counts before {before}, after {after}"
        placed.append(Placed(listener, risen[0]))
        before = after
        if want <= {p.worker for p in placed}:
            return placed
    raise AssertionError(f"{MOST_SOCKETS} websockets, none on workers {want}: {placed}")


def supervisor_pids(node: ClusterNode) -> dict[int, int]:
    """Worker number -> pid of its latest start, from the supervisor's log lines."""
    return {int(w): int(pid) for w, pid in STARTED.findall(node.log_text())}


def gone(pid: int) -> bool:
    """The process ended (a zombie not yet reaped by whoever adopted it counts as ended)."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return status.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def test_both_workers_serve_the_port_and_one_scrape_shows_both(start_node, listeners):
    node = start_workers(start_node)
    channel = unique("workers")
    placed = listen_on_every_worker(node, listeners, channel, {1, 2})

    node.api.publish(text(channel, "to every worker"))
    for one in placed:
        one.listener.wait_for(has_text("to every worker"), timeout=10)

    figures = scrape(node)
    # node-local figures, one series per worker: the websockets each one holds
    by_worker = {w: sum(1 for p in placed if p.worker == w) for w in (1, 2)}
    assert {w: figures.websockets(w) for w in (1, 2)} == by_worker
    # and each worker's own request counter: together, every /connect made
    connects = figures.labelled("channelstream_request_duration_seconds_count", route="connect")
    assert sum(connects.values()) == len(placed)
    # cluster figures once, not once per worker
    assert figures.value("channelstream_connections") == len(placed)
    assert figures.value("channelstream_messages_received_total") == 1
    assert figures.value("channelstream_connections", worker="1") is None
    # both workers, as the supervisor started them
    assert figures.pids() == supervisor_pids(node)
    assert len(set(figures.pids().values())) == WORKERS


def test_a_second_worker_mode_on_the_same_port_is_refused(start_node, tmp_path):
    """SO_REUSEPORT would let it share the port; it is refused as one process would be."""
    node = start_workers(start_node)
    again = subprocess.run(
        [console_script("channelstream"), "-i", str(node.server.ini_path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean_environ(),
        timeout=30,
    )
    assert again.returncode == 2, again.stderr
    assert again.stderr.splitlines()[-1] == (
        f"channelstream: cannot listen on 127.0.0.1:{node.server.port}: address already in use "
        "(another server running? choose another port: CHANNELSTREAM_PORT or port in the ini)"
    )
    assert scrape(node).up() == {1, 2}


def test_sigterm_to_the_supervisor_drains_every_worker_and_exits_0(start_node, listeners):
    node = start_workers(start_node)
    placed = listen_on_every_worker(node, listeners, unique("drain"), {1, 2})
    workers = supervisor_pids(node)

    os.kill(node.pid, signal.SIGTERM)

    assert [one.listener.wait_closed(timeout=15) for one in placed] == [1001] * len(placed)
    assert node.server.process.wait(timeout=30) == 0
    assert all(gone(pid) for pid in workers.values())
    log = node.log_text()
    assert "SIGTERM received: stopping 2 workers" in log
    for number, pid in workers.items():
        assert f"worker {number} (pid {pid}) stopped: exit status 0" in log
    assert "Supervisor stopped" in log


def test_workers_drain_and_exit_when_the_supervisor_is_killed(start_node, listeners):
    """No worker outlives its supervisor: each sees its pipe end and drains as on SIGTERM."""
    node = start_workers(start_node)
    placed = listen_on_every_worker(node, listeners, unique("orphans"), {1, 2})
    workers = supervisor_pids(node)
    argv = Path(f"/proc/{workers[1]}/cmdline").read_bytes().split(b"\0")
    figures_dir = Path(argv[argv.index(b"--figures-dir") + 1].decode())

    os.kill(node.pid, signal.SIGKILL)

    assert [one.listener.wait_closed(timeout=15) for one in placed] == [1001] * len(placed)
    poll(lambda: all(gone(pid) for pid in workers.values()), 15, "every worker ended")
    for number, pid in workers.items():
        assert f"worker {number} (pid {pid}): the supervisor is gone: stopping" in node.log_text()
    # the workers removed what the supervisor would have: their sockets' directory
    assert not figures_dir.exists()


def test_a_killed_worker_is_restarted_and_serves_again(
    start_node, listeners, redis_url, redis_prefix
):
    node = start_workers(start_node)
    channel = unique("restart")
    placed = listen_on_every_worker(node, listeners, channel, {1, 2})
    killed = supervisor_pids(node)[1]
    survivor = next(one for one in placed if one.worker == 2)
    # A node joining a cluster whose log has no snapshot yet waits for the leader to write
    # one; when the killed worker was that leader, the new one may wait up to 15 s (a
    # broker matter, not the workers'): kill once the cluster has its first snapshot.
    with redis.Redis.from_url(redis_url) as client:
        poll(lambda: client.exists(f"{redis_prefix}:snapshot"), 10, "the first snapshot")

    os.kill(killed, signal.SIGKILL)

    wait_for_log(
        node.log_text,
        f"worker 1 (pid {killed}) exited unexpectedly: killed by SIGKILL; restarting it in 1 s",
        timeout=10,
    )
    restarted = poll(
        lambda: supervisor_pids(node)[1] != killed and supervisor_pids(node)[1],
        START_TIMEOUT,
        "worker 1 started again",
    )
    wait_for_log(
        node.log_text, f"worker 1 (pid {restarted}): state restored from snapshot", timeout=10
    )
    poll(
        lambda: scrape(node).pids().get(1) == restarted,
        START_TIMEOUT,
        f"the new worker 1 (pid {restarted}) in a scrape",
    )
    again = listen_on_every_worker(node, listeners, channel, {1})
    node.api.publish(text(channel, "after the restart"))
    again[-1].listener.wait_for(has_text("after the restart"), timeout=10)
    # the other worker's websocket, open all along
    survivor.listener.wait_for(has_text("after the restart"), timeout=10)
    assert again[-1].worker == 1


def test_workers_with_the_memory_broker_are_refused_at_start(tmp_path):
    """One line on stderr and exit status 2, whether asked by option or by setting."""
    for args, env in ((["--workers", "2"], {}), ([], {"CHANNELSTREAM_WORKERS": "2"})):
        result = subprocess.run(
            [console_script("channelstream"), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=clean_environ({"CHANNELSTREAM_PORT": "0", **env}),
            timeout=30,
        )
        assert result.returncode == 2, result.stderr
        assert result.stderr.splitlines() == [
            "channelstream: 2 workers need the Redis broker (broker = redis://HOST:PORT/DB, "
            "or CHANNELSTREAM_BROKER): with broker = memory each worker would be a server of "
            "its own"
        ]
