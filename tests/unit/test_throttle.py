"""The sign-in throttle: a growing back-off window per address, refusals that never wait,
bounded memory."""

from __future__ import annotations

import gevent
import pytest

from channelstream.api.throttle import FailureThrottle


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def throttle(clock: FakeClock) -> FailureThrottle:
    return FailureThrottle(clock=clock, max_addresses=3, forget_after=60)


def fail(throttle: FailureThrottle, address: str = "a", times: int = 1) -> None:
    for _ in range(times):
        throttle.failed(address)


def test_the_window_after_each_failure_doubles_up_to_the_cap_the_first_is_free(
    throttle: FailureThrottle,
) -> None:
    windows = []
    for _ in range(8):
        fail(throttle)
        windows.append(throttle.retry_after("a"))

    assert windows == [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert throttle.failures("a") == 8


def test_the_window_shrinks_as_time_passes_and_then_the_address_may_try(
    throttle: FailureThrottle, clock: FakeClock
) -> None:
    fail(throttle, times=4)  # a 2 s window

    clock.now += 1.5
    assert throttle.retry_after("a") == pytest.approx(0.5)
    clock.now += 0.5
    assert throttle.retry_after("a") == 0.0


def test_a_success_clears_the_count(throttle: FailureThrottle) -> None:
    fail(throttle, times=3)

    throttle.succeeded("a")

    assert throttle.failures("a") == 0 and throttle.retry_after("a") == 0.0
    fail(throttle)
    assert throttle.retry_after("a") == 0.0, "counting starts over: the first is free again"


def test_addresses_are_counted_apart(throttle: FailureThrottle) -> None:
    fail(throttle, "a", times=3)
    fail(throttle, "b")

    assert throttle.retry_after("a") == 1.0
    assert throttle.retry_after("b") == 0.0
    assert throttle.retry_after("c") == 0.0


def test_an_address_is_forgotten_after_a_quiet_while(
    throttle: FailureThrottle, clock: FakeClock
) -> None:
    fail(throttle, "a", times=3)
    clock.now += 61

    fail(throttle, "b")

    assert throttle.failures("a") == 0
    assert len(throttle) == 1


def test_memory_is_bounded_by_forgetting_the_least_recently_failed_address(
    throttle: FailureThrottle,
) -> None:
    for address in ("a", "b", "c", "a", "d", "e"):
        fail(throttle, address)

    assert len(throttle) == 3
    assert throttle.failures("b") == 0 and throttle.failures("c") == 0
    assert throttle.failures("a") == 2 and throttle.failures("e") == 1


def test_many_addresses_never_grow_memory_past_the_bound() -> None:
    throttle = FailureThrottle(max_addresses=100)

    for n in range(5000):
        throttle.failed(f"10.0.{n // 256}.{n % 256}")

    assert len(throttle) == 100


def test_asking_tracks_nothing(throttle: FailureThrottle) -> None:
    for n in range(50):
        assert throttle.retry_after(f"192.0.2.{n}") == 0.0

    assert len(throttle) == 0


def test_no_greenlet_ever_waits_on_the_throttle() -> None:
    """Fifty greenlets check and record at once, on the real clock: every one of them is
    finished before the spawning greenlet yields a second time (nothing sleeps, nothing
    queues on a lock), and all but the free first failure see a window."""
    throttle = FailureThrottle()
    windows: list[float] = []

    def attempt() -> None:
        windows.append(throttle.retry_after("a"))
        throttle.failed("a")

    greenlets = [gevent.spawn(attempt) for _ in range(50)]
    gevent.sleep(0)  # one switch: each greenlet runs to its end in turn

    assert all(greenlet.dead for greenlet in greenlets)
    assert windows[0] == 0.0 and windows[1] == 0.0  # no failure yet; then the free one
    assert all(window > 0 for window in windows[2:])
