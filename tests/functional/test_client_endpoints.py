"""Endpoints browsers call with a conn_id and no signature: /listen, /disconnect, /ws."""

from __future__ import annotations

import json
import uuid
from urllib.parse import urlencode

import gevent
import pytest

from tests.functional.conftest import ApiClient, ClientFactory

UNKNOWN_CONNECTION = {"conn_id": ["Unknown connection"]}


def _connect_and_publish(client: ApiClient) -> str:
    conn_id: str = client.connect("bob", channels=["room"])["conn_id"]
    client.publish(
        {"user": "alice", "channel": "room", "message": {"n": 1}},
        {"user": "alice", "pm_users": ["bob"], "message": {"n": 2}},
    )
    return conn_id


# ---------------------------------------------------------------------------------- /listen


def test_listen_answers_missed_frames_as_a_json_array_of_catchup_messages(
    client: ApiClient,
) -> None:
    conn_id = _connect_and_publish(client)

    response = client.get("/listen", query=f"conn_id={conn_id}")

    assert response.content_type == "application/json"
    frames = response.json
    assert [frame["message"] for frame in frames] == [{"n": 1}, {"n": 2}]
    assert all(frame["catchup"] is True for frame in frames)
    assert all(frame["type"] == "message" for frame in frames)
    assert frames[0]["channel"] == "room"
    assert frames[1]["channel"] is None


def test_listen_does_not_replay_frames_an_earlier_poll_delivered(
    polling_client: ApiClient,
) -> None:
    conn_id = _connect_and_publish(polling_client)
    polling_client.get("/listen", query=f"conn_id={conn_id}")

    response = polling_client.get("/listen", query=f"conn_id={conn_id}")

    assert response.json == []


def test_a_poll_with_its_position_gets_what_came_after_it_without_attaching(
    polling_client: ApiClient,
) -> None:
    answer = polling_client.connect("bob", channels=["room"])
    conn_id, epoch = answer["conn_id"], answer["epoch"]
    polling_client.publish({"user": "alice", "channel": "room", "message": {"n": 1}})
    seen = polling_client.node.state.seq
    polling_client.publish({"user": "alice", "channel": "room", "message": {"n": 2}})
    query = urlencode({"conn_id": conn_id, "epoch": epoch, "seq": seen})

    frames = polling_client.get("/listen", query=query).json

    assert [frame["message"] for frame in frames] == [{"n": 2}]
    connection = polling_client.node.state.connections[conn_id]
    assert connection.listeners == 0  # no Attach
    assert connection.cursor < frames[-1]["seq"]
    polling_client.node.keep_polling()  # what the chores do every second
    assert connection.cursor == frames[-1]["seq"]  # so a later websocket starts after it
    again = urlencode({"conn_id": conn_id, "epoch": epoch, "seq": frames[-1]["seq"]})
    assert polling_client.get("/listen", query=again).json == []


def test_a_poll_with_a_position_of_another_epoch_attaches_as_before(
    polling_client: ApiClient,
) -> None:
    conn_id = _connect_and_publish(polling_client)
    query = urlencode({"conn_id": conn_id, "epoch": "an-old-epoch", "seq": 99})

    frames = polling_client.get("/listen", query=query).json

    assert [frame["message"] for frame in frames] == [{"n": 1}, {"n": 2}]
    assert polling_client.get("/listen", query=f"conn_id={conn_id}").json == []


@pytest.mark.parametrize(
    ("position", "field"),
    [({"epoch": "e"}, "seq"), ({"seq": "3"}, "seq"), ({"epoch": "e", "seq": "-1"}, "seq")],
)
def test_a_poll_position_must_be_whole_and_valid(
    polling_client: ApiClient, position: dict[str, str], field: str
) -> None:
    conn_id = polling_client.connect()["conn_id"]
    query = urlencode({"conn_id": conn_id, **position})

    response = polling_client.get("/listen", query=query, status=422)

    assert list(response.json) == [field]


