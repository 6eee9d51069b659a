"""Connection tokens on a real server with real clients (API.md §4.3): `/ws`, `/sse` and
`/listen` with `?token=` instead of a conn_id. First use connects, the same token re-attaches
and catches up, `exp` closes with 4004, and every bad token is refused with a JSON 401 and one
log line before the upgrade."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import jwt
import pytest
import websocket

from channelstream.api.tokens import token_conn_id
from channelstream.client import ChannelstreamClient
from tests.e2e.apiclient import ApiClient, WsListener, has_text, http_request, wait_for_log
from tests.e2e.sseclient import SseListener

SECRET = "e2e-token-secret-of-at-least-32-bytes"  # PyJWT warns below 32 bytes
MAX_JSON_DEPTH = 8
EXPIRY_WITHIN = 15.0  # a generous bound for a loaded machine: 4004 comes a few s after exp


@pytest.fixture(scope="module")
def server(start_module_server):
    return start_module_server(
        settings={
            "secret": SECRET,
            "wake_connections_after": 1,
            "max_json_depth": MAX_JSON_DEPTH,
        }
    )


@pytest.fixture
def api(server):
    return ApiClient(server.base_url, SECRET)


def make_token(user: str, ttl: float = 300, key: str = SECRET, **claims: Any) -> str:
    return jwt.encode({"sub": user, "exp": int(time.time() + ttl), **claims}, key, "HS256")


def b64(value: Any) -> str:
    raw = json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def forged(header: dict[str, Any], payload: dict[str, Any], signature: str = "") -> str:
    """A token built by hand (algorithms PyJWT will not sign with here, `alg: none`)."""
    return f"{b64(header)}.{b64(payload)}.{signature}"


def hs512(payload: dict[str, Any]) -> str:
    """Signed with the right secret, but HS512 (by hand: PyJWT warns of the key's length)."""
    signing_input = f"{b64({'alg': 'HS512', 'typ': 'JWT'})}.{b64(payload)}"
    digest = hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha512).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def open_ws(server, token: str, **kwargs: Any) -> WsListener:
    return WsListener.open(f"{server.ws_url}?token={token}", None, **kwargs)


def post(api: ApiClient, channel: str, text: str) -> None:
    api.publish({"channel": channel, "user": "system", "message": {"text": text}})


def channel_info(api: ApiClient, channel: str) -> dict[str, Any]:
    body = {"info": {"channels": [channel], "include_connections": True}}
    return api.ok("/info", body)["channels"].get(channel, {})


def users_of(api: ApiClient, channel: str) -> list[str]:
    return list(channel_info(api, channel).get("users", []))


def test_token_connects_without_connect_call(server, api):
    user, channel = unique("alice"), unique("lobby")
    token = make_token(user, channels=[channel], state={"mood": "ok"}, state_public_keys=["mood"])
    with open_ws(server, token) as listener:
        first = listener.next_frames()
        position = first[0]
        assert position["type"] == "position" and isinstance(position["epoch"], str), first
        assert isinstance(position["seq"], int)
        assert users_of(api, channel) == [user]
        # the page learns its conn_id, so its web app can name the connection
        extra = unique("extra")
        api.ok("/subscribe", {"conn_id": position["conn_id"], "channels": [extra]})
        assert users_of(api, extra) == [user]
        post(api, channel, "hello")
        message = listener.wait_for(has_text("hello"))
        assert message["channel"] == channel
    assert http_request(f"{server.base_url}/listen?token={token}").status == 200
    wait_for_log(server.log_text, "/listen?token=[redacted]")  # the access line redacts it
    assert token not in server.log_text()


def test_same_token_reattaches_and_catches_up(server, api):
    user, channel = unique("bob"), unique("room")
    token = make_token(user, channels=[channel], jti="tab-1")
    with open_ws(server, token) as listener:
        post(api, channel, "before")
        listener.wait_for(has_text("before"))
    post(api, channel, "while away")
    with open_ws(server, token) as listener:
        missed = listener.wait_for(has_text("while away"))
        assert missed.get("catchup") is True
    conn_id = token_conn_id(SECRET, user, "tab-1", token)
    info = channel_info(api, channel)
    assert info["total_connections"] == 1, info
    # a new token with the same sub and jti lands on the same connection too
    again = make_token(user, channels=[channel], jti="tab-1", ttl=600)
    post(api, channel, "third")
    with open_ws(server, again) as listener:
        assert listener.wait_for(has_text("third")).get("catchup") is True
    assert api.disconnect(conn_id).json is True


def test_same_jti_of_another_user_is_another_connection(server, api):
    channel = unique("shared")
    first, second = unique("carol"), unique("dave")
    with (
        open_ws(server, make_token(first, channels=[channel], jti="same")),
        open_ws(server, make_token(second, channels=[channel], jti="same")),
    ):
        assert sorted(users_of(api, channel)) == sorted([first, second])


def test_token_after_its_connection_ended_creates_it_anew(server, api):
    user, channel = unique("erin"), unique("news")
    token = make_token(user, channels=[channel])
    with open_ws(server, token):
        pass
    assert api.disconnect(token_conn_id(SECRET, user, None, token)).json is True
    with open_ws(server, token) as listener:
        post(api, channel, "fresh")
        listener.wait_for(has_text("fresh"))


