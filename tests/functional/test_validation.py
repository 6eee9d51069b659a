"""422 bodies: marshmallow's field-error dicts, in the shapes 0.7.1 clients read."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.functional.conftest import ApiClient

MISSING = ["Missing data for required field."]


def test_a_missing_required_field_is_named(client: ApiClient) -> None:
    response = client.post("/connect", {"channels": ["a"]}, status=422)

    assert response.content_type == "application/json"
    assert response.json == {"username": MISSING}


@pytest.mark.parametrize("username", ["", "x" * 513])
def test_a_string_out_of_length_bounds_is_refused(client: ApiClient, username: str) -> None:
    response = client.post("/connect", {"username": username}, status=422)

    assert response.json == {"username": ["Length must be between 1 and 512."]}


def test_a_string_at_the_length_bounds_is_accepted(client: ApiClient) -> None:
    assert client.connect("x" * 512)["username"] == "x" * 512
    assert client.connect("y")["username"] == "y"


def test_a_value_of_the_wrong_type_is_refused(client: ApiClient) -> None:
    response = client.post("/connect", {"username": 5}, status=422)

    assert response.json == {"username": ["Not a valid string."]}


@pytest.mark.parametrize(("channels", "index"), [(["", "ok"], "0"), (["ok", "x" * 257], "1")])
def test_a_bad_list_item_is_keyed_by_its_index(
    client: ApiClient, channels: list[str], index: str
) -> None:
    response = client.post("/connect", {"username": "a", "channels": channels}, status=422)

    assert response.json == {"channels": {index: ["Length must be between 1 and 256."]}}


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ([{"channel": "c"}], {"0": {"user": MISSING}}),
        ([{"user": "a", "channel": "c"}, {"channel": "c"}], {"1": {"user": MISSING}}),
        (
            [{"user": "", "channel": "c"}, {"user": "a", "pm_users": [5]}],
            {
                "0": {"user": ["Length must be between 1 and 512."]},
                "1": {"pm_users": {"0": ["Not a valid string."]}},
            },
        ),
    ],
)
def test_a_list_body_reports_errors_by_item_index(
    client: ApiClient, body: list[dict[str, Any]], errors: dict[str, Any]
) -> None:
    response = client.post("/message", body, status=422)

    assert response.json == errors


def test_a_list_body_with_one_bad_item_publishes_nothing(client: ApiClient) -> None:
    client.post("/channel_config", {"c": {"store_history": True}})

    client.post("/message", [{"user": "a", "channel": "c"}, {"channel": "c"}], status=422)

    assert client.info()["channels"]["c"]["history"] == []


def test_a_non_mapping_message_is_refused(client: ApiClient) -> None:
    response = client.post("/message", [{"user": "a", "channel": "c", "message": "hi"}], status=422)

    assert response.json == {"0": {"message": ["Not a valid mapping type."]}}


@pytest.mark.parametrize("value", [[1], {"nested": 1}])
def test_a_non_scalar_state_value_is_refused(client: ApiClient, value: Any) -> None:
    response = client.post("/connect", {"username": "a", "user_state": {"x": value}}, status=422)

    assert response.json == {
        "user_state": {"x": {"value": ["Value is not type of string, integer, boolean or float."]}}
    }


def test_a_bad_nested_channel_config_names_the_channel(client: ApiClient) -> None:
    response = client.post(
        "/connect",
        {"username": "a", "channels": ["c"], "channel_configs": {"c": {"history_size": -1}}},
        status=422,
    )

    assert response.json == {
        "channel_configs": {"c": {"value": {"history_size": ["Must be at least 0."]}}}
    }


def test_a_bad_info_field_is_nested_under_info(client: ApiClient) -> None:
    response = client.post("/info", {"info": {"include_history": "perhaps"}}, status=422)

    assert response.json == {"info": {"include_history": ["Not a valid boolean."]}}


def test_a_bad_uuid_is_refused(client: ApiClient) -> None:
    response = client.post("/connect", {"username": "a", "conn_id": "123"}, status=422)

    assert response.json == {"conn_id": ["Not a valid UUID."]}


def test_a_bad_timestamp_is_refused(client: ApiClient) -> None:
    response = client.post(
        "/message", [{"user": "a", "channel": "c", "timestamp": "yesterday"}], status=422
    )

    assert list(response.json) == ["0"]
    assert list(response.json["0"]) == ["timestamp"]


def test_an_unknown_connection_is_reported_on_conn_id(client: ApiClient) -> None:
    response = client.post(
        "/subscribe", {"conn_id": str(uuid.uuid4()), "channels": ["c"]}, status=422
    )

    assert response.json == {"conn_id": ["Unknown connection"]}


def test_an_unknown_user_is_reported_on_user(client: ApiClient) -> None:
    response = client.post("/user_state", {"user": "ghost"}, status=422)

    assert response.json == {"user": ["Unknown user"]}


def test_unknown_fields_are_silently_dropped(client: ApiClient) -> None:
    client.post("/channel_config", {"c": {"store_history": True, "colour": "red"}})
    body = client.connect("a", channels=["c"], favourite_colour="blue", info={"verbose": True})
    published = client.publish({"user": "a", "channel": "c", "type": "presence", "extra": 1})

    assert "favourite_colour" not in body
    assert "extra" not in published[0]
    assert "type" not in published[0]
    [stored] = client.info()["channels"]["c"]["history"]
    assert stored["type"] == "message"
    assert "extra" not in stored


def test_a_non_object_body_is_refused_with_schema_error(client: ApiClient) -> None:
    for path in ("/connect", "/subscribe", "/unsubscribe", "/user_state"):
        response = client.post(path, ["not", "an", "object"], status=422)
        assert response.json == {"_schema": ["Invalid input type."]}, path
