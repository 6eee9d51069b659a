"""The sign-in throttle: growing delays per address, bounded memory, no blocking of others."""

from __future__ import annotations

import time

import gevent
import pytest

from channelstream.api.throttle import FailureThrottle


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def throttle(sleeps: list[float], clock: FakeClock) -> FailureThrottle:
    return FailureThrottle(sleep=sleeps.append, clock=clock, max_addresses=3, forget_after=60)


def fail(throttle: FailureThrottle, address: str = "a", times: int = 1) -> None:
    for _ in range(times):
        assert throttle.attempt(address, lambda: False) is False


def test_each_failure_in_a_row_waits_twice_as_long_up_to_the_cap(
    throttle: FailureThrottle, sleeps: list[float]
) -> None:
    fail(throttle, times=7)

    assert sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert throttle.failures("a") == 7


def test_a_success_answers_at_once_and_clears_the_count(
    throttle: FailureThrottle, sleeps: list[float]
) -> None:
    fail(throttle, times=2)

    assert throttle.attempt("a", lambda: True) is True
    assert sleeps == [0.5, 1.0]
    assert throttle.failures("a") == 0
    fail(throttle)
    assert sleeps[-1] == 0.5


def test_addresses_are_counted_apart(throttle: FailureThrottle, sleeps: list[float]) -> None:
    fail(throttle, "a", times=3)
    fail(throttle, "b")

    assert sleeps == [0.5, 1.0, 2.0, 0.5]


def test_an_address_is_forgotten_after_a_quiet_while(
    throttle: FailureThrottle, sleeps: list[float], clock: FakeClock
) -> None:
    fail(throttle, "a", times=3)
    clock.now += 61

    fail(throttle, "b")

    assert throttle.failures("a") == 0
    fail(throttle, "a")
    assert sleeps[-1] == 0.5


def test_memory_is_bounded_by_forgetting_the_least_recent_address(
    throttle: FailureThrottle,
) -> None:
    for address in ("a", "b", "c", "d", "e"):
        fail(throttle, address)

    assert len(throttle) == 3
    assert throttle.failures("a") == 0 and throttle.failures("e") == 1


def test_many_addresses_never_grow_memory_past_the_bound() -> None:
    throttle = FailureThrottle(sleep=lambda _: None, max_addresses=100)

    for n in range(5000):
        throttle.attempt(f"10.0.{n // 256}.{n % 256}", lambda: False)

    assert len(throttle) == 100


def test_attempts_from_one_address_wait_in_turn_while_others_go_on() -> None:
    """Real gevent sleeps (50 ms): a second failure from the same address waits for the
    first; a sign-in from another address is answered meanwhile."""
    throttle = FailureThrottle(base_delay=0.05)
    finished: dict[str, float] = {}
    start = time.monotonic()

    def attempt(name: str, address: str, ok: bool) -> None:
        throttle.attempt(address, lambda: ok)
        finished[name] = time.monotonic() - start

    greenlets = [
        gevent.spawn(attempt, "first", "a", False),
        gevent.spawn(attempt, "second", "a", False),
        gevent.spawn(attempt, "other", "b", True),
    ]
    gevent.joinall(greenlets, timeout=5, raise_error=True)

    assert finished["other"] < finished["first"] < finished["second"]
    assert finished["first"] >= 0.045
    assert finished["second"] >= 0.145  # its own 100 ms after the first's 50 ms
