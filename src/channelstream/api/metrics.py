"""Prometheus metrics of one app: a per-app registry (several apps can share a process) with
a collector that reads the Node's figures at scrape time and a request latency histogram
observed by the HTTP tween."""

from __future__ import annotations

from collections.abc import Iterator

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


class Metrics:
    """What one app exposes on /metrics."""

    def __init__(self, node: Node) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(NodeCollector(node))
        self.request_latency = Histogram(
            "channelstream_request_duration_seconds",
            "HTTP request latency by route (websocket and SSE streams excluded)",
            labelnames=["route"],
            registry=self.registry,
        )
