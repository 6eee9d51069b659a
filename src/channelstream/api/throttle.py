"""Slowing down repeated failed sign-ins from one address (admin panel brute force).

Attempts from one address are taken one at a time. After the n-th failure in a row the
failed answer waits `base_delay * 2**(n-1)` seconds, at most `max_delay`, so guessing from
one address gets slow quickly while a person who mistyped waits half a second. The wait is a
`gevent.sleep`: other requests, and sign-ins from other addresses, go on meanwhile. A success
clears the address's count.

Memory is bounded: at most `max_addresses` addresses are tracked (the least recently seen
is forgotten first), and an address is forgotten `forget_after` seconds after its last failure.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import gevent
from gevent.lock import Semaphore


@dataclass
class _Address:
    failures: int = 0
    last_failure: float = 0.0
    lock: Semaphore = field(default_factory=Semaphore)


class FailureThrottle:
    def __init__(
        self,
        *,
        base_delay: float = 0.5,
        max_delay: float = 8.0,
        forget_after: float = 900.0,
        max_addresses: int = 10_000,
        sleep: Callable[[float], object] = gevent.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.forget_after = forget_after
        self.max_addresses = max_addresses
        self.sleep = sleep
        self.clock = clock
        self._addresses: OrderedDict[str, _Address] = OrderedDict()

    def delay(self, failures: int) -> float:
        """Seconds a failed attempt waits when it is the `failures`-th in a row."""
        if failures <= 0:
            return 0.0
        return float(min(self.max_delay, self.base_delay * 2 ** min(failures - 1, 32)))

    def failures(self, address: str) -> int:
        entry = self._addresses.get(address)
        return entry.failures if entry else 0

    def __len__(self) -> int:
        return len(self._addresses)

    def attempt(self, address: str, check: Callable[[], bool]) -> bool:
        """Run `check` (True: the credentials are right) for a sign-in from `address`,
        slowing the answer down if it failed."""
        entry = self._entry(address)
        with entry.lock:
            if check():
                if self._addresses.get(address) is entry:
                    del self._addresses[address]
                return True
            entry.failures += 1
            entry.last_failure = self.clock()
            self.sleep(self.delay(entry.failures))
            return False

    def _entry(self, address: str) -> _Address:
        now = self.clock()
        while self._addresses:  # forget the stale ones, oldest first
            oldest = next(iter(self._addresses.values()))
            if now - oldest.last_failure < self.forget_after or oldest.lock.locked():
                break
            self._addresses.popitem(last=False)
        entry = self._addresses.get(address)
        if entry is None:
            entry = self._addresses[address] = _Address(last_failure=now)
            while len(self._addresses) > self.max_addresses:
                self._addresses.popitem(last=False)
        else:
            self._addresses.move_to_end(address)
        return entry