def test_a_poll_with_its_position_ends_when_the_connection_does(
    polling_client: ApiClient,
) -> None:
    answer = polling_client.connect("bob", channels=["room"])
    query = urlencode({"conn_id": answer["conn_id"], "epoch": answer["epoch"], "seq": 0})
    poll = gevent.spawn(polling_client.get, "/listen", query=query, status=401)
    with gevent.Timeout(5):
        while not polling_client.node.listener_count():
            gevent.sleep(0.01)
    polling_client.node.disconnect(answer["conn_id"])

    assert poll.get(timeout=5).json == UNKNOWN_CONNECTION


def test_listen_with_nothing_waiting_answers_an_empty_array(polling_client: ApiClient) -> None:
    conn_id = polling_client.connect("bob", channels=["room"])["conn_id"]

    response = polling_client.get("/listen", query=f"conn_id={conn_id}")

    assert response.content_type == "application/json"
    assert response.json == []


def test_listen_with_a_callback_answers_jsonp(client: ApiClient) -> None:
    conn_id = _connect_and_publish(client)

    response = client.get("/listen", query=f"conn_id={conn_id}&callback=app.onFrames")

    assert response.content_type == "application/javascript"
    text = response.text
    assert text.startswith("app.onFrames(") and text.endswith(")")
    frames = json.loads(text[len("app.onFrames(") : -1])
    assert [frame["message"] for frame in frames] == [{"n": 1}, {"n": 2}]


@pytest.mark.parametrize(
    "callback", ["alert(1)//", "1abc", "a-b", "x" * 65, "</script>", "cb;evil", "cb\n", "cb\r\n"]
)
def test_listen_with_an_unsafe_callback_is_refused(
    polling_client: ApiClient, callback: str
) -> None:
    conn_id = polling_client.connect()["conn_id"]
    query = urlencode({"conn_id": conn_id, "callback": callback})

    response = polling_client.get("/listen", query=query, status=422)

    assert list(response.json) == ["callback"]


def test_listen_without_conn_id_is_refused(client: ApiClient) -> None:
    response = client.get("/listen", status=422)

    assert response.json == {"conn_id": ["Missing data for required field."]}


def test_listen_with_a_malformed_conn_id_is_refused(client: ApiClient) -> None:
    response = client.get("/listen", query="conn_id=not-a-uuid", status=422)

    assert response.content_type == "application/json"
    assert list(response.json) == ["conn_id"]


def test_listen_on_an_unknown_connection_is_unauthorized(client: ApiClient) -> None:
    response = client.get("/listen", query=f"conn_id={uuid.uuid4()}", status=401)

    assert response.content_type == "application/json"
    assert response.json == UNKNOWN_CONNECTION


def test_conn_ids_are_canonical_whatever_their_spelling(client: ApiClient) -> None:
    conn_id = str(uuid.uuid4())
    spelled = "{" + conn_id.upper() + "}"

    assert client.connect("bob", conn_id=spelled, channels=["room"])["conn_id"] == conn_id
    client.publish({"user": "alice", "channel": "room"})
    assert len(client.get("/listen", query=f"conn_id={conn_id.upper()}").json) == 1
    assert client.get("/disconnect", query=f"conn_id={conn_id.upper()}").json is True


def test_listen_needs_no_signature_and_no_allowed_address(client: ApiClient) -> None:
    conn_id = _connect_and_publish(client)

    response = client.get(
        "/listen", query=f"conn_id={conn_id}", environ={"REMOTE_ADDR": "203.0.113.9"}
    )

    assert len(response.json) == 2


# ---------------------------------------------------------------------------------- /disconnect


def test_disconnect_by_query_string_ends_the_connection(client: ApiClient) -> None:
    conn_id = client.connect(channels=["room"])["conn_id"]

    response = client.get("/disconnect", query=f"conn_id={conn_id}")

    assert response.content_type == "application/json"
    assert response.json is True
    assert conn_id not in client.node.state.connections
    assert client.info(channels=["room"])["channels"]["room"]["users"] == []


def test_disconnect_by_json_body(client: ApiClient) -> None:
    conn_id = client.connect()["conn_id"]

    response = client.post("/disconnect", {"conn_id": conn_id}, signed=False)

    assert response.json is True
    assert conn_id not in client.node.state.connections


