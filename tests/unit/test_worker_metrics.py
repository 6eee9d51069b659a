"""One scrape of several workers (`api.metrics.merge_workers`) and the supervisor's small
helpers (`channelstream.workers`); the processes themselves: tests/multinode/test_workers.py."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from channelstream.api.metrics import (
    CLUSTER_FAMILIES,
    FamilyFigures,
    Metrics,
    SampleFigure,
    WorkerFigures,
    families_of,
    merge_workers,
)
from channelstream.cli import _server_parser
from channelstream.node import Node
from channelstream.settings import Settings
from channelstream.workers import exit_description, shared_environ


def figures(worker: int, listeners: float, connections: float, sent: float) -> WorkerFigures:
    """A worker's figures: a node-local gauge and counter, a cluster gauge."""
    registry = CollectorRegistry(auto_describe=False)
    Gauge("channelstream_listeners", "listeners", ["transport"], registry=registry).labels(
        "ws"
    ).set(listeners)
    Gauge("channelstream_connections", "connections", registry=registry).set(connections)
    Counter("channelstream_webhook_events_sent", "sent", registry=registry).inc(sent)
    return WorkerFigures(worker, families_of(registry))


def scrape_of(*answers: WorkerFigures, workers: int = 2) -> dict[tuple[str, tuple], float]:
    class Merged(Collector):
        def collect(self) -> Iterator[Metric]:
            yield from merge_workers(workers, answers)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Merged())
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_node_figures_get_a_worker_label_and_cluster_figures_appear_once():
    values = scrape_of(figures(1, 3, 10, 5), figures(2, 4, 11, 7))

    assert values[("channelstream_listeners", (("transport", "ws"), ("worker", "1")))] == 3
    assert values[("channelstream_listeners", (("transport", "ws"), ("worker", "2")))] == 4
    assert values[("channelstream_webhook_events_sent_total", (("worker", "1"),))] == 5
    assert values[("channelstream_webhook_events_sent_total", (("worker", "2"),))] == 7
    # the cluster's gauge: once, the most up to date replica's, never the sum
    assert values[("channelstream_connections", ())] == 11
    assert [key for key in values if key[0] == "channelstream_connections"] == [
        ("channelstream_connections", ())
    ]
    assert values[("channelstream_worker_up", (("worker", "1"),))] == 1
    assert values[("channelstream_worker_up", (("worker", "2"),))] == 1


# What a node exports that is its own: one series per worker in worker mode.
NODE_FAMILIES = {
    "channelstream_listeners",
    "channelstream_frames_dropped",
    "channelstream_slow_consumer_disconnects",
    "channelstream_broker_errors",
    "channelstream_broker_available",
    "channelstream_ready",
    "channelstream_webhook_sending",
    "channelstream_webhook_events_sent",
    "channelstream_webhook_requests_failed",
    "channelstream_webhook_events_dropped",
    "channelstream_webhook_request_seconds",
    "channelstream_request_duration_seconds",
}


def test_every_exported_family_is_either_the_clusters_or_the_nodes():
    """A new metric must be placed: cluster figures shown once, or one series per worker."""
    node = Node(Settings.from_sources({"secret": "s"}, environ={}))
    try:
        metrics = Metrics(node)
        metrics.request_latency.labels("info").observe(0.01)  # a labelled histogram shows
        exported = {family.name for family in families_of(metrics.local_registry)}
    finally:
        node.stop()
    assert exported == CLUSTER_FAMILIES | NODE_FAMILIES
    assert not CLUSTER_FAMILIES & NODE_FAMILIES


def test_a_worker_that_did_not_answer_is_down_and_absent():
    values = scrape_of(figures(2, 4, 11, 7), workers=3)

    assert values[("channelstream_worker_up", (("worker", "1"),))] == 0
    assert values[("channelstream_worker_up", (("worker", "2"),))] == 1
    assert values[("channelstream_worker_up", (("worker", "3"),))] == 0
    assert ("channelstream_listeners", (("transport", "ws"), ("worker", "1"))) not in values
    assert values[("channelstream_connections", ())] == 11


def test_worker_figures_round_trip_and_refuse_garbage():
    sent = WorkerFigures(
        2,
        (
            FamilyFigures(
                "channelstream_listeners",
                "gauge",
                "listeners",
                (SampleFigure("channelstream_listeners", {"transport": "ws"}, 3.0),),
            ),
        ),
    )
    assert WorkerFigures.decode(sent.encode()) == sent
    for garbage in (b"", b"[]", b'{"worker": 1}', b'{"worker": "x", "families": []}'):
        with pytest.raises(ValueError):
            WorkerFigures.decode(garbage)


def test_unset_secrets_are_made_once_and_handed_to_every_worker():
    settings = Settings.from_sources({})
    environ = shared_environ(settings, {"CHANNELSTREAM_ADMIN_SECRET_FILE": "/run/admin"})

    assert environ["CHANNELSTREAM_SECRET"] == settings.secret
    assert environ["CHANNELSTREAM_COOKIE_SECRET"] == settings.cookie_secret
    # a file names it: the workers read that file, and both variables would be refused
    assert "CHANNELSTREAM_ADMIN_SECRET" not in environ


def test_exit_descriptions():
    assert exit_description(3) == "exit status 3"
    assert exit_description(-signal.SIGKILL) == "killed by SIGKILL"


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_workers_option_refuses_what_is_not_a_whole_number_from_1(value, capsys):
    with pytest.raises(SystemExit) as stop:
        _server_parser().parse_args(["--workers", value])
    assert stop.value.code == 2
    assert "expected a whole number >= 1" in capsys.readouterr().err