def test_expiry_closes_websocket_with_4004_and_the_token_is_refused_after(server, api):
    user, channel = unique("frank"), unique("exp")
    token = make_token(user, ttl=2, channels=[channel])
    with open_ws(server, token) as listener:
        assert listener.wait_closed(timeout=EXPIRY_WITHIN) == 4004
    wait_for_log(server.log_text, "token expired, closed with 4004")
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        open_ws(server, token)
    assert refused.value.status_code == 401
    assert json.loads(refused.value.resp_body)["error"] == "unauthorized"


def test_expiry_ends_sse_with_4004(server, api):
    token = make_token(unique("gina"), ttl=2, channels=[unique("exp")])
    with SseListener.open(server.base_url, token, param="token") as listener:
        assert listener.status == 200
        deadline = time.monotonic() + EXPIRY_WITHIN
        event = listener.next_event(timeout=EXPIRY_WITHIN)
        while event is not None and event.event != "close" and time.monotonic() < deadline:
            event = listener.next_event(timeout=EXPIRY_WITHIN)
        assert event is not None and (event.event, event.data) == ("close", "4004")


def test_long_poll_with_token_then_refused_after_expiry(server, api):
    user, channel = unique("hank"), unique("poll")
    token = make_token(user, ttl=3, channels=[channel])
    first = http_request(f"{server.base_url}/listen?token={token}")
    assert first.status == 200 and [m["type"] for m in first.json] == ["position"], first.body
    again = http_request(f"{server.base_url}/listen?token={token}")  # re-attaches: no position
    assert again.status == 200 and again.json == [], again.body
    deadline = time.monotonic() + EXPIRY_WITHIN
    while True:
        answer = http_request(f"{server.base_url}/listen?token={token}")
        if answer.status != 200 or time.monotonic() >= deadline:
            break
    assert answer.status == 401, answer.body
    assert answer.json["error"] == "unauthorized"


def bad_tokens() -> dict[str, str]:
    now = int(time.time())
    claims = {"sub": "mallory", "exp": now + 300}
    return {
        "malformed": "not-a-token",
        "malformed_segments": "a.b.c",
        "expired": make_token("mallory", ttl=-10),
        "not_yet_valid": make_token("mallory", nbf=now + 120),
        "other_key": make_token("mallory", key="another-secret-of-at-least-32-bytes"),
        "hs512": hs512(claims),
        "rs256": forged({"alg": "RS256", "typ": "JWT"}, claims, "c2lnbmF0dXJl"),
        "alg_none": forged({"alg": "none", "typ": "JWT"}, claims),
        "alg_none_signed": forged({"alg": "none"}, claims, "c2lnbmF0dXJl"),
        "missing_exp": jwt.encode({"sub": "mallory"}, SECRET, "HS256"),
        "missing_sub": jwt.encode({"exp": now + 300}, SECRET, "HS256"),
    }


BAD_TOKEN_NAMES = list(bad_tokens())


@pytest.mark.parametrize("name", BAD_TOKEN_NAMES)
def test_bad_token_refused_before_upgrade_with_401_and_a_log_line(server, name):
    token = bad_tokens()[name]
    before = server.log_text().count("bad connection token")
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        open_ws(server, token)
    assert refused.value.status_code == 401
    body = json.loads(refused.value.resp_body)
    assert body["error"] == "unauthorized" and body["message"].startswith("Bad connection token")
    for path in ("/sse", "/listen"):
        answer = http_request(f"{server.base_url}{path}?token={token}")
        assert answer.status == 401, (path, answer.body)
        assert answer.json["error"] == "unauthorized"
    deadline = time.monotonic() + 5
    while server.log_text().count("bad connection token") < before + 3:
        assert time.monotonic() < deadline, "three refusal lines expected"
        time.sleep(0.02)  # paces re-reading the log file
    lines = [line for line in server.log_text().splitlines() if "bad connection token" in line]
    assert any("refused GET /ws from 127.0.0.1: 401 bad connection token" in x for x in lines)
    assert "mallory" not in "".join(lines)  # never the claims of an unverified token


def test_bad_claims_get_connects_422_keyed_by_claim(server):
    token = make_token("", channels="lobby", state=[1])
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        open_ws(server, token)
    assert refused.value.status_code == 422
    body = json.loads(refused.value.resp_body)
    assert set(body) == {"sub", "channels", "state"}, body


def test_claims_over_a_limit_get_413(server):
    deep: Any = "bottom"
    for _ in range(MAX_JSON_DEPTH + 2):
        deep = {"d": deep}
    answer = http_request(f"{server.base_url}/sse?token={make_token('ivan', state=deep)}")
    assert answer.status == 413
    assert answer.json["limit"] == "max_json_depth"


def test_conn_id_and_token_together_is_422(server, api):
    conn_id = api.connect(unique("judy"))
    token = make_token("judy")
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        WsListener.open(f"{server.ws_url}?conn_id={conn_id}&token={token}", None)
    assert refused.value.status_code == 422
    assert "token" in json.loads(refused.value.resp_body)


def test_python_client_connection_token(server, api):
    user, channel = unique("kim"), unique("py")
    with ChannelstreamClient(server.base_url, SECRET, timeout=5) as client:
        token = client.connection_token(user, channels=[channel], ttl=60, jti="page-1")
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert (claims["sub"], claims["channels"], claims["jti"]) == (user, [channel], "page-1")
    assert 0 < claims["exp"] - time.time() <= 61
    with open_ws(server, token) as listener:
        post(api, channel, "from the web app")
        listener.wait_for(has_text("from the web app"))
