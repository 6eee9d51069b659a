"""Webhooks end to end (API.md §4.1, §4.5; README "Webhooks"): real server processes POST
signed batches to a real HTTP receiver (tests/webhook_receiver.py). The exact events, in order,
for every cause (connect, subscribe, /disconnect, GC after presence_grace and gc_conns_after,
/user_disconnect, an expired connection token), the `webhook_events` filter, and the sender
against a receiver that is down, failing, hanging or failing for too long, a full queue, and
the metrics. Every wait is on a condition with a deadline."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from tests.e2e.apiclient import ApiClient, WsListener, has_text, http_request
from tests.webhook_receiver import (
    WebhookReceiver,
    event_names,
    unique_by_id,
    without_ids,
)

SECRET = "e2e-webhooks-api-secret-of-at-least-32-bytes"  # PyJWT warns below 32 bytes
HOOK_SECRET = "e2e-webhooks-signing-secret"
PRESENCE_GRACE = 2
GC_CONNS_AFTER = 6
WAIT = 20.0  # a generous bound for a loaded machine; never a timing assertion
GC_WAIT = GC_CONNS_AFTER + 15.0
EXPIRY_WAIT = 15.0
# an event's `time` against its request's `time_ms` (retries delay a request by seconds;
# a local time instead of UTC would be off by the server's zone: it runs in SERVER_TZ)
TIME_SKEW_MAX = timedelta(minutes=10)
SERVER_TZ = "America/Sao_Paulo"  # UTC-3, no daylight saving time
RETRY_LINE = re.compile(
    r"webhook: POST \S+ failed \((.+)\) for (\d+) events: retry (\d+) in ([\d.]+) s"
)


# ---------------------------------------------------------------------- helpers


def ev(name: str, **fields: str) -> dict[str, str]:
    """An event as `without_ids` shows it: its name and its own fields."""
    return {"name": name, **fields}


def joins(user: str, *channels: str) -> list[dict[str, str]]:
    """A user's first connection joining channels nobody is in (channel names sorted)."""
    events = [ev("user_online", user=user)]
    for channel in channels:
        events += [
            ev("channel_occupied", channel=channel),
            ev("member_added", channel=channel, user=user),
        ]
    return events


def leaves(user: str, conn_id: str, reason: str, *channels: str) -> list[dict[str, str]]:
    """A user's last connection ending in channels where it is the last member."""
    events: list[dict[str, str]] = []
    for channel in channels:
        events += [
            ev("member_removed", channel=channel, user=user),
            ev("channel_vacated", channel=channel),
        ]
    return events + [
        ev("connection_closed", conn_id=conn_id, user=user, reason=reason),
        ev("user_offline", user=user, reason=reason),
    ]


def check_batches(receiver: WebhookReceiver, ids_unique: bool = True) -> None:
    """Every request was signed right (verified by the receiver), is a JSON batch with an int
    `time_ms`, and its events carry a UUID `id` and a naive UTC ISO `time` (close to the
    request's `time_ms`: not local time). With `ids_unique` (no request was retried), no id
    appears twice across requests."""
    seen: list[str] = []
    for batch in list(receiver.batches):
        assert batch.forged is None, batch.forged
        body = json.loads(batch.body)
        assert isinstance(body["time_ms"], int) and body["events"] == batch.events
        sent_at = datetime.fromtimestamp(body["time_ms"] / 1000, UTC)
        for event in batch.events:
            assert str(uuid.UUID(event["id"])) == event["id"], event
            made_at = datetime.fromisoformat(event["time"])
            assert made_at.tzinfo is None, event
            assert abs(made_at - sent_at.replace(tzinfo=None)) < TIME_SKEW_MAX, (event, body)
            seen.append(event["id"])
    if ids_unique:
        assert len(seen) == len(set(seen)), "an event id was sent twice"


