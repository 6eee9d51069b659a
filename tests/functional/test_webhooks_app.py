"""Webhooks through the whole app (webtest; no sender runs here, so events stay queued):
what the API's calls queue, what the admin JSON and /metrics show, which settings are
refused. Delivery to a real receiver is in tests/e2e/test_webhooks.py."""

from __future__ import annotations

import pytest

from channelstream.settings import Settings, SettingsError
from tests.functional.conftest import ADMIN_SECRET, ClientFactory, sign_in
from tests.functional.test_metrics import scrape, value

HOOK = "https://user:pw@app.example.com/hooks/channelstream?token=abc"


def queued(client) -> list[tuple[str, dict[str, str]]]:
    events = client.node.pending_webhooks(1000)
    return [
        (e.name, {k: v for k, v in e.body().items() if k not in ("id", "time", "name")})
        for e in events
    ]


def test_the_api_queues_events_in_order(make_client: ClientFactory) -> None:
    client = make_client(webhook_url=HOOK)
    conn_id = client.connect("alice", channels=["a"])["conn_id"]
    client.post("/subscribe", {"conn_id": conn_id, "channels": ["b"]})
    client.post("/disconnect", {"conn_id": conn_id})
    assert queued(client) == [
        ("user_online", {"user": "alice"}),
        ("channel_occupied", {"channel": "a"}),
        ("member_added", {"channel": "a", "user": "alice"}),
        ("channel_occupied", {"channel": "b"}),
        ("member_added", {"channel": "b", "user": "alice"}),
        ("member_removed", {"channel": "a", "user": "alice"}),
        ("channel_vacated", {"channel": "a"}),
        ("member_removed", {"channel": "b", "user": "alice"}),
        ("channel_vacated", {"channel": "b"}),
        ("connection_closed", {"conn_id": conn_id, "user": "alice", "reason": "disconnect"}),
        ("user_offline", {"user": "alice", "reason": "disconnect"}),
    ]


def test_webhook_events_picks_the_events_queued(make_client: ClientFactory) -> None:
    client = make_client(webhook_url=HOOK, webhook_events="user_online, user_offline")
    conn_id = client.connect("alice", channels=["a"])["conn_id"]
    client.post("/disconnect", {"conn_id": conn_id})
    assert [name for name, _ in queued(client)] == ["user_online", "user_offline"]


def test_without_a_webhook_url_nothing_is_queued(make_client: ClientFactory) -> None:
    client = make_client()
    client.connect("alice", channels=["a"])
    assert client.node.pending_webhooks(10) == []
    assert client.node.webhook_status() is None


def test_the_admin_json_shows_the_queue_and_hides_the_urls_credentials(
    make_client: ClientFactory,
) -> None:
    client = make_client(webhook_url=HOOK, webhook_queue_max=3)
    client.connect("alice", channels=["a", "b"])  # 5 events, 3 kept
    assert sign_in(client).status_int == 302
    webhooks = client.get("/admin/admin.json").json["webhooks"]
    assert webhooks["url"] == "https://app.example.com/hooks/channelstream"
    assert webhooks["queue_length"] == 3
    assert webhooks["queue_max"] == 3
    assert webhooks["overflowed"] == 2
    assert webhooks["sending"] is True  # the memory broker's one node leads
    assert webhooks["events_sent"] == 0
    assert webhooks["last_delivered_at"] is None
    assert ADMIN_SECRET not in str(webhooks) and "pw" not in webhooks["url"]


def test_the_admin_json_says_null_when_webhooks_are_off(make_client: ClientFactory) -> None:
    client = make_client()
    assert sign_in(client).status_int == 302
    assert client.get("/admin/admin.json").json["webhooks"] is None


def test_metrics_show_the_queue(make_client: ClientFactory) -> None:
    client = make_client(webhook_url=HOOK, webhook_queue_max=3)
    client.connect("alice", channels=["a", "b"])
    samples = scrape(client)
    assert value(samples, "channelstream_webhook_queue_length") == 3
    assert value(samples, "channelstream_webhook_events_queued_total") == 3
    assert value(samples, "channelstream_webhook_events_overflowed_total") == 2
    assert value(samples, "channelstream_webhook_sending") == 1
    assert value(samples, "channelstream_webhook_events_sent_total") == 0
    assert value(samples, "channelstream_webhook_request_seconds_count") == 0


def test_metrics_are_zero_while_webhooks_are_off(make_client: ClientFactory) -> None:
    samples = scrape(make_client())
    assert value(samples, "channelstream_webhook_queue_length") == 0
    assert value(samples, "channelstream_webhook_sending") == 0


@pytest.mark.parametrize(
    ("key", "bad", "words"),
    [
        ("webhook_url", "ftp://example.com/x", "expected an http:// or https:// URL"),
        ("webhook_url", "http://", "expected an http:// or https:// URL"),
        ("webhook_events", "user_online, user_left", "unknown: user_left"),
        ("webhook_batch_max", "0", "expected a whole number >= 1"),
        ("webhook_batch_max", "10001", "expected at most 10000"),
        ("webhook_timeout", "0", "expected a number of seconds > 0"),
        ("webhook_queue_max", "-5", "expected a whole number >= 1"),
        ("webhook_secret", "CHANGE-ME-webhooks", "placeholder"),
    ],
)
def test_bad_webhook_settings_are_refused_by_name(key: str, bad: str, words: str) -> None:
    with pytest.raises(SettingsError, match=key) as refused:
        Settings.from_sources({key: bad}, environ={})
    assert words in str(refused.value)


def test_the_webhook_secret_defaults_to_the_secret() -> None:
    assert Settings.from_sources({"secret": "s1"}, environ={}).webhook_secret == "s1"
    given = Settings.from_sources({"secret": "s1", "webhook_secret": "w"}, environ={})
    assert given.webhook_secret == "w"
