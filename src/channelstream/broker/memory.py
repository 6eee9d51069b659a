"""The in-process broker: one node, commands applied the moment they are submitted.

Single-node only: two processes with a MemoryBroker share nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from channelstream.core.commands import Command


class MemoryBroker:
    keeps_snapshots = False

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self._apply: Callable[[Command], None] | None = None
        self.commands_applied = 0

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

    def stats(self) -> dict[str, Any]:
        return {"broker": "memory", "commands_applied": self.commands_applied}