class Seen:
    """The delivered events of some users and channels (other tests' events are left out),
    taken step by step: `expect` asserts the next ones are exactly those given."""

    def __init__(
        self, receiver: WebhookReceiver, users: Iterable[str], channels: Iterable[str] = ()
    ) -> None:
        self.receiver = receiver
        self.users = set(users)
        self.channels = set(channels)
        self.taken = 0

    def mine(self) -> list[dict[str, Any]]:
        return [
            event
            for event in unique_by_id(self.receiver.delivered_events())
            if event.get("user") in self.users or event.get("channel") in self.channels
        ]

    def expect(self, *expected: dict[str, str], timeout: float = WAIT) -> list[dict[str, Any]]:
        wanted = self.taken + len(expected)
        self.receiver.wait_for(lambda: len(self.mine()) >= wanted, timeout)
        got = self.mine()[self.taken :]
        assert without_ids(got) == list(expected)
        self.taken = wanted
        check_batches(self.receiver)
        return got


@pytest.fixture
def receivers() -> Any:
    """`receivers(cls=WebhookReceiver)`: a started receiver, stopped at teardown."""
    started: list[WebhookReceiver] = []

    def start(cls: type[WebhookReceiver] = WebhookReceiver) -> WebhookReceiver:
        receiver = cls(HOOK_SECRET).start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


def hook_settings(receiver: WebhookReceiver, **settings: Any) -> dict[str, Any]:
    return {
        "secret": SECRET,
        "webhook_url": receiver.url,
        "webhook_secret": HOOK_SECRET,
        **settings,
    }


def metrics(api: ApiClient) -> dict[str, float]:
    """GET /metrics (a signed call): each sample line's name (with labels) -> value."""
    answer = api.call("/metrics", method="GET")
    assert answer.status == 200, answer.body[:300]
    values = {}
    for line in answer.body.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def log_lines(server: Any, needle: str) -> list[str]:
    return [line for line in server.log_text().splitlines() if needle in line]


def retries(server: Any) -> list[tuple[str, int, int, float]]:
    """The sender's "retry K in X s" lines: (error, events, K, X)."""
    found = []
    for line in server.log_text().splitlines():
        match = RETRY_LINE.search(line)
        if match:
            error, count, number, delay = match.groups()
            found.append((error, int(count), int(number), float(delay)))
    return found


def wait_for_retries(api: ApiClient, server: Any, count: int) -> list[tuple[str, int, int, float]]:
    return api.wait_until(
        lambda: len(retries(server)) >= count and retries(server),
        timeout=WAIT,
        what=f"{count} webhook retry lines",
    )


def open_ws(server: Any, listeners: list[Any], conn_id: str) -> WsListener:
    listener = WsListener.open(server.ws_url, conn_id)
    listeners.append(listener)
    return listener


# ---------------------------------------------------------------------- one server, every cause


@pytest.fixture(scope="module")
def receiver() -> Any:
    receiver = WebhookReceiver(HOOK_SECRET).start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def server(start_module_server: Any, receiver: WebhookReceiver) -> Any:
    return start_module_server(
        settings=hook_settings(
            receiver, presence_grace=PRESENCE_GRACE, gc_conns_after=GC_CONNS_AFTER
        ),
        env={"TZ": SERVER_TZ},
    )


@pytest.fixture
def api(server: Any) -> ApiClient:
    return ApiClient(server.base_url, SECRET)


def test_connect_subscribe_unsubscribe_and_disconnect_send_exact_events_in_order(
    api: ApiClient, receiver: WebhookReceiver, listen: Any, names: Any
) -> None:
    alice, a, b, c = names("alice"), names("a"), names("b"), names("c")
    seen = Seen(receiver, [alice], [a, b, c])

    first = api.connect(alice, [b, a])
    listen(first)
    seen.expect(*joins(alice, a, b))

    second = api.connect(alice, [a])  # alice is online and in `a` already: no event
    listen(second)
    api.ok("/subscribe", {"conn_id": first, "channels": [c]})
    seen.expect(*joins(alice, c)[1:])  # the second connection sent nothing before these
    api.ok("/unsubscribe", {"conn_id": first, "channels": [c]})
    seen.expect(ev("member_removed", channel=c, user=alice), ev("channel_vacated", channel=c))

    assert api.disconnect(second).json is True  # another connection of alice remains
    seen.expect(ev("connection_closed", conn_id=second, user=alice, reason="disconnect"))
    assert api.disconnect(first).json is True
    seen.expect(*leaves(alice, first, "disconnect", a, b))


