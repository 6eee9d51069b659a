"""Messages published through any node reach every subscriber of the cluster exactly once, in
the cluster's order, whichever node the subscriber's listener is on."""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor

from tests.multinode.helpers import (
    is_marker,
    marker,
    numbered,
    numbers_in,
    poll,
    unique,
    wait_for_each,
)

COUNT = 50
SOCKETS_PER_NODE = 3


def poll_waits(node, conn_id):
    """How many long polls of `conn_id` the node has logged as waiting (attached, idle)."""
    return node.log_text().count(f"long poll waiting: connection {conn_id}")


def test_publishes_through_either_node_reach_every_subscriber_once_in_order(start_node, listeners):
    a, b = start_node(), start_node()
    channels = [unique("red"), unique("blue")]
    sockets = [
        listeners(node, node.api.connect(unique(f"sub{i}"), channels=channels))
        for node in (a, b)
        for i in range(SOCKETS_PER_NODE)
    ]
    # A long-polling subscriber whose polls alternate between the nodes: frames published
    # between two polls come back from the other node's replica as catchup, frames published
    # during a poll come live; each exactly once.
    poller = a.api.connect(unique("poller"), channels=channels)
    poll_nodes = itertools.cycle((b, a))
    polled = []
    numbers = iter(range(1, COUNT + 1))

    def publish_some(count):
        for number in itertools.islice(numbers, count):
            for index, channel in enumerate(channels):
                publisher = (a, b)[(number + index) % 2]
                publisher.api.publish(numbered(channel, number))

    with ThreadPoolExecutor(1) as pool:
        for _ in range(COUNT // 10):
            publish_some(5)  # no poll open: the next poll gets these as catchup
            result = next(poll_nodes).api.listen(poller)
            assert result.status == 200, result.body
            polled.extend(result.json)

            node = next(poll_nodes)
            waits = poll_waits(node, poller)
            pending = pool.submit(node.api.listen, poller)
            poll(
                lambda node=node, waits=waits: poll_waits(node, poller) > waits,
                timeout=5,
                what="the long poll to attach",
            )
            publish_some(5)  # the open poll gets these live
            result = pending.result(timeout=15)
            assert result.status == 200, result.body
            polled.extend(result.json)
    a.api.publish(marker(channels[0]))
    b.api.publish(marker(channels[1]))
    ends = [is_marker(channel) for channel in channels]
    for ws in sockets:
        wait_for_each(ws, ends, timeout=15)
    polled.extend(next(poll_nodes).api.listen(poller).json)

    expected = list(range(1, COUNT + 1))
    for index, ws in enumerate(sockets):
        for channel in channels:
            assert numbers_in(ws.messages, channel) == expected, (index, channel)
        assert sum(1 for m in ws.messages for end in ends if end(m)) == len(ends), index
    for channel in channels:
        assert numbers_in(polled, channel) == expected, channel
    assert sum(1 for m in polled for end in ends if end(m)) == len(ends)
    assert {m["catchup"] for m in polled if "n" in m["message"]} == {True, False}


def test_concurrent_publishers_on_two_nodes_give_every_subscriber_the_same_order(
    start_node, listeners
):
    a, b = start_node(), start_node()
    room = unique("room")
    sockets = [
        listeners(node, node.api.connect(unique("sub"), channels=[room])) for node in (a, b, a, b)
    ]
    start = threading.Barrier(2)

    def publish_from(node, first):
        start.wait(timeout=10)
        for number in range(first, first + COUNT):
            node.api.publish(numbered(room, number))

    with ThreadPoolExecutor(2) as pool:
        jobs = [pool.submit(publish_from, a, 1), pool.submit(publish_from, b, 1001)]
        for job in jobs:
            job.result(timeout=60)
    a.api.publish(marker(room))

    for ws in sockets:
        ws.wait_for(is_marker(room), timeout=15)
    orders = [numbers_in(ws.messages, room) for ws in sockets]
    first = orders[0]
    assert sorted(first) == list(range(1, COUNT + 1)) + list(range(1001, 1001 + COUNT))
    # each publisher's own messages keep their order, and every socket saw the same sequence
    assert [n for n in first if n < 1000] == list(range(1, COUNT + 1))
    assert [n for n in first if n > 1000] == list(range(1001, 1001 + COUNT))
    for order in orders[1:]:
        assert order == first


def test_a_publish_on_the_third_node_reaches_listeners_on_the_other_two_once(start_node, listeners):
    a, b, c = start_node(), start_node(), start_node()
    room = unique("room")
    sockets = {
        name: [
            listeners(node, node.api.connect(unique(f"on-{name}"), channels=[room]))
            for _ in range(2)
        ]
        for name, node in (("a", a), ("b", b), ("c", c))
    }
    for number in range(1, 11):
        c.api.publish(numbered(room, number))
    c.api.publish(marker(room))

    for name, node_sockets in sockets.items():
        for ws in node_sockets:
            ws.wait_for(is_marker(room), timeout=10)
            assert numbers_in(ws.messages, room) == list(range(1, 11)), name
            assert sum(1 for m in ws.messages if is_marker(room)(m)) == 1, name