def test_disconnect_by_post_with_conn_id_only_in_the_query(client: ApiClient) -> None:
    """The 0.7 JS client posts with the conn_id in the URL."""
    conn_id = client.connect()["conn_id"]

    response = client.post("/disconnect", {}, query=f"conn_id={conn_id}", signed=False)

    assert response.json is True
    assert conn_id not in client.node.state.connections


def test_disconnect_by_post_without_body_reads_the_query(client: ApiClient) -> None:
    conn_id = client.connect()["conn_id"]

    response = client.post("/disconnect", query=f"conn_id={conn_id}", signed=False)

    assert response.json is True


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_disconnect_with_another_method_reads_the_query(client: ApiClient, method: str) -> None:
    conn_id = client.connect()["conn_id"]

    response = client.call(method, "/disconnect", query=f"conn_id={conn_id}", signed=False)

    assert response.json is True


def test_disconnect_of_an_unknown_connection_answers_false(client: ApiClient) -> None:
    response = client.get("/disconnect", query=f"conn_id={uuid.uuid4()}")

    assert response.json is False


def test_disconnect_twice_answers_true_then_false(client: ApiClient) -> None:
    conn_id = client.connect()["conn_id"]

    assert client.get("/disconnect", query=f"conn_id={conn_id}").json is True
    assert client.get("/disconnect", query=f"conn_id={conn_id}").json is False


def test_disconnect_with_a_malformed_conn_id_is_refused(client: ApiClient) -> None:
    response = client.get("/disconnect", query="conn_id=xyz", status=422)

    assert response.json == {"conn_id": ["Not a valid UUID."]}


def test_disconnect_without_conn_id_is_refused_as_in_071(client: ApiClient) -> None:
    for response in (
        client.get("/disconnect", status=422),
        client.post("/disconnect", {}, signed=False, status=422),
        client.post("/disconnect", signed=False, status=422),
    ):
        assert response.json == {"conn_id": ["Field may not be null."]}


def test_disconnect_with_a_non_object_body_is_refused(client: ApiClient) -> None:
    response = client.post("/disconnect", ["x"], signed=False, status=422)

    assert response.json == {"_schema": ["Invalid input type."]}


def test_disconnect_needs_no_signature_and_no_allowed_address(client: ApiClient) -> None:
    conn_id = client.connect()["conn_id"]

    response = client.get(
        "/disconnect", query=f"conn_id={conn_id}", environ={"REMOTE_ADDR": "203.0.113.9"}
    )

    assert response.json is True


def test_disconnect_is_final_for_later_polls(client: ApiClient) -> None:
    """F17: a poll after /disconnect gets the unknown-connection answer, never a 500."""
    conn_id = _connect_and_publish(client)
    client.get("/disconnect", query=f"conn_id={conn_id}")

    response = client.get("/listen", query=f"conn_id={conn_id}", status=401)

    assert response.content_type == "application/json"
    assert response.json == UNKNOWN_CONNECTION
    subscribe = client.post("/subscribe", {"conn_id": conn_id, "channels": ["x"]}, status=422)
    assert subscribe.json == UNKNOWN_CONNECTION


# ---------------------------------------------------------------------------------- /ws


def test_ws_without_conn_id_is_refused(client: ApiClient) -> None:
    response = client.get("/ws", status=422)

    assert response.json == {"conn_id": ["Missing data for required field."]}


def test_ws_with_a_malformed_conn_id_is_refused(client: ApiClient) -> None:
    response = client.get("/ws", query="conn_id=nope", status=422)

    assert response.json == {"conn_id": ["Not a valid UUID."]}


def test_ws_without_an_upgrade_is_a_bad_request(client: ApiClient) -> None:
    conn_id = client.connect()["conn_id"]

    response = client.get("/ws", query=f"conn_id={conn_id}", status=400)

    assert response.content_type == "application/json"
    assert response.json["error"] == "bad_request"
    assert conn_id in client.node.state.connections


# ---------------------------------------------------------------------------------- pending polls


def _pending_poll(client: ApiClient, conn_id: str, status: int = 200) -> gevent.Greenlet:
    """Start a /listen in a greenlet and let it run until it waits for frames."""
    poll = gevent.spawn(client.get, "/listen", query=f"conn_id={conn_id}", status=status)
    gevent.idle()
    assert client.node.listener_count() == 1, "the poll should be waiting"
    return poll