def test_a_closed_websocket_parts_after_presence_grace_and_ends_after_gc_conns_after(
    api: ApiClient, receiver: WebhookReceiver, listen: Any, names: Any
) -> None:
    alice, room = names("alice"), names("room")
    seen = Seen(receiver, [alice], [room])
    conn_id = api.connect(alice, [room])
    ws = listen(conn_id)
    seen.expect(*joins(alice, room))

    ws.close()

    seen.expect(
        ev("member_removed", channel=room, user=alice),
        ev("channel_vacated", channel=room),
        ev("user_offline", user=alice, reason="gc"),
        timeout=GC_WAIT,
    )
    seen.expect(ev("connection_closed", conn_id=conn_id, user=alice, reason="gc"), timeout=GC_WAIT)


def test_a_websocket_back_within_presence_grace_sends_nothing_and_one_back_later_joins_again(
    api: ApiClient, receiver: WebhookReceiver, listen: Any, names: Any
) -> None:
    carol, dave = names("carol"), names("dave")
    carol_room, dave_room = names("carol-room"), names("dave-room")
    seen = Seen(receiver, [carol, dave], [carol_room, dave_room])
    carol_conn = api.connect(carol, [carol_room])
    carol_ws = listen(carol_conn)
    dave_conn = api.connect(dave, [dave_room])
    dave_ws = listen(dave_conn)
    seen.expect(*joins(carol, carol_room), *joins(dave, dave_room))

    carol_ws.close()
    listen(carol_conn)  # back at once, well within presence_grace
    dave_ws.close()  # after carol's return: had carol parted, her events would come first

    seen.expect(
        ev("member_removed", channel=dave_room, user=dave),
        ev("channel_vacated", channel=dave_room),
        ev("user_offline", user=dave, reason="gc"),
        timeout=GC_WAIT,
    )
    listen(dave_conn)  # absent, not yet collected: the same connection joins again
    seen.expect(*joins(dave, dave_room))
    api.disconnect(carol_conn)
    api.disconnect(dave_conn)
    seen.expect(
        *leaves(carol, carol_conn, "disconnect", carol_room),
        *leaves(dave, dave_conn, "disconnect", dave_room),
    )


def test_user_disconnect_ends_every_connection_with_its_reason(
    api: ApiClient, receiver: WebhookReceiver, listen: Any, names: Any
) -> None:
    erin, room = names("erin"), names("room")
    seen = Seen(receiver, [erin], [room])
    first = api.connect(erin, [room])
    second = api.connect(erin, [room])
    listen(first)
    listen(second)
    seen.expect(*joins(erin, room))

    answer = api.ok("/user_disconnect", {"users": [erin], "reason": "logged out"})

    assert answer["disconnected"] == {erin: 2}
    seen.expect(
        ev("connection_closed", conn_id=first, user=erin, reason="user_disconnect"),
        *leaves(erin, second, "user_disconnect", room),
    )


def test_an_expired_connection_token_ends_its_connection_with_reason_expired(
    server: Any, receiver: WebhookReceiver, listeners: list[Any], names: Any
) -> None:
    frank, room = names("frank"), names("room")
    seen = Seen(receiver, [frank], [room])
    token = jwt.encode(
        {"sub": frank, "exp": int(time.time() + 3), "channels": [room]}, SECRET, "HS256"
    )
    ws = WsListener.open(f"{server.ws_url}?token={token}", None)
    listeners.append(ws)
    position = ws.next_frames()[0]
    assert position["type"] == "position", position
    seen.expect(*joins(frank, room))

    assert ws.wait_closed(timeout=EXPIRY_WAIT) == 4004

    seen.expect(*leaves(frank, position["conn_id"], "expired", room))


