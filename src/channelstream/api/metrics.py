"""Prometheus metrics of one app: a per-app registry (several apps can share a process) with
a collector that reads the Node's figures at scrape time and a request latency histogram
observed by the HTTP tween."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from channelstream.node import Node

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
