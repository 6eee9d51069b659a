"""Prometheus metrics of one app: a per-app registry (several apps can share a process) with
a collector that reads the Node's figures at scrape time and a request latency histogram
observed by the HTTP tween.

In worker mode (`channelstream.workers`) one scrape, answered by whichever worker the kernel
hands it to, shows every worker: the answering worker asks its siblings for their figures
(`WorkerFigures`, JSON over private Unix sockets) and merges them (`merge_workers`). Figures
of this node get a `worker` label; cluster figures, the same on every replica, are shown
once (the highest of the workers', i.e. the most up to date replica's)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from channelstream.node import Node
from channelstream.webhooks import LATENCY_BUCKETS, WebhookCounters

TRANSPORTS = ("ws", "sse", "poll")


class NodeCollector(Collector):
    """Current figures of a Node: gauges of what exists now, counters since start."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        node = self.node
        totals = node.totals()
        listeners = GaugeMetricFamily(
            "channelstream_listeners",
            "Listeners attached to this node, by transport (ws, sse, poll)",
            labels=["transport"],
        )
        counts = dict.fromkeys(TRANSPORTS, 0) | node.listener_counts()
        for kind, count in counts.items():
            listeners.add_metric([kind], count)
        yield listeners
        yield GaugeMetricFamily(
            "channelstream_connections", "Connections in the cluster", value=totals.connections
        )
        yield GaugeMetricFamily(
            "channelstream_channels", "Channels in the cluster", value=totals.channels
        )
        yield GaugeMetricFamily("channelstream_users", "Users in the cluster", value=totals.users)
        yield CounterMetricFamily(
            "channelstream_messages_received",
            "Messages accepted by /message (cluster-wide)",
            value=totals.messages_in,
        )
        yield CounterMetricFamily(
            "channelstream_frames_sent",
            "Frames handed to connections (cluster-wide)",
            value=totals.frames_out,
        )
        yield CounterMetricFamily(
            "channelstream_frames_dropped",
            "This node: frames thrown away when a slow listener was closed (catchup replays "
            "them on reconnect)",
            value=node.frames_discarded,
        )
        yield CounterMetricFamily(
            "channelstream_slow_consumer_disconnects",
            "This node: listeners closed with 4002 for falling max_queued_frames behind",
            value=node.frames_dropped,
        )
        yield CounterMetricFamily(
            "channelstream_broker_errors",
            "This node: failed broker operations (Redis unreachable or erroring)",
            value=node.broker_stats().get("errors", 0),
        )
        yield GaugeMetricFamily(
            "channelstream_broker_available",
            "1 while the broker is reachable, else 0",
            value=1 if node.broker.available else 0,
        )
        # Apart from broker_available: a draining node is not ready, yet its broker is fine.
        yield GaugeMetricFamily(
            "channelstream_ready",
            "1 while GET /ready answers 200; 0 while draining, the broker is unreachable or "
            "the node met a command it does not understand",
            value=1 if node.ready else 0,
        )
        yield from self.webhook_metrics()

    def webhook_metrics(self) -> Iterator[Metric]:
        """Zero while webhooks are off. The queue's figures are the cluster's, the same on
        every node (take max() across nodes, not sum()); the sender's are this node's."""
        status = self.node.webhook_status()
        counters = status.counters if status is not None else WebhookCounters()
        queue_length = status.queue_length if status is not None else 0
        yield GaugeMetricFamily(
            "channelstream_webhook_queue_length",
            "Webhook events waiting to be sent (the cluster's queue)",
            value=queue_length,
        )
        yield GaugeMetricFamily(
            "channelstream_webhook_sending",
            "1 on the node that sends the cluster's webhooks (the leader), else 0",
            value=1 if status is not None and status.sending else 0,
        )
        yield CounterMetricFamily(
            "channelstream_webhook_events_queued",
            "Webhook events queued (the cluster's, as this node applied them)",
            value=status.queued if status is not None else 0,
        )
        yield CounterMetricFamily(
            "channelstream_webhook_events_overflowed",
            "Webhook events dropped because webhook_queue_max was reached (the cluster's)",
            value=status.overflowed if status is not None else 0,
        )
        yield CounterMetricFamily(
            "channelstream_webhook_events_sent",
            "This node: webhook events the receiver took (answered 2xx)",
            value=counters.events_sent,
        )
        yield CounterMetricFamily(
            "channelstream_webhook_requests_failed",
            "This node: webhook requests that failed (status not 2xx, timeout, refused); each "
            "is retried until webhook_retry_for",
            value=counters.requests_failed,
        )
        yield CounterMetricFamily(
            "channelstream_webhook_events_dropped",
            "This node: webhook events given up on after webhook_retry_for",
            value=counters.events_dropped,
        )
        buckets = counters.latency_buckets or dict.fromkeys(LATENCY_BUCKETS, 0)
        yield HistogramMetricFamily(
            "channelstream_webhook_request_seconds",
            "This node: duration of webhook requests, answered or not",
            buckets=[(str(bound), count) for bound, count in buckets.items()]
            + [("+Inf", counters.latency_count)],
            sum_value=counters.latency_sum,
        )


# Families whose figures are the cluster's (the replicated State's, or every replica's count
# of the cluster's events): the same on every worker, so shown once and never summed.
CLUSTER_FAMILIES = frozenset(
    {
        "channelstream_connections",
        "channelstream_channels",
        "channelstream_users",
        "channelstream_messages_received",
        "channelstream_frames_sent",
        "channelstream_webhook_queue_length",
        "channelstream_webhook_events_queued",
        "channelstream_webhook_events_overflowed",
    }
)
WORKER_LABEL = "worker"
WORKER_UP = "channelstream_worker_up"
WORKER_INFO = "channelstream_worker_info"