def test_only_the_events_in_webhook_events_are_sent(
    start_server: Any, receivers: Any, listeners: list[Any]
) -> None:
    receiver = receivers()
    server = start_server(
        settings=hook_settings(receiver, webhook_events="member_added,connection_closed")
    )
    api = ApiClient(server.base_url, SECRET)
    conn_id = api.connect("alice", ["r1", "r2"])
    open_ws(server, listeners, conn_id)
    assert api.disconnect(conn_id).json is True

    # connection_closed is made with the last events of the /disconnect: none could follow
    events = receiver.wait_for_events(lambda got: "connection_closed" in event_names(got))

    assert without_ids(events) == [
        ev("member_added", channel="r1", user="alice"),
        ev("member_added", channel="r2", user="alice"),
        ev("connection_closed", conn_id=conn_id, user="alice", reason="disconnect"),
    ]
    check_batches(receiver)


# ---------------------------------------------------------------------- a receiver in trouble


def test_events_made_while_the_receiver_is_down_all_arrive_in_order_once_it_is_up(
    start_server: Any, receivers: Any
) -> None:
    receiver = receivers(WebhookReceiver)
    server = start_server(settings=hook_settings(receiver, presence_grace=5, gc_conns_after=30))
    api = ApiClient(server.base_url, SECRET)
    zoe = api.connect("zoe", ["before"])
    assert api.disconnect(zoe).json is True
    expected = joins("zoe", "before") + leaves("zoe", zoe, "disconnect", "before")
    receiver.wait_for_events(lambda got: len(got) >= len(expected))

    receiver.stop()
    ann = api.connect("ann", ["room"])
    ben = api.connect("ben", ["room", "hall"])
    wait_for_retries(api, server, 1)
    assert api.disconnect(ann).json is True
    assert api.disconnect(ben).json is True
    wait_for_retries(api, server, 2)  # the events of both disconnects waited through a retry
    receiver.start()

    expected += [
        *joins("ann", "room"),
        ev("user_online", user="ben"),
        ev("channel_occupied", channel="hall"),
        ev("member_added", channel="hall", user="ben"),
        ev("member_added", channel="room", user="ben"),
        ev("member_removed", channel="room", user="ann"),
        ev("connection_closed", conn_id=ann, user="ann", reason="disconnect"),
        ev("user_offline", user="ann", reason="disconnect"),
        *leaves("ben", ben, "disconnect", "hall", "room"),
    ]
    events = receiver.wait_for_events(lambda got: len(unique_by_id(got)) >= len(expected))
    assert without_ids(unique_by_id(events)) == expected
    assert all(error.startswith("request error: ") for error, *_ in retries(server))
    check_batches(receiver, ids_unique=False)


