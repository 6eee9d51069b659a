"""Mixed versions in one cluster: a node reads a command it does not understand (as a newer
node would emit: another operation version, or an unknown operation type). It applies none
of it, says so once in its log, and answers /ready 503, while it keeps applying the commands
it does understand."""

from __future__ import annotations

import json
import uuid

import redis

from tests.e2e.apiclient import has_text, http_request


def emit(redis_url: str, prefix: str, operation: dict[str, object]) -> None:
    """Append a command to the cluster's log the way another node's broker does."""
    entry = {
        "c": operation,
        "t": "2026-11-30T12:00:00",
        "o": "node-of-a-newer-version",
        "i": str(uuid.uuid4()),
    }
    client = redis.Redis.from_url(redis_url)
    try:
        client.xadd(f"{prefix}:log", {"c": json.dumps(entry)})
    finally:
        client.close()


def test_a_command_this_node_cannot_read_is_refused_whole_logged_once_and_fails_ready(
    start_node, listeners, redis_url, redis_prefix
):
    node = start_node()
    room = "room"
    conn_id = node.api.connect("alice", channels=[room])
    ws = listeners(node, conn_id)
    assert http_request(node.base_url + "/ready").status == 200

    newer_publish = {
        "v": 2,
        "type": "publish",
        "messages": [{"channel": room, "user": "bob", "message": {"text": "from v2"}}],
    }
    emit(redis_url, redis_prefix, newer_publish)
    emit(redis_url, redis_prefix, {"v": 1, "type": "teleport", "conn_id": conn_id})
    emit(redis_url, redis_prefix, newer_publish)
    node.api.publish({"channel": room, "user": "bob", "message": {"text": "from v1"}})

    ws.wait_for(has_text("from v1"), timeout=10.0)  # what it understands still applies...
    assert not [m for m in ws.messages if m.get("message", {}).get("text") == "from v2"]
    ready = http_request(node.base_url + "/ready")
    assert ready.status == 503  # ...but it no longer matches the cluster: out of rotation
    assert ready.json == {"status": "unavailable", "reason": "unsupported command"}
    refusals = [line for line in node.log_text().splitlines() if "is not understood" in line]
    assert len(refusals) == 1, refusals
    assert "operation version 2" in refusals[0] and "ERROR" in refusals[0]
    assert node.api.info()["channels"][room]["history"] == []  # nothing of it was stored
