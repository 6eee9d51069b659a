"""GET /metrics: who may read it, and that its figures follow the server."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.functional.conftest import ApiClient, ClientFactory, token_at


def scrape(
    client: ApiClient, **kwargs: Any
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Signed GET /metrics parsed into {(sample name, sorted labels): value}."""
    response = client.call("GET", "/metrics", **kwargs)
    assert response.content_type == "text/plain"
    assert "version=0.0.4" in response.headers["Content-Type"]
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_signed_call_reads_metrics(client: ApiClient) -> None:
    samples = scrape(client)
    assert value(samples, "channelstream_connections") == 0
    for transport in ("ws", "sse", "poll"):
        assert value(samples, "channelstream_listeners", transport=transport) == 0
    for name in (
        "channelstream_messages_received_total",
        "channelstream_frames_sent_total",
        "channelstream_frames_dropped_total",
        "channelstream_slow_consumer_disconnects_total",
        "channelstream_broker_errors_total",
    ):
        assert value(samples, name) == 0
    assert value(samples, "channelstream_broker_available") == 1
    assert value(samples, "channelstream_ready") == 1


def test_unsigned_call_is_forbidden(client: ApiClient) -> None:
    response = client.call("GET", "/metrics", signed=False, status=403)
    assert response.json["error"] == "forbidden"


def test_bad_signature_is_rejected(client: ApiClient) -> None:
    client.call("GET", "/metrics", token=token_at("wrong-secret", "/metrics", 0), status=401)


def test_address_outside_allow_posting_from_is_forbidden_even_signed(client: ApiClient) -> None:
    client.call("GET", "/metrics", environ={"REMOTE_ADDR": "10.1.2.3"}, status=403)


def test_metrics_allow_from_needs_no_signature(make_client: ClientFactory) -> None:
    client = make_client(metrics_allow_from="10.0.0.0/8")
    scrape(client, signed=False, environ={"REMOTE_ADDR": "10.1.2.3"})
    client.call("GET", "/metrics", signed=False, environ={"REMOTE_ADDR": "192.0.2.1"}, status=403)


def test_metrics_allow_from_honours_trusted_proxies(make_client: ClientFactory) -> None:
    client = make_client(metrics_allow_from="10.0.0.0/8", trusted_proxies="192.0.2.1")
    headers = {"X-Forwarded-For": "10.9.9.9"}
    scrape(client, signed=False, headers=headers, environ={"REMOTE_ADDR": "192.0.2.1"})
    spoofed = {"X-Forwarded-For": "10.9.9.9"}
    client.call(
        "GET",
        "/metrics",
        signed=False,
        headers=spoofed,
        environ={"REMOTE_ADDR": "192.0.2.7"},
        status=403,
    )


def test_admin_session_reads_metrics(admin_client: ApiClient) -> None:
    scrape(admin_client, signed=False)


def test_figures_follow_connections_and_messages(client: ApiClient) -> None:
    conn_id = client.connect("alice", channels=["room"])["conn_id"]
    client.connect("bob", channels=["room", "lobby"])
    outbox = client.node.attach(conn_id, "sse")
    client.publish({"channel": "room", "user": "alice", "message": {"text": "hi"}})
    samples = scrape(client)
    assert value(samples, "channelstream_connections") == 2
    assert value(samples, "channelstream_users") == 2
    assert value(samples, "channelstream_channels") == 2
    assert value(samples, "channelstream_listeners", transport="sse") == 1
    assert value(samples, "channelstream_listeners", transport="ws") == 0
    assert value(samples, "channelstream_messages_received_total") == 1
    assert value(samples, "channelstream_frames_sent_total") == 2
    client.node.detach(outbox)
    samples = scrape(client)
    assert value(samples, "channelstream_listeners", transport="sse") == 0


def test_slow_consumer_is_counted(make_client: ClientFactory) -> None:
    client = make_client(max_queued_frames=2)
    conn_id = client.connect("alice", channels=["room"])["conn_id"]
    outbox = client.node.attach(conn_id, "ws")
    for n in range(3):
        client.publish({"channel": "room", "user": "bob", "message": {"n": n}})
    assert outbox.closed
    samples = scrape(client)
    assert value(samples, "channelstream_slow_consumer_disconnects_total") == 1
    assert value(samples, "channelstream_frames_dropped_total") == 3
    client.node.detach(outbox)


def test_request_latency_by_route(client: ApiClient) -> None:
    client.connect("alice")
    client.get("/health")
    samples = scrape(client)
    assert value(samples, "channelstream_request_duration_seconds_count", route="connect") == 1
    assert value(samples, "channelstream_request_duration_seconds_count", route="health") == 1
    assert (
        value(samples, "channelstream_request_duration_seconds_bucket", route="connect", le="+Inf")
        == 1
    )
    client.get("/no-such-page", status=404)
    samples = scrape(client)
    assert value(samples, "channelstream_request_duration_seconds_count", route="unmatched") == 1
    assert value(samples, "channelstream_request_duration_seconds_count", route="metrics") >= 1


def test_apps_keep_separate_figures(make_client: ClientFactory) -> None:
    first, second = make_client(), make_client()
    first.connect("alice")
    assert value(scrape(first), "channelstream_connections") == 1
    assert value(scrape(second), "channelstream_connections") == 0


def test_broker_errors_are_counted(make_client: ClientFactory) -> None:
    client = make_client(broker="redis://127.0.0.1:1/0")  # nothing listens on port 1
    samples = scrape(client)
    assert value(samples, "channelstream_broker_errors_total") >= 1
    assert value(samples, "channelstream_broker_available") == 0
    assert value(samples, "channelstream_ready") == 0


def test_draining_node_is_not_ready_but_its_broker_is_available(client: ApiClient) -> None:
    """The dashboard and alerts tell a node leaving on purpose from a broker outage."""
    client.node.begin_drain()
    samples = scrape(client)
    assert value(samples, "channelstream_ready") == 0
    assert value(samples, "channelstream_broker_available") == 1