def test_a_failing_then_hanging_receiver_is_retried_with_backoff_and_delivery_goes_on(
    start_server: Any, receivers: Any, listeners: list[Any]
) -> None:
    receiver = receivers()
    server = start_server(
        settings=hook_settings(receiver, webhook_timeout=1, presence_grace=5, gc_conns_after=30)
    )
    api = ApiClient(server.base_url, SECRET)
    watcher = open_ws(server, listeners, api.connect("watcher", ["room"]))
    before = receiver.wait_for_events(lambda got: len(got) >= 3)
    requests_before = len(receiver.batches)

    receiver.answer(500)
    open_ws(server, listeners, api.connect("alice", ["room"]))  # listened to: stays present
    receiver.wait_for(
        lambda: (
            len(receiver.batches) >= requests_before + 2
            and receiver.batches[requests_before + 1].status == 500
        )
    )
    receiver.hang()  # the third try is held until the sender's webhook_timeout ends it
    for n in range(5):  # meanwhile delivery, /ready and /connect go on as usual
        api.publish({"channel": "room", "user": "system", "message": {"text": f"m{n}"}})
        watcher.wait_for(has_text(f"m{n}"))
    assert http_request(f"{server.base_url}/ready").status == 200
    open_ws(server, listeners, api.connect("bob", ["room"]))
    lines = wait_for_retries(api, server, 3)
    receiver.answer(204)
    receiver.release()  # the held try may still be answered 204: the sender gave up on it
    receiver.wait_for(
        lambda: (
            len(receiver.batches) >= requests_before + 4
            and receiver.batches[requests_before + 3].status == 204
        )
    )

    expected = [
        ev("user_online", user="alice"),
        ev("member_added", channel="room", user="alice"),
        ev("user_online", user="bob"),
        ev("member_added", channel="room", user="bob"),
    ]
    events = receiver.wait_for_events(
        lambda got: len(unique_by_id(got)) >= len(before) + len(expected)
    )
    delivered = unique_by_id(events)[len(before) :]
    assert without_ids(delivered) == expected
    errors = [error for error, *_ in lines]
    assert errors == ["status 500", "status 500", "no complete answer within 1 s"], lines
    for number, (_, _, k, delay) in enumerate(lines, start=1):
        base = 2 ** (k - 1)
        assert k == number and base / 2 - 0.05 <= delay <= base + 0.05, lines
    # every try carried the oldest events with the same ids (a later try, more of them)
    tries = [b for b in receiver.batches[requests_before:] if b.events]
    assert len(tries) == len(lines) + 1
    for attempt in tries:
        assert attempt.events == delivered[: len(attempt.events)]
    assert tries[-1].events == delivered
    values = api.wait_until(
        lambda: (
            (m := metrics(api))["channelstream_webhook_events_sent_total"]
            == len(before) + len(expected)
            and m
        ),
        timeout=WAIT,
        what="the sent events counted",
    )
    assert values["channelstream_webhook_requests_failed_total"] == len(lines)
    check_batches(receiver, ids_unique=False)


def test_a_batch_failing_past_webhook_retry_for_is_dropped_counted_and_logged_once(
    start_server: Any, receivers: Any, listeners: list[Any]
) -> None:
    receiver = receivers()
    receiver.answer(500)
    server = start_server(settings=hook_settings(receiver, webhook_retry_for=2))
    api = ApiClient(server.base_url, SECRET)
    open_ws(server, listeners, api.connect("alice", ["lost"]))

    (line,) = api.wait_until(
        lambda: log_lines(server, "webhook: gave up on"), timeout=WAIT, what="the gave-up line"
    )
    assert "gave up on 3 events" in line and "ERROR" in line, line
    receiver.answer(204)
    open_ws(server, listeners, api.connect("bob", ["kept"]))

    events = receiver.wait_for_events(lambda got: len(got) >= 3)
    assert without_ids(events) == joins("bob", "kept")
    values = api.wait_until(
        lambda: (m := metrics(api))["channelstream_webhook_events_sent_total"] == 3 and m,
        timeout=WAIT,
        what="the sent events counted",
    )
    assert values["channelstream_webhook_events_dropped_total"] == 3
    assert values["channelstream_webhook_events_sent_total"] == 3
    assert values["channelstream_webhook_queue_length"] == 0
    assert len(log_lines(server, "webhook: gave up on")) == 1
    failed = [b for b in receiver.batches if b.status == 500]
    assert failed and all(without_ids(b.events) == joins("alice", "lost") for b in failed)
    check_batches(receiver, ids_unique=False)


def test_each_event_gets_its_own_webhook_retry_for_from_when_it_was_made(
    start_server: Any, receivers: Any, listeners: list[Any]
) -> None:
    """Events made while a batch is being retried join the head batch, but are given up on
    only once they are webhook_retry_for old themselves."""
    receiver = receivers()
    receiver.answer(500)
    server = start_server(settings=hook_settings(receiver, webhook_retry_for=6))
    api = ApiClient(server.base_url, SECRET)
    open_ws(server, listeners, api.connect("alice", ["early"]))
    wait_for_retries(api, server, 2)  # alice's events have waited a while
    open_ws(server, listeners, api.connect("bob", ["late"]))
    assert not log_lines(server, "webhook: gave up on"), "bob came too late to test this"

    (line,) = api.wait_until(
        lambda: log_lines(server, "webhook: gave up on"), timeout=WAIT, what="the gave-up line"
    )
    assert "gave up on 3 events" in line, line  # alice's only
    receiver.answer(204)
    events = receiver.wait_for_events(lambda got: len(got) >= 3)
    assert without_ids(unique_by_id(events)) == joins("bob", "late")


