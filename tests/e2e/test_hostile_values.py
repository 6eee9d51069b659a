"""Values that used to get past validation and break later answers, against a real server:
a lone surrogate smuggled in through a declared charset (utf-7, unicode_escape,
raw_unicode_escape), a token in a form field of such a charset, and timestamps whose UTC
falls outside years 1-9999. Each is refused up front, and every later answer that would have
had to encode the value (admin panel, /connect, /listen, /sse, /info) still works
(docs/security.md, "Request bodies")."""

from __future__ import annotations

import json
import urllib.request

import pytest

from channelstream.signature import sign
from tests.e2e.apiclient import ApiClient, HttpResult, http_request
from tests.e2e.sseclient import SseListener

SECRET = "e2e-values-secret"
# `"\ud800"` in each charset: decoded by it, the text holds a lone surrogate
SMUGGLED = {
    "utf-7": b'"+2AA-"',
    "unicode_escape": b'"\\ud800"',
    "raw_unicode_escape": b'"\\ud800"',
}


@pytest.fixture(scope="module")
def server(start_module_server):
    return start_module_server(settings={"secret": SECRET, "wake_connections_after": 0.5})


@pytest.fixture
def api(server):
    return ApiClient(server.base_url, SECRET)


def raw_call(server, path: str, body: bytes, content_type: str, method: str = "POST") -> HttpResult:
    """A signed call whose body and Content-Type the test writes byte for byte."""
    request = urllib.request.Request(
        server.base_url + path,
        data=body,
        method=method,
        headers={"Content-Type": content_type, "x-channelstream-secret": sign(SECRET, path)},
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    return HttpResult(status=status, headers={}, body=raw, json=json.loads(raw) if raw else None)


def assert_everything_still_answers(server, api, user: str, room: str) -> None:
    """The answers that encode stored users, states and history all still work."""
    assert api.call("/admin/admin.json", method="GET").status == 200
    conn_id = api.connect(user, channels=[room])
    assert api.ok("/info", {"info": {"channels": [room]}})["channels"][room]["history"] == []
    assert api.listen(conn_id).status == 200
    with SseListener.open(server.base_url, conn_id) as stream:
        assert stream.status == 200
    assert api.connect(user, channels=[room])  # the same user again


@pytest.mark.parametrize("charset", sorted(SMUGGLED))
def test_a_lone_surrogate_through_a_declared_charset_is_refused_and_breaks_nothing(
    server, api, names, charset
):
    room, user = names("room"), names("user")
    api.ok(
        "/channel_config", {room: {"store_history": True, "history_size": 10}}
    )  # a history channel: the message would be stored
    value = SMUGGLED[charset]
    content_type = f"application/json; charset={charset}"

    message = b'[{"channel": "%s", "user": "u", "message": {"text": %s}}]' % (room.encode(), value)
    published = raw_call(server, "/message", message, content_type)
    state = b'{"user": "%s", "user_state": {"name": %s}}' % (user.encode(), value)
    user_state = raw_call(server, "/user_state", state, content_type)

    for result in (published, user_state):
        assert result.status == 415, result.body
        assert result.json["error"] == "unsupported_media_type"
    assert_everything_still_answers(server, api, user, room)


@pytest.mark.parametrize("charset", ["utf-8", "UTF8", "us-ascii"])
def test_utf8_and_ascii_declared_are_read(server, api, names, charset):
    room = names("room")
    body = b'[{"channel": "%s", "user": "u", "message": {"text": "hi"}}]' % room.encode()
    result = raw_call(server, "/message", body, f"application/json; charset={charset}")
    assert result.status == 200, result.body


@pytest.mark.parametrize("charset", ["utf-7", "utf-16"])
def test_a_token_in_a_form_field_of_another_charset_is_a_json_refusal_not_a_500(
    server, names, charset
):
    """0.7.1 reads the token from a `secret` form field too; a form in another charset than
    UTF-8 is not read (no token: 403), instead of failing the request (500)."""
    request = urllib.request.Request(
        server.base_url + "/connect",
        data=f"secret={sign(SECRET, '/connect')}".encode(),
        method="POST",
        headers={"Content-Type": f"application/x-www-form-urlencoded; charset={charset}"},
    )
    try:
        urllib.request.urlopen(request, timeout=15)
        status = 200
    except urllib.error.HTTPError as error:
        status, body = error.code, json.loads(error.read())
    assert status == 403
    assert body["error"] == "forbidden"
    assert "Internal" not in body["message"]


@pytest.mark.parametrize("timestamp", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"])
def test_a_timestamp_outside_the_utc_years_is_a_422(server, api, names, timestamp):
    room = names("room")
    conn_id = api.connect(names("user"), channels=[room])
    posted = api.call(
        "/message", [{"channel": room, "user": "u", "message": {}, "timestamp": timestamp}]
    )
    assert posted.status == 422
    assert posted.json == {"0": {"timestamp": ["Not a valid datetime."]}}

    accepted = api.ok("/message", [{"channel": room, "user": "u", "message": {"text": "a"}}])
    edited = api.call(
        "/message",
        [{"uuid": accepted[0]["uuid"], "channel": room, "edited": timestamp}],
        method="PATCH",
    )
    assert edited.status == 422
    assert edited.json == {"0": {"edited": ["Not a valid datetime."]}}
    assert http_request(server.base_url + f"/listen?conn_id={conn_id}").status == 200


def test_the_extreme_timestamps_that_are_valid_are_stored_and_sent(server, api, names):
    room = names("room")
    api.ok("/channel_config", {room: {"store_history": True}})
    conn_id = api.connect(names("user"), channels=[room])
    for timestamp in ("9999-12-31T23:59:59", "0001-01-01T00:00:00"):
        api.ok("/message", [{"channel": room, "user": "u", "message": {}, "timestamp": timestamp}])
    history = api.ok("/info", {"info": {"channels": [room]}})["channels"][room]["history"]
    assert [entry["timestamp"] for entry in history] == [
        "9999-12-31T23:59:59",
        "0001-01-01T00:00:00",
    ]
    assert api.listen(conn_id).status == 200
