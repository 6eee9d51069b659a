"""The API of positions: `epoch` and `recover` on /connect, POST /history, channel settings
history_ttl and catchup_size, and /message idempotency keys (API.md §4.2)."""

from __future__ import annotations

from tests.functional.conftest import ApiClient


def test_connect_answers_the_epoch_and_recovered_only_when_asked(client: ApiClient) -> None:
    first = client.connect("alice", channels=["room"])
    again = client.connect("alice", channels=["room"], recover={"epoch": first["epoch"], "seq": 0})
    other = client.connect("alice", channels=["room"], recover={"epoch": "old", "seq": 5})

    assert isinstance(first["epoch"], str) and first["epoch"]
    assert "recovered" not in first
    assert again["seq"] == 0  # it recovers from there
    assert again["epoch"] == first["epoch"] and again["recovered"] is True
    assert other["recovered"] is False


def test_recover_is_validated(client: ApiClient) -> None:
    response = client.post(
        "/connect", {"username": "alice", "recover": {"epoch": "e", "seq": -1}}, status=422
    )

    assert response.json == {"recover": {"seq": ["Must be greater than or equal to 0."]}}


def test_history_pages_by_seq(client: ApiClient) -> None:
    client.post("/channel_config", {"room": {"store_history": True, "history_size": 20}})
    client.publish(
        *({"channel": "room", "user": "bob", "message": {"n": n}} for n in range(5)),
        {"channel": "room", "user": "bob", "message": {"n": 5}, "exclude_users": ["eve"]},
    )
    everything = client.post("/history", {"channel": "room"}).json
    seqs = [entry["seq"] for entry in everything["messages"]]

    page = client.post("/history", {"channel": "room", "since_seq": seqs[0], "limit": 2}).json
    newest = client.post("/history", {"channel": "room", "limit": 1, "reverse": True}).json
    for_eve = client.post("/history", {"channel": "room", "user": "eve"}).json
    unknown = client.post("/history", {"channel": "nowhere"}).json

    assert everything["epoch"] == client.connect("x")["epoch"]
    assert seqs == sorted(seqs) and len(seqs) == 6 and not everything["has_more"]
    assert [e["message"]["n"] for e in page["messages"]] == [1, 2] and page["has_more"]
    assert [e["message"]["n"] for e in newest["messages"]] == [5]
    assert [e["message"]["n"] for e in for_eve["messages"]] == [0, 1, 2, 3, 4]
    assert unknown == {"epoch": everything["epoch"], "messages": [], "has_more": False}


def test_history_limits_are_checked(client: ApiClient) -> None:
    errors = client.post("/history", {"channel": "room", "limit": 1001}, status=422).json

    assert set(errors) == {"limit"}
    assert set(client.post("/history", {}, status=422).json) == {"channel"}


def test_history_ttl_and_catchup_size_are_channel_settings(client: ApiClient) -> None:
    body = client.post("/channel_config", {"room": {"history_ttl": 60, "catchup_size": 7}}).json

    settings = body["channels"]["room"]["settings"]
    assert (settings["history_ttl"], settings["catchup_size"]) == (60, 7)
    client.post("/channel_config", {"room": {"catchup_size": 10_001}}, status=422)


def test_a_repeated_idempotency_key_is_answered_with_the_first_message(
    client: ApiClient,
) -> None:
    client.connect("alice", channels=["room"])
    item = {"channel": "room", "user": "bob", "message": {"t": 1}, "idempotency_key": "k-1"}

    [first] = client.publish(item)
    [repeat, other] = client.publish(
        {**item, "message": {"t": 2}}, {**item, "idempotency_key": "k-2"}
    )

    assert repeat == first and repeat["message"] == {"t": 1}
    assert other["uuid"] != first["uuid"]
    assert client.node.totals().messages_in == 2
    too_long = {**item, "idempotency_key": "k" * 65}
    assert set(client.post("/message", [too_long], status=422).json["0"]) == {"idempotency_key"}


def test_connect_answers_the_position_the_connection_starts_from(client: ApiClient) -> None:
    """Frames after the answer's seq reach the connection; none before it are replayed."""
    client.post("/channel_config", {"room": {"store_history": True}})
    client.connect("bob", channels=["room"])
    client.publish(*({"channel": "room", "user": "bob", "message": {"n": n}} for n in range(3)))
    [newest] = client.post("/history", {"channel": "room", "limit": 1, "reverse": True}).json[
        "messages"
    ]

    alice = client.connect("alice", channels=["room"])

    assert alice["seq"] == newest["seq"] > 0