def test_a_full_queue_drops_new_events_and_logs_once_until_it_has_room_again(
    start_server: Any, receivers: Any, listeners: list[Any]
) -> None:
    receiver = receivers()
    receiver.stop()  # down from the start: connections refused
    server = start_server(settings=hook_settings(receiver, webhook_queue_max=5))
    api = ApiClient(server.base_url, SECRET)
    alice = api.connect("alice", ["a", "b"])  # 5 events: the queue is full
    open_ws(server, listeners, alice)

    rounds = 4
    for _ in range(rounds):  # 5 events each, all dropped
        bob = api.connect("bob", ["a"])
        assert api.disconnect(bob).json is True

    values = api.wait_until(
        lambda: (
            (m := metrics(api))["channelstream_webhook_events_overflowed_total"] == 5 * rounds and m
        ),
        timeout=WAIT,
        what="every overflowed event counted",
    )
    assert values["channelstream_webhook_queue_length"] <= 5
    assert values["channelstream_webhook_events_queued_total"] == 5
    assert len(log_lines(server, "webhook queue full")) == 1
    receiver.start()

    events = receiver.wait_for_events(lambda got: len(got) >= 5)
    assert without_ids(events) == joins("alice", "a", "b")
    (line,) = api.wait_until(
        lambda: log_lines(server, "webhook queue has room again"),
        timeout=WAIT,
        what="the has-room line",
    )
    assert f"{5 * rounds} events were dropped" in line
    carl = api.connect("carl", ["c"])  # room again: new events are sent
    open_ws(server, listeners, carl)
    events = receiver.wait_for_events(lambda got: len(got) >= 8)
    assert without_ids(events[5:]) == joins("carl", "c")
    assert len(log_lines(server, "webhook queue full")) == 1
    assert len(log_lines(server, "webhook queue has room again")) == 1
    check_batches(receiver, ids_unique=False)


def test_metrics_count_the_events_sent_and_time_the_requests(
    start_server: Any, receivers: Any, listeners: list[Any]
) -> None:
    receiver = receivers()
    server = start_server(settings=hook_settings(receiver))
    api = ApiClient(server.base_url, SECRET)
    for user in ("ann", "ben", "cid"):
        open_ws(server, listeners, api.connect(user, ["room", user]))
    assert api.disconnect(api.connect("dan", ["room"])).json is True
    expected = 5 + 4 + 4 + 2 + 3  # ann first in room, then ben, cid; dan joins and leaves

    receiver.wait_for_events(lambda got: len(got) >= expected)

    values: dict[str, float] = api.wait_until(
        lambda: (m := metrics(api))["channelstream_webhook_events_sent_total"] == expected and m,
        timeout=WAIT,
        what="the sent events counted",
    )
    delivered = unique_by_id(receiver.delivered_events())
    assert len(delivered) == expected == len(receiver.delivered_events())
    assert values["channelstream_webhook_events_queued_total"] == expected
    assert values["channelstream_webhook_sending"] == 1
    assert values["channelstream_webhook_queue_length"] == 0
    assert values["channelstream_webhook_requests_failed_total"] == 0
    assert values["channelstream_webhook_events_dropped_total"] == 0
    assert values["channelstream_webhook_events_overflowed_total"] == 0
    requests = len([b for b in receiver.batches if b.status == 204])
    assert values["channelstream_webhook_request_seconds_count"] == requests >= 1
    assert values['channelstream_webhook_request_seconds_bucket{le="+Inf"}'] == requests
    assert values["channelstream_webhook_request_seconds_sum"] > 0
    check_batches(receiver)
