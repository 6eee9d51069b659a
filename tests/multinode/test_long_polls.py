"""Long polls that carry the page's position (`epoch`, `seq`), as channelstream.js sends them:
served from each node's replica, so a client polling both nodes in turn gets every message
once and in order while its polls write no Attach or Detach to the cluster's log."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis

from channelstream.broker.redis import decode_command
from tests.multinode.helpers import numbered, numbers_in, poll, presence_of, unique

COUNT = 40


def log_operations(redis_url: str, prefix: str, conn_id: str) -> list[str]:
    """The types of the operations in the cluster's log that name `conn_id`."""
    client = redis.Redis.from_url(redis_url)
    try:
        entries = client.xrange(f"{prefix}:log")
    finally:
        client.close()
    types = []
    for _, fields in entries:
        operation = decode_command(fields[b"c"]).operation
        if getattr(operation, "conn_id", None) == conn_id or conn_id in getattr(
            operation, "conn_ids", ()
        ):
            types.append(operation.type)
    return types


def test_polls_with_a_position_alternate_nodes_exactly_once_without_attaching(
    start_node: Any, redis_url: str, redis_prefix: str
) -> None:
    a, b = start_node(), start_node()
    room = unique("room")
    answer = a.api.ok("/connect", {"username": unique("poller"), "channels": [room]})
    conn_id, epoch, seen = answer["conn_id"], answer["epoch"], answer["seq"]
    polled: list[dict[str, Any]] = []
    numbers = iter(range(1, COUNT + 1))
    nodes = itertools.cycle((b, a))

    def publish_some(count: int) -> None:
        for number in itertools.islice(numbers, count):
            (a, b)[number % 2].api.publish(numbered(room, number))

    def take(result: Any) -> None:
        nonlocal seen
        assert result.status == 200, result.body
        polled.extend(result.json)
        seen = max([seen, *(f["seq"] for f in result.json)])

    with ThreadPoolExecutor(1) as pool:
        for _ in range(COUNT // 10):
            publish_some(5)  # between polls: the next poll, on the other node, catches up
            take(next(nodes).api.listen(conn_id, position=(epoch, seen)))
            node = next(nodes)
            pending = pool.submit(node.api.listen, conn_id, position=(epoch, seen))
            poll(
                lambda node=node: (
                    node.log_text().count(f"long poll waiting: connection {conn_id}") > 0
                ),
                timeout=5,
                what="a long poll to be open",
            )
            publish_some(5)  # during a poll: live, or the next poll's catchup
            take(pending.result(timeout=15))
    while numbers_in(polled, room)[-1:] != [COUNT]:
        take(next(nodes).api.listen(conn_id, position=(epoch, seen)))

    assert numbers_in(polled, room) == list(range(1, COUNT + 1))
    kinds = log_operations(redis_url, redis_prefix, conn_id)
    assert "attach" not in kinds and "detach" not in kinds, kinds
    assert "keep_polling" in kinds


def test_a_client_polling_with_its_position_stays_present(start_node: Any, listeners: Any) -> None:
    """Without a listener a connection parts after presence_grace: a client whose polls carry
    its position never attaches one, and KeepPolling keeps it in (polls alternate nodes)."""
    settings = {"presence_grace": 2, "wake_connections_after": 1}
    a, b = start_node(**settings), start_node(**settings)
    room = unique("room")
    watcher = listeners(a, a.api.connect(unique("watcher"), channels=[room], notify_presence=True))
    poller = unique("poller")
    answer = b.api.ok("/connect", {"username": poller, "channels": [room]})
    conn_id, position = answer["conn_id"], (answer["epoch"], answer["seq"])
    for node in (a, b) * 4:  # ~8 s of polls of 1 s each, one after the other
        result = node.api.listen(conn_id, position=position)
        assert result.status == 200, result.body
    a.api.publish(numbered(room, 1))
    watcher.wait_for(lambda m: m.get("type") == "message", timeout=10)

    assert presence_of(watcher.messages, poller) == ["joined"]  # at connect; never parted
    info = a.api.ok("/info", {"info": {"channels": [room]}})
    assert poller in info["channels"][room]["users"]
