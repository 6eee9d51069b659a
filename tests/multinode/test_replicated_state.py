"""Every node serves the same state: history, users and channel info are identical through
any node (uuids and timestamps included), also on a node that joins a running cluster."""

from __future__ import annotations

import json
import re

import redis

from tests.multinode.helpers import poll, text, unique

HISTORY_CONFIG = {"store_history": True, "history_size": 20, "notify_presence": True}


def full_info(node):
    return node.api.ok("/info")


def public_info(node):
    return node.api.ok("/info", {"info": {"return_public_state": True}})


def same_info_through(nodes, read=full_info, timeout=10):
    """Poll every node's answer until all are identical; return it."""
    answers = []

    def identical():
        answers[:] = [read(node) for node in nodes]
        return all(answer == answers[0] for answer in answers[1:])

    try:
        poll(identical, timeout=timeout, what="the nodes to answer the same /info")
    except AssertionError:
        raise AssertionError(f"/info still differs: {answers}") from None
    return answers[0]


def build_state(first, second, rooms, users):
    """Channels with history, users with state, messages published, edited and deleted,
    each change through one node or the other. Returns the published messages (accepted)."""
    second.api.ok("/channel_config", {room: HISTORY_CONFIG for room in rooms})
    for index, user in enumerate(users):
        node = (first, second)[index % 2]
        node.api.connect(
            user,
            channels=rooms[: index + 1],
            user_state={"color": f"c{index}", "secret": index},
            state_public_keys=["color"],
        )
    first.api.ok("/user_state", {"user": users[0], "user_state": {"mood": "happy"}})
    published = []
    for number in range(6):
        node = (first, second)[number % 2]
        [accepted] = node.api.publish(text(rooms[number % len(rooms)], f"m{number}"))
        published.append(accepted)
    # edit through the node that did not publish it, delete likewise
    second.api.ok(
        "/message",
        [
            {
                "channel": published[0]["channel"],
                "uuid": published[0]["uuid"],
                "message": {"text": "m0 edited"},
            }
        ],
        method="PATCH",
    )
    first.api.ok(
        "/message",
        [{"channel": published[1]["channel"], "uuid": published[1]["uuid"]}],
        method="DELETE",
    )
    return published


def test_history_and_info_are_identical_on_both_nodes(start_node):
    a, b = start_node(), start_node()
    rooms = [unique("room"), unique("hall")]
    users = [unique("u0"), unique("u1"), unique("u2")]
    published = build_state(a, b, rooms, users)

    info = same_info_through([a, b])
    same_info_through([a, b], read=public_info)

    history = {room: info["channels"][room]["history"] for room in rooms}
    by_uuid = {m["uuid"]: m for room in rooms for m in history[room]}
    assert by_uuid[published[0]["uuid"]]["message"] == {"text": "m0 edited"}
    assert by_uuid[published[0]["uuid"]]["edited"] is not None
    assert published[1]["uuid"] not in by_uuid
    assert sorted(m["message"]["text"] for m in by_uuid.values()) == [
        "m0 edited",
        "m2",
        "m3",
        "m4",
        "m5",
    ]
    assert info["channels"][rooms[0]]["users"] == sorted(users)
    assert {u["user"]: u["state"] for u in info["users"]}[users[0]] == {
        "color": "c0",
        "secret": 0,
        "mood": "happy",
    }


def test_a_node_started_later_restores_the_snapshot_and_serves_the_same_info(
    start_node, redis_url, redis_prefix
):
    a = start_node()
    rooms = [unique("room"), unique("hall")]
    users = [unique("u0"), unique("u1"), unique("u2")]
    build_state(a, a, rooms, users)

    # The leader (A) writes a snapshot every ~10 s: wait for one that holds this state, then
    # change more, so the late node needs both the snapshot and the log after it.
    client = redis.Redis.from_url(redis_url, socket_timeout=5)

    def snapshot_with_state():
        raw = client.get(f"{redis_prefix}:snapshot")
        state = json.loads(raw)["state"] if raw else {"channels": []}
        return {c["name"] for c in state["channels"]} >= set(rooms)

    poll(snapshot_with_state, timeout=15, what="a snapshot holding the channels", interval=0.2)
    late_user = unique("late")
    a.api.connect(late_user, channels=[rooms[1]], user_state={"x": 1})
    a.api.publish(text(rooms[1], "after the snapshot"))
    a.api.ok("/user_state", {"user": users[1], "user_state": {"mood": "late"}})

    b = start_node()
    info = same_info_through([a, b])
    same_info_through([a, b], read=public_info)

    restored = re.search(r"state restored from snapshot: (\d+) channels", b.log_text())
    assert restored and int(restored.group(1)) >= len(rooms), b.log_text()[-3000:]
    assert late_user in info["channels"][rooms[1]]["users"]
    assert "after the snapshot" in [
        m["message"]["text"] for m in info["channels"][rooms[1]]["history"]
    ]
