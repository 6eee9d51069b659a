"""Small helpers shared by the multi-node tests."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from tests.e2e.apiclient import WsListener, http_request

Predicate = Callable[[dict[str, Any]], bool]


def unique(base: str) -> str:
    """A name no other test uses: unique("room") -> "room-1a2b3c4d"."""
    return f"{base}-{uuid.uuid4().hex[:8]}"


def text(channel: str, value: str, user: str = "sender") -> dict[str, Any]:
    return {"channel": channel, "user": user, "message": {"text": value}}


def numbered(channel: str, number: int, user: str = "sender") -> dict[str, Any]:
    return {"channel": channel, "user": user, "message": {"n": number}}


def marker(channel: str, name: str = "end") -> dict[str, Any]:
    return {"channel": channel, "user": "marker", "message": {"marker": name}}


def is_marker(channel: str, name: str = "end") -> Predicate:
    return lambda m: m.get("channel") == channel and m.get("message") == {"marker": name}


def numbers_in(messages: Iterable[dict[str, Any]], channel: str) -> list[int]:
    """The `n` of every numbered message of `channel`, in the order received."""
    return [
        m["message"]["n"]
        for m in messages
        if m.get("type") == "message" and m.get("channel") == channel and "n" in m["message"]
    ]


def texts_in(messages: Iterable[dict[str, Any]], channel: str | None = None) -> list[str]:
    return [
        m["message"]["text"]
        for m in messages
        if m.get("type") == "message"
        and (channel is None or m.get("channel") == channel)
        and "text" in (m.get("message") or {})
    ]


def presence_of(messages: Iterable[dict[str, Any]], user: str) -> list[str]:
    """The presence actions ("joined", "parted") received for `user`, in order."""
    return [
        m["message"]["action"]
        for m in messages
        if m.get("type") == "presence" and m.get("user") == user
    ]


def wait_for_each(ws: WsListener, predicates: Iterable[Predicate], timeout: float) -> None:
    """Return once a message matching each predicate has arrived (in any order)."""
    deadline = time.monotonic() + timeout
    for predicate in predicates:
        if any(predicate(m) for m in ws.messages):
            continue
        ws.wait_for(predicate, timeout=max(0.01, deadline - time.monotonic()))


def poll(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Call `condition` until it returns something truthy (returned); fail after `timeout` s
    with what the last call returned. For state that has no event to wait on."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)  # paces the polling of an endpoint; not a wait for the event


def ready_status(base_url: str) -> int:
    return http_request(f"{base_url}/ready", timeout=5).status
