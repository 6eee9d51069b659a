"""Long polls in a cluster: what each poll writes to the cluster's log (issue 16 item 4).

    .venv/bin/python bench/longpolls.py                      # 200 clients, 30 s, both modes
    .venv/bin/python bench/longpolls.py --clients 1000 --seconds 60

Two of our nodes on the machine's Redis (as `cluster.py` runs them: a prefix of their own,
deleted at the end). `--clients` connections (signed `/connect`, one shared channel), each
long-polled without pause by one client that alternates between the two nodes poll after poll
(no sticky sessions: the hardest case for positions), while a publisher posts one message a
second to the shared channel through node A. Run once per mode:

- `attach`: polls as 0.7.1's client sends them (`?conn_id=` only): every poll is an Attach and
  a Detach in the log;
- `position`: polls that carry the client's position (`&epoch=&seq=`, as channelstream.js
  sends them): served from the node's replica, with one KeepPolling per node a second.

Columns: polls answered per second, log entries appended per second (the stream's
`entries-added`) and per poll, both nodes' CPU per poll (ms), messages each client should
have got and did (`missing`, `duplicates`: counted by message uuid over all its polls).
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import gevent.monkey

gevent.monkey.patch_all()

import gevent  # noqa: E402
import servers  # noqa: E402
from cluster import Cluster, running_cluster  # noqa: E402

CHANNEL = "lobby"


@dataclass
class Poller:
    conn_id: str
    epoch: str
    seq: int
    with_position: bool
    polls: int = 0
    errors: int = 0
    received: dict[str, int] = field(default_factory=dict)  # message uuid -> times received

    def url(self, port: int) -> str:
        query = {"conn_id": self.conn_id}
        if self.with_position:
            query |= {"epoch": self.epoch, "seq": str(self.seq)}
        return f"http://{servers.HOST}:{port}/listen?{urllib.parse.urlencode(query)}"

    def run(self, ports: tuple[int, int], until: float) -> None:
        while time.monotonic() < until:
            port = ports[self.polls % 2]
            try:
                with urllib.request.urlopen(self.url(port), timeout=30) as response:
                    frames = json.load(response)
            except OSError:
                self.errors += 1
                gevent.sleep(0.1)
                continue
            self.polls += 1
            for frame in frames:
                if isinstance(frame.get("seq"), int):
                    self.seq = max(self.seq, frame["seq"])
                if frame.get("type") == "message":
                    uuid = frame["uuid"]
                    self.received[uuid] = self.received.get(uuid, 0) + 1


def signed_call(port: int, path: str, payload: Any, tokens: servers.Tokens) -> Any:
    request = urllib.request.Request(
        f"http://{servers.HOST}:{port}{path}",
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "x-channelstream-secret": tokens(path)},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def entries_added(cluster: Cluster) -> int:
    try:
        info = cluster.redis.xinfo_stream(cluster.log_key)
    except Exception:  # no stream yet
        return 0
    return int(info.get("entries-added", info.get("length", 0)))


def run_mode(cluster: Cluster, args: argparse.Namespace, with_position: bool) -> dict[str, Any]:
    tokens = servers.Tokens()
    pollers = []
    for index in range(args.clients):
        answer = signed_call(
            cluster.a.port,
            "/connect",
            {"username": f"p{index}-{int(with_position)}", "channels": [CHANNEL]},
            tokens,
        )
        pollers.append(
            Poller(answer["conn_id"], answer.get("epoch", ""), answer.get("seq", 0), with_position)
        )
    sent: list[str] = []

    def publish(until: float) -> None:
        number = 0
        while time.monotonic() < until:
            answer = signed_call(
                cluster.a.port,
                "/message",
                [{"channel": CHANNEL, "user": "publisher", "message": {"n": number}}],
                tokens,
            )
            sent.append(answer[0]["uuid"])
            number += 1
            gevent.sleep(1.0)

    ports = (cluster.a.port, cluster.b.port)
    warm_until = time.monotonic() + 3
    gevent.joinall([gevent.spawn(p.run, ports, warm_until) for p in pollers])
    polls_before = sum(p.polls for p in pollers)
    added_before = entries_added(cluster)
    cpu_before = servers.cpu_seconds(cluster.a.pid) + servers.cpu_seconds(cluster.b.pid)
    started = time.monotonic()
    until = started + args.seconds
    greenlets = [gevent.spawn(p.run, ports, until) for p in pollers]
    greenlets.append(gevent.spawn(publish, until - 6))  # the last messages still get polled
    gevent.joinall(greenlets)
    elapsed = time.monotonic() - started
    cpu = servers.cpu_seconds(cluster.a.pid) + servers.cpu_seconds(cluster.b.pid) - cpu_before
    added = entries_added(cluster) - added_before
    polls = sum(p.polls for p in pollers) - polls_before
    missing = sum(1 for p in pollers for uuid in sent if uuid not in p.received)
    duplicates = sum(count - 1 for p in pollers for count in p.received.values() if count > 1)
    return {
        "mode": "position" if with_position else "attach",
        "clients": args.clients,
        "polls/s": polls / elapsed,
        "log/s": added / elapsed,
        "log/poll": added / polls if polls else 0.0,
        "cpu_ms/poll": 1000 * cpu / polls if polls else 0.0,
        "sent": len(sent),
        "missing": missing,
        "duplicates": duplicates,
        "errors": sum(p.errors for p in pollers),
    }


COLUMNS = [
    "mode",
    "clients",
    "polls/s",
    "log/s",
    "log/poll",
    "cpu_ms/poll",
    "sent",
    "missing",
    "duplicates",
    "errors",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--modes", nargs="+", default=["attach", "position"])
    args = parser.parse_args()
    # no private network namespace: the nodes use the machine's Redis (as cluster.py)
    print(
        f"long polls: {args.clients} clients alternating between two nodes on one Redis, "
        f"{args.seconds:g} s per mode, one message a second to their channel",
        flush=True,
    )
    rows = []
    for mode in args.modes:
        with running_cluster(args.redis) as cluster:
            rows.append(run_mode(cluster, args, mode == "position"))
    servers.print_table(COLUMNS, rows)
    print()
    print(
        "log/s, log/poll: entries appended to the cluster's log (every node applies each); "
        "cpu_ms/poll: both nodes' CPU per poll answered; missing/duplicates: over every "
        "client, by message uuid (a client alternates nodes, poll after poll)."
    )


if __name__ == "__main__":
    main()
