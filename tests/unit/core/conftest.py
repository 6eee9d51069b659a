"""Fixtures for the sans-I/O core tests: a fresh State, a fixed clock, message builders.

Time is injected: every test uses T0 (naive UTC) plus timedeltas, never the wall clock.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from channelstream.core.state import State

T0 = datetime(2026, 1, 1)


@pytest.fixture
def now() -> datetime:
    return T0


@pytest.fixture
def state() -> State:
    return State()


@pytest.fixture
def message() -> Callable[..., dict[str, Any]]:
    """Build a /message item as the view hands it to the core (defaults filled in)."""
    counter = itertools.count(1)

    def make(channel: str | None = None, user: str = "sender", **fields: Any) -> dict[str, Any]:
        n = next(counter)
        item: dict[str, Any] = {
            "uuid": f"uuid-{n}",
            "user": user,
            "timestamp": T0 + timedelta(milliseconds=n),
            "channel": channel,
            "message": {"text": f"message {n}"},
            "pm_users": [],
            "exclude_users": [],
            "no_history": False,
        }
        item.update(fields)
        return item

    return make