@dataclass(frozen=True)
class SampleFigure:
    """One sample: its full name (`..._total`, `..._bucket`), its labels and value."""

    name: str
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class FamilyFigures:
    """One metric family as a collector yields it, in plain values a sibling can send."""

    name: str
    kind: str
    documentation: str
    samples: tuple[SampleFigure, ...]


@dataclass(frozen=True)
class WorkerFigures:
    """Everything one worker exports: what its siblings fetch to answer a scrape."""

    worker: int
    families: tuple[FamilyFigures, ...]

    def encode(self) -> bytes:
        return json.dumps(
            {
                "worker": self.worker,
                "families": [
                    {
                        "name": family.name,
                        "kind": family.kind,
                        "documentation": family.documentation,
                        "samples": [
                            [sample.name, dict(sample.labels), sample.value]
                            for sample in family.samples
                        ],
                    }
                    for family in self.families
                ],
            }
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> WorkerFigures:
        """Raises ValueError when `data` is not what `encode` makes."""
        try:
            raw = json.loads(data)
            families = tuple(
                FamilyFigures(
                    name=str(family["name"]),
                    kind=str(family["kind"]),
                    documentation=str(family["documentation"]),
                    samples=tuple(
                        SampleFigure(
                            str(name), {str(k): str(v) for k, v in labels.items()}, float(value)
                        )
                        for name, labels, value in family["samples"]
                    ),
                )
                for family in raw["families"]
            )
            return cls(worker=int(raw["worker"]), families=families)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ValueError(f"not a worker's figures: {error}") from None


def families_of(registry: CollectorRegistry) -> tuple[FamilyFigures, ...]:
    """What `registry` holds now, as plain figures."""
    return tuple(
        FamilyFigures(
            name=metric.name,
            kind=metric.type,
            documentation=metric.documentation,
            samples=tuple(
                SampleFigure(sample.name, dict(sample.labels), sample.value)
                for sample in metric.samples
            ),
        )
        for metric in registry.collect()
    )


def merge_workers(workers: int, answers: Iterable[WorkerFigures]) -> list[Metric]:
    """One scrape of `workers` workers from the figures of those that answered.

    A node's own figure gets `worker="<n>"` (sum() over them is the host's); a cluster figure
    is shown once, the highest of the workers' (they agree but for replication lag and for
    a restarted worker's counts starting again). `channelstream_worker_up{worker}` says which
    workers answered: a missing one's figures are absent from this scrape."""
    merged: dict[str, Metric] = {}
    cluster: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    answered: set[int] = set()
    for answer in answers:
        answered.add(answer.worker)
        for family in answer.families:
            metric = merged.get(family.name)
            if metric is None:
                metric = merged[family.name] = Metric(
                    family.name, family.documentation, family.kind
                )
            if family.name in CLUSTER_FAMILIES:
                highest = cluster.setdefault(family.name, {})
                for sample in family.samples:
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    highest[key] = max(highest.get(key, sample.value), sample.value)
                continue
            for sample in family.samples:
                labels = {**sample.labels, WORKER_LABEL: str(answer.worker)}
                metric.add_sample(sample.name, labels, sample.value)
    for name, samples in cluster.items():
        for (sample_name, label_pairs), value in samples.items():
            merged[name].add_sample(sample_name, dict(label_pairs), value)
    up = GaugeMetricFamily(
        WORKER_UP,
        "1 for each worker whose figures are in this scrape, 0 for one that did not answer "
        "in time (restarting, stuck)",
        labels=[WORKER_LABEL],
    )
    for worker in range(1, workers + 1):
        up.add_metric([str(worker)], 1 if worker in answered else 0)
    return [*merged.values(), up]


class WorkersCollector(Collector):
    """A scrape of every worker: this one's figures and those `siblings()` fetches."""

    def __init__(
        self,
        metrics: Metrics,
        workers: int,
        siblings: Callable[[], Iterable[WorkerFigures]],
    ) -> None:
        self.metrics = metrics
        self.workers = workers
        self.siblings = siblings

    def collect(self) -> Iterator[Metric]:
        own = self.metrics.worker_figures()
        yield from merge_workers(self.workers, [own, *self.siblings()])


class Metrics:
    """What one app exposes on /metrics: `registry`, which `local_registry` (this process's
    figures) is unless the process is one of several workers (`join_workers`)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.local_registry = CollectorRegistry(auto_describe=False)
        self.local_registry.register(NodeCollector(node))
        self.request_latency = Histogram(
            "channelstream_request_duration_seconds",
            "HTTP request latency by route (websocket and SSE streams excluded)",
            labelnames=["route"],
            registry=self.local_registry,
        )
        self.registry = self.local_registry
        self.worker = 0

    def join_workers(
        self, worker: int, workers: int, siblings: Callable[[], Iterable[WorkerFigures]]
    ) -> None:
        """Make /metrics show all `workers` workers, this being number `worker`."""
        self.worker = worker
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(WorkersCollector(self, workers, siblings))

    def worker_figures(self) -> WorkerFigures:
        """This worker's figures, and which process and node it is."""
        info = FamilyFigures(
            WORKER_INFO,
            "gauge",
            "1 for each worker: its process id and node id",
            (SampleFigure(WORKER_INFO, {"pid": str(os.getpid()), "node": self.node.node_id}, 1),),
        )
        return WorkerFigures(self.worker, (*families_of(self.local_registry), info))
