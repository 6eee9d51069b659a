"""The in-process broker: one node, commands applied the moment they are submitted.

Single-node only: two processes with a MemoryBroker share nothing, admin sessions included
(a restart signs the admin out).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from channelstream.core.commands import Command

MAX_ADMIN_SESSIONS = 1000


class AdminSessionTable:
    """Open admin sessions in process memory, bounded: each ends `ttl` seconds after it was
    opened, and beyond `max_sessions` the oldest is closed first (sign-ins cannot grow memory
    without end)."""

    def __init__(
        self, max_sessions: int = MAX_ADMIN_SESSIONS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_sessions = max_sessions
        self.clock = clock
        self._ends: OrderedDict[str, float] = OrderedDict()  # session id -> end, oldest first

    def __len__(self) -> int:
        self._expire()
        return len(self._ends)

    def open(self, session_id: str, ttl: float) -> None:
        self._expire()
        self._ends.pop(session_id, None)
        self._ends[session_id] = self.clock() + ttl
        while len(self._ends) > self.max_sessions:
            self._ends.popitem(last=False)

    def is_open(self, session_id: str) -> bool:
        self._expire()
        end = self._ends.get(session_id)
        return end is not None and self.clock() < end

    def close(self, session_id: str) -> bool:
        end = self._ends.pop(session_id, None)
        return end is not None and self.clock() < end

    def _expire(self) -> None:
        """Drop ended sessions from the oldest on, up to the first still open (with mixed
        ttls a later one may end sooner: `is_open` checks its own end)."""
        now = self.clock()
        while self._ends and next(iter(self._ends.values())) <= now:
            self._ends.popitem(last=False)


class MemoryBroker:
    keeps_snapshots = False

    def __init__(self, node_id: str, admin_sessions: AdminSessionTable | None = None) -> None:
        self.node_id = node_id
        self._apply: Callable[[Command], None] | None = None
        self.commands_applied = 0
        self.admin_sessions = AdminSessionTable() if admin_sessions is None else admin_sessions

    def start(self, apply: Callable[[Command], None], restore: Callable[[Any], None]) -> None:
        self._apply = apply

    def stop(self) -> None:
        self._apply = None

    def submit(self, command: Command) -> None:
        if self._apply is None:
            raise RuntimeError("MemoryBroker.submit before start")
        self.commands_applied += 1
        self._apply(command)

    @property
    def available(self) -> bool:
        return True

    def wait_caught_up(self, timeout: float) -> bool:
        return True

    def is_leader(self) -> bool:
        return True

    def live_nodes(self, candidates: set[str]) -> set[str]:
        return {self.node_id} & candidates

    def has_snapshot(self) -> bool:
        return True  # nobody ever needs one

    def save_snapshot(self, snapshot: Any) -> None:
        pass  # nothing outlives the process, and nobody joins late

    def save_snapshot_of(self, take: Callable[[], Any]) -> bool:
        return True  # as save_snapshot: nothing to keep

    def open_admin_session(self, session_id: str, ttl: float) -> None:
        self.admin_sessions.open(session_id, ttl)

    def admin_session_is_open(self, session_id: str) -> bool:
        return self.admin_sessions.is_open(session_id)

    def close_admin_session(self, session_id: str) -> bool:
        return self.admin_sessions.close(session_id)

    def stats(self) -> dict[str, Any]:
        return {"broker": "memory", "commands_applied": self.commands_applied}
