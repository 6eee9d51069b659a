"""/user_state over HTTP."""

from __future__ import annotations

from tests.functional.conftest import ApiClient


def test_user_state_answers_state_changes_and_public_keys(client: ApiClient) -> None:
    client.connect("alice", user_state={"mood": "ok", "level": 1}, state_public_keys=["mood"])

    body = client.post(
        "/user_state", {"user": "alice", "user_state": {"mood": "great", "level": 1}}
    ).json

    assert body == {
        "user_state": {"mood": "great", "level": 1},
        "changed_state": [{"key": "mood", "value": "great"}],
        "public_keys": ["mood"],
    }


def test_user_state_accepts_every_scalar_type_and_null(client: ApiClient) -> None:
    client.connect("alice", user_state={"gone": 1})
    state = {"s": "x", "i": 2, "f": 1.5, "b": False, "gone": None}

    body = client.post("/user_state", {"user": "alice", "user_state": state}).json

    assert body["user_state"] == state


def test_user_state_with_null_state_public_keys_keeps_the_keys(client: ApiClient) -> None:
    client.connect("alice", user_state={"a": 1}, state_public_keys=["a"])

    body = client.post(
        "/user_state", {"user": "alice", "user_state": {"b": 2}, "state_public_keys": None}
    ).json

    assert body["public_keys"] == ["a"]
    assert client.post("/user_state", {"user": "alice"}).json["public_keys"] == ["a"]


def test_user_state_with_empty_state_public_keys_clears_them(client: ApiClient) -> None:
    client.connect("alice", user_state={"a": 1}, state_public_keys=["a"])

    body = client.post("/user_state", {"user": "alice", "state_public_keys": []}).json

    assert body["public_keys"] == []
    assert body["changed_state"] == []


def test_user_state_public_keys_shape_the_public_state_seen_elsewhere(client: ApiClient) -> None:
    client.connect("alice", channels=["room"], user_state={"a": 1, "b": 2})

    client.post("/user_state", {"user": "alice", "state_public_keys": ["b"]})

    info = client.info(return_public_state=True)
    assert info["users"] == [{"user": "alice", "state": {"b": 2}}]


def test_user_state_of_an_unknown_user_is_refused(client: ApiClient) -> None:
    response = client.post("/user_state", {"user": "nobody", "user_state": {"a": 1}}, status=422)

    assert response.json == {"user": ["Unknown user"]}