def test_a_pending_poll_answers_live_messages(make_client: ClientFactory) -> None:
    client = make_client(wake_connections_after=5)
    conn_id = client.connect("bob", channels=["room"])["conn_id"]
    poll = _pending_poll(client, conn_id)

    client.publish({"user": "alice", "channel": "room", "message": {"live": True}})
    response = poll.get(timeout=5)

    assert response.content_type == "application/json"
    [frame] = response.json
    assert frame["message"] == {"live": True}
    assert frame["catchup"] is False
    assert client.node.listener_count() == 0


def test_a_pending_poll_on_a_disconnected_connection_is_unauthorized(
    make_client: ClientFactory,
) -> None:
    """F17: /disconnect ends a waiting poll with the unknown-connection answer."""
    client = make_client(wake_connections_after=5)
    conn_id = client.connect("bob", channels=["room"])["conn_id"]
    poll = _pending_poll(client, conn_id, status=401)

    assert client.get("/disconnect", query=f"conn_id={conn_id}").json is True
    response = poll.get(timeout=5)

    assert response.content_type == "application/json"
    assert response.json == UNKNOWN_CONNECTION


# ---------------------------------------------------------------------------------- what polls get


def _poll(client: ApiClient, conn_id: str) -> list[dict]:
    frames: list[dict] = client.get("/listen", query=f"conn_id={conn_id}").json
    return frames


def test_private_channel_messages_reach_only_their_recipients(
    polling_client: ApiClient,
) -> None:
    """F4: kept out of history, still delivered to pm_users (here through catchup)."""
    client = polling_client
    client.post("/channel_config", {"room": {"store_history": True}})
    bob = client.connect("bob", channels=["room"])["conn_id"]
    carol = client.connect("carol", channels=["room"])["conn_id"]

    client.publish({"user": "alice", "channel": "room", "pm_users": ["bob"], "message": {"p": 1}})

    assert [frame["message"] for frame in _poll(client, bob)] == [{"p": 1}]
    assert _poll(client, carol) == []
    assert client.info()["channels"]["room"]["history"] == []


def test_excluded_users_do_not_get_the_message(polling_client: ApiClient) -> None:
    bob = polling_client.connect("bob", channels=["room"])["conn_id"]
    carol = polling_client.connect("carol", channels=["room"])["conn_id"]

    polling_client.publish(
        {"user": "alice", "channel": "room", "exclude_users": ["carol"], "message": {"n": 1}}
    )

    assert [frame["message"] for frame in _poll(polling_client, bob)] == [{"n": 1}]
    assert _poll(polling_client, carol) == []


def test_polls_get_presence_state_changes_edits_and_deletes(client: ApiClient) -> None:
    client.post(
        "/channel_config",
        {"room": {"notify_presence": True, "notify_state": True, "store_history": True}},
    )
    bob = client.connect("bob", channels=["room"])["conn_id"]
    client.connect(
        "alice", channels=["room"], user_state={"mood": "ok"}, state_public_keys=["mood"]
    )
    client.post("/user_state", {"user": "alice", "user_state": {"mood": "great"}})
    [message] = client.publish({"user": "alice", "channel": "room", "message": {"v": 1}})
    client.call(
        "PATCH", "/message", [{"uuid": message["uuid"], "channel": "room", "message": {"v": 2}}]
    )
    client.call("DELETE", "/message", [{"uuid": message["uuid"], "channel": "room"}])

    frames = _poll(client, bob)

    assert [frame["type"] for frame in frames] == [
        "presence",
        "user_state_change",
        "message:edit",
        "message:delete",
    ]
    presence, state_change, edit, delete = frames
    assert presence["user"] == "alice"
    assert presence["message"] == {"action": "joined"}
    assert presence["state"] == {"mood": "ok"}
    assert state_change["message"] == {
        "state": {"mood": "great"},
        "changed": [{"key": "mood", "value": "great"}],
    }
    assert edit["uuid"] == delete["uuid"] == message["uuid"]
    assert edit["message"] == {"v": 2}
    assert all(frame["catchup"] is True for frame in frames)
