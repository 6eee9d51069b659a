"""The receiving side of webhooks: `ChannelstreamClient.verify_webhook`, the Pyramid include's
`request.verify_channelstream_webhook()`, and the README's receiver, run as printed."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import webtest
from pyramid.config import Configurator
from pyramid.response import Response

from channelstream.client import ChannelstreamClient, WebhookSignatureError, client_from_settings
from channelstream.webhook_signature import SIGNATURE_HEADER, signature_header

README = Path(__file__).resolve().parents[2] / "README.md"
RECEIVER_HEADING = "### A receiver in Pyramid"
API_SECRET = "api-secret"
WEBHOOK_SECRET = "webhook-secret"
SETTINGS = {"channelstream.url": "http://127.0.0.1:1", "channelstream.secret": API_SECRET}


def event(name: str, **fields: Any) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "name": name, "time": "2024-05-04T09:55:02.101337", **fields}


def batch(*events: dict[str, Any]) -> bytes:
    """A body as the server sends it: compact JSON."""
    body = {"time_ms": int(time.time() * 1000), "events": list(events)}
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def signed(body: bytes, secret: str, *, at: float | None = None) -> dict[str, str]:
    t = int(time.time() if at is None else at)
    return {SIGNATURE_HEADER: signature_header(secret, body, t)}


# ---------------------------------------------------------------------- ChannelstreamClient


def test_the_client_verifies_with_its_api_secret_by_default():
    client = ChannelstreamClient("http://127.0.0.1:1", API_SECRET)  # no request is made
    events = [event("user_online", user="alice")]
    body = batch(*events)
    assert client.verify_webhook(body, signed(body, API_SECRET)[SIGNATURE_HEADER]) == events
    with pytest.raises(WebhookSignatureError, match="bad signature"):
        client.verify_webhook(body, signed(body, WEBHOOK_SECRET)[SIGNATURE_HEADER])


def test_the_client_verifies_with_its_webhook_secret_when_given():
    client = ChannelstreamClient("http://127.0.0.1:1", API_SECRET, webhook_secret=WEBHOOK_SECRET)
    events = [event("channel_vacated", channel="lobby")]
    body = batch(*events)
    assert client.verify_webhook(body, signed(body, WEBHOOK_SECRET)[SIGNATURE_HEADER]) == events
    assert client.verify_webhook(body.decode(), signed(body, WEBHOOK_SECRET)[SIGNATURE_HEADER])
    with pytest.raises(WebhookSignatureError, match="bad signature"):
        client.verify_webhook(body, signed(body, API_SECRET)[SIGNATURE_HEADER])


def test_the_client_refuses_a_missing_header_and_a_stale_one_within_its_tolerance():
    client = ChannelstreamClient("http://127.0.0.1:1", API_SECRET)
    body = batch(event("user_online", user="alice"))
    with pytest.raises(WebhookSignatureError, match="no X-Channelstream-Signature header"):
        client.verify_webhook(body, None)
    old = signed(body, API_SECRET, at=time.time() - 400)[SIGNATURE_HEADER]
    with pytest.raises(WebhookSignatureError, match="stale timestamp"):
        client.verify_webhook(body, old)
    assert client.verify_webhook(body, old, tolerance=600)


def test_client_from_settings_reads_the_optional_webhook_secret():
    assert client_from_settings(SETTINGS).webhook_secret == API_SECRET
    with_webhook_secret = {**SETTINGS, "channelstream.webhook_secret": WEBHOOK_SECRET}
    assert client_from_settings(with_webhook_secret).webhook_secret == WEBHOOK_SECRET
    empty = {**SETTINGS, "channelstream.webhook_secret": ""}
    assert client_from_settings(empty).webhook_secret == API_SECRET


# ---------------------------------------------------------------------- the Pyramid include


def include_app(settings: dict[str, str]) -> webtest.TestApp:
    """An app whose one view answers what `request.verify_channelstream_webhook` says."""

    def view(request: Any) -> Response:
        tolerance = float(request.params.get("tolerance", 300))
        try:
            events = request.verify_channelstream_webhook(tolerance=tolerance)
        except WebhookSignatureError as error:
            return Response(json_body={"refused": str(error)}, status=400)
        return Response(json_body={"events": events})

    config = Configurator(settings=settings)
    config.include("channelstream.client")
    config.add_route("hook", "/hook")
    config.add_view(view, route_name="hook", request_method="POST")
    return webtest.TestApp(config.make_wsgi_app())


def test_the_request_method_verifies_the_raw_body_with_the_webhook_secret():
    app = include_app({**SETTINGS, "channelstream.webhook_secret": WEBHOOK_SECRET})
    events = [event("member_added", channel="lobby", user="alice")]
    body = batch(*events)
    headers = signed(body, WEBHOOK_SECRET)
    answer = app.post("/hook", body, headers=headers, content_type="application/json")
    assert answer.json == {"events": events}
    refused = app.post(
        "/hook", body, headers=signed(body, API_SECRET), content_type="application/json", status=400
    )
    assert refused.json["refused"].startswith("bad signature")
    refused = app.post("/hook", body, content_type="application/json", status=400)
    assert refused.json["refused"] == "no X-Channelstream-Signature header"


def test_the_request_method_takes_a_tolerance():
    app = include_app(SETTINGS)
    body = batch(event("user_online", user="alice"))
    headers = signed(body, API_SECRET, at=time.time() - 400)
    app.post("/hook", body, headers=headers, content_type="application/json", status=400)
    app.post(
        "/hook?tolerance=600", body, headers=headers, content_type="application/json", status=200
    )


# ---------------------------------------------------------------------- the README's receiver


def readme_receiver_code() -> str:
    """The first python block after the README's receiver heading."""
    readme = README.read_text(encoding="utf-8")
    assert RECEIVER_HEADING + "\n" in readme, f"README.md lost its {RECEIVER_HEADING!r} section"
    section = readme.split(RECEIVER_HEADING + "\n", 1)[1]
    match = re.match(r"(?:(?!\n#).)*?```python\n(.*?)```", section, re.S)
    assert match, f"no python block under {RECEIVER_HEADING!r} in README.md"
    return match.group(1)


