"""Refusing sign-ins from an address that keeps failing (admin panel brute force).

After the n-th failure in a row from one address, its next attempt is not taken before
`last_failure + delay(n)`: an attempt that comes earlier is refused at once (the view answers
429 with Retry-After) without its credentials being checked. Nothing sleeps or queues: a
refusal costs no more than a success, so concurrent guesses cannot make the real admin wait
behind them, and a guesser gets one try per window. The first `free_failures` failures cost
nothing (a typo is not an attack); then the window is `base_delay` doubling up to `max_delay`.
A success clears the address's count.

The check and the record happen in the view with no I/O between them, so greenlets need no
lock. Memory is bounded: only addresses with failures are tracked, at most `max_addresses`
of them (the least recently failed is forgotten first), each forgotten `forget_after` seconds
after its last failure.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Address:
    failures: int
    last_failure: float


class FailureThrottle:
    def __init__(
        self,
        *,
        base_delay: float = 0.5,
        max_delay: float = 8.0,
        free_failures: int = 1,
        forget_after: float = 900.0,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.free_failures = free_failures
        self.forget_after = forget_after
        self.max_addresses = max_addresses
        self.clock = clock
        self._addresses: OrderedDict[str, _Address] = OrderedDict()

    def delay(self, failures: int) -> float:
        """Seconds an address waits after its `failures`-th failure in a row."""
        counted = failures - self.free_failures
        if counted <= 0:
            return 0.0
        return float(min(self.max_delay, self.base_delay * 2 ** min(counted - 1, 32)))

    def failures(self, address: str) -> int:
        entry = self._addresses.get(address)
        return entry.failures if entry else 0

    def __len__(self) -> int:
        return len(self._addresses)

    def retry_after(self, address: str) -> float:
        """Seconds before `address` may try again (0.0: now)."""
        self._forget_stale()
        entry = self._addresses.get(address)
        if entry is None:
            return 0.0
        return max(0.0, entry.last_failure + self.delay(entry.failures) - self.clock())

    def failed(self, address: str) -> None:
        """Record a failed sign-in from `address`."""
        self._forget_stale()
        entry = self._addresses.pop(address, None) or _Address(failures=0, last_failure=0.0)
        entry.failures += 1
        entry.last_failure = self.clock()
        self._addresses[address] = entry  # the most recent last
        while len(self._addresses) > self.max_addresses:
            self._addresses.popitem(last=False)

    def succeeded(self, address: str) -> None:
        """A successful sign-in from `address` clears its count."""
        self._addresses.pop(address, None)

    def _forget_stale(self) -> None:
        """Drop addresses quiet for `forget_after`, oldest first (the dict is in failure
        order)."""
        now = self.clock()
        while self._addresses:
            oldest = next(iter(self._addresses.values()))
            if now - oldest.last_failure < self.forget_after:
                break
            self._addresses.popitem(last=False)
