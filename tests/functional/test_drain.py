"""Draining: what a stopping node answers and how it closes its listeners."""

from __future__ import annotations

from tests.functional.conftest import ApiClient


def test_ready_answers_503_draining_once_the_node_drains(client: ApiClient) -> None:
    assert client.get("/ready").json == {"status": "ready"}
    client.node.begin_drain()
    response = client.get("/ready", status=503)
    assert response.json == {"status": "unavailable", "reason": "draining"}
    assert client.get("/health").json == {"status": "ok"}  # still alive meanwhile


def test_close_listeners_closes_every_listener_with_1001_in_batches(client: ApiClient) -> None:
    node = client.node
    outboxes = []
    for index in range(25):
        conn_id = client.connect(f"user{index}", channels=["drained"])["conn_id"]
        outboxes.append(node.attach(conn_id, "ws" if index % 2 else "sse"))
    assert node.listener_count() == 25
    assert node.close_listeners(batch_size=10, pause=0) == 3
    assert [outbox.close_code for outbox in outboxes] == [1001] * 25


def test_close_listeners_without_batch_size_closes_all_at_once(client: ApiClient) -> None:
    node = client.node
    outboxes = [
        node.attach(client.connect(f"user{index}")["conn_id"], "poll") for index in range(3)
    ]
    assert node.close_listeners() == 1
    assert all(outbox.close_code == 1001 for outbox in outboxes)


def test_close_listeners_with_no_listeners_makes_no_batch(client: ApiClient) -> None:
    assert client.node.close_listeners(batch_size=10) == 0