@pytest.fixture
def readme_receiver() -> tuple[webtest.TestApp, list[dict[str, Any]]]:
    """The README's receiver, executed in a Pyramid app whose `handle` records the events."""
    handled: list[dict[str, Any]] = []
    config = Configurator(settings={**SETTINGS, "channelstream.webhook_secret": WEBHOOK_SECRET})
    namespace: dict[str, Any] = {"config": config, "handle": handled.append}
    exec(compile(readme_receiver_code(), "README.md receiver", "exec"), namespace)
    return webtest.TestApp(config.make_wsgi_app()), handled


def test_the_readme_receiver_is_short_and_uses_the_include():
    code = readme_receiver_code()
    assert "request.verify_channelstream_webhook()" in code
    assert 'config.include("channelstream.client")' in code
    assert len([line for line in code.splitlines() if line.strip()]) <= 20


def test_the_readme_receiver_handles_a_signed_batch_once_and_answers_204(readme_receiver):
    app, handled = readme_receiver
    events = [
        event("user_online", user="alice"),
        event("channel_occupied", channel="lobby"),
        event("member_added", channel="lobby", user="alice"),
    ]
    body = batch(*events)
    headers = signed(body, WEBHOOK_SECRET)
    path = "/channelstream/webhook"
    app.post(path, body, headers=headers, content_type="application/json", status=204)
    assert handled == events
    # a retry (same ids, perhaps cut into another batch) is answered 2xx, not handled again
    retry = batch(events[2], later := event("user_offline", user="alice", reason="gc"))
    app.post(path, retry, headers=signed(retry, WEBHOOK_SECRET), status=204)
    assert handled == [*events, later]


@pytest.mark.parametrize(
    "forge",
    ["api-secret", "altered-body", "no-header", "stale", "garbage-header"],
)
def test_the_readme_receiver_refuses_a_forged_request_with_400(readme_receiver, forge):
    app, handled = readme_receiver
    body = batch(event("user_offline", user="alice", reason="disconnect"))
    headers = {
        "api-secret": signed(body, API_SECRET),
        "altered-body": signed(body.replace(b"alice", b"alicf"), WEBHOOK_SECRET),
        "no-header": {},
        "stale": signed(body, WEBHOOK_SECRET, at=time.time() - 301),
        "garbage-header": {SIGNATURE_HEADER: "v1=0,t=yesterday"},
    }[forge]
    path = "/channelstream/webhook"
    app.post(path, body, headers=headers, content_type="application/json", status=400)
    assert handled == []
