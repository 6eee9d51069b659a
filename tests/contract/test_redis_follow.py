"""Following the log and snapshotting at scale (issue 16 item 4), on the Redis broker.

A node reads the log in batches and applies a batch in slices with pauses between them; it
reads the trim marker only when a trim may have passed its position; the leader encodes its
snapshots in a forked child. None of that may change what a node applies, or in what order.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from channelstream.broker import redis as redis_broker
from tests.contract.conftest import WAIT, BlockingRecorder, MakeBroker, wait_until

pytestmark = pytest.mark.parametrize("kind", ["redis"])


def test_a_follower_catching_up_a_backlog_applies_every_entry_in_order(
    make_broker: MakeBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More than two read batches behind, pausing after every entry: all of it, in order."""
    monkeypatch.setattr(redis_broker, "APPLY_SLICE_SECONDS", 0.0)
    stalled = BlockingRecorder("stall")
    a = make_broker("node-a")
    b = make_broker("node-b", recorder=stalled)
    try:
        stall = a.submit("stall")
        assert stalled.applying.wait(WAIT)  # b holds; the backlog grows behind it
        backlog = [a.submit(n=n) for n in range(2 * redis_broker.READ_BATCH + 500)]
    finally:
        stalled.release.set()

    assert b.recorder.wait_for_ids([backlog[-1].id], timeout=60)
    expected = [stall.id] + [c.id for c in backlog]
    assert b.recorder.ids == expected
    assert a.recorder.wait_for_ids([backlog[-1].id])
    assert a.recorder.ids == expected
    assert b.broker.wait_caught_up(WAIT)


def test_a_follower_whose_position_was_trimmed_restores_the_snapshot(
    make_broker: MakeBroker,
) -> None:
    """A real gap: entries after the follower's position are trimmed while it is held up. It
    must start from the snapshot, never apply what follows the gap as if nothing were lost."""
    stalled = BlockingRecorder("stall")
    a = make_broker("node-a")
    b = make_broker("node-b", recorder=stalled)
    try:
        stall = a.submit("stall")
        assert stalled.applying.wait(WAIT)
        for n in range(3):
            a.submit(n=n)
            assert a.broker.wait_caught_up(WAIT)
            a.broker.save_snapshot({"after": n})  # the third trims the entry n=0
    finally:
        stalled.release.set()
    last = a.submit(n=3)

    assert b.recorder.wait_for_ids([last.id])
    after_stall = b.recorder.events[b.recorder.events.index(("apply", stall)) + 1 :]
    assert after_stall == [("restore", {"after": 2}), ("apply", last)]


def test_a_snapshot_encoded_in_a_forked_child_is_what_a_late_node_restores(
    make_broker: MakeBroker, redis_client: Any
) -> None:
    """Paired with the position when it was asked for, though stored later: commands
    submitted meanwhile are applied after the restore, not lost and not applied twice."""
    a = make_broker("node-a")
    before = [a.submit(n=n) for n in range(3)]
    assert a.broker.wait_caught_up(WAIT)
    snapshot = {"seq": 3, "channels": [{"name": "Zoë's room", "frames": [1, 2.5, None, True]}]}

    assert a.broker.save_snapshot_of(lambda: snapshot)  # type: ignore[attr-defined]
    after = [a.submit(n=n) for n in range(3, 6)]
    assert wait_until(lambda: redis_client.exists(a.broker.snapshot_key))  # type: ignore[attr-defined]
    b = make_broker("node-b")

    assert b.recorder.wait_for_ids([c.id for c in after])
    assert b.recorder.events == [("restore", snapshot)] + [("apply", c) for c in after]
    assert not {c.id for c in before} & set(b.recorder.ids)


def test_one_forked_snapshot_at_a_time_and_a_failed_one_stores_nothing(
    make_broker: MakeBroker, redis_client: Any
) -> None:
    a = make_broker("node-a")
    broker: Any = a.broker
    gate_read, gate_write = os.pipe()  # the child waits on it: still encoding until written
    try:

        def held() -> dict[str, Any]:
            os.read(gate_read, 1)
            return {"held": True}

        def failing() -> dict[str, Any]:
            raise RuntimeError("cannot walk the state")

        assert broker.save_snapshot_of(failing)
        assert wait_until(lambda: not broker._snapshotting)
        assert not redis_client.exists(broker.snapshot_key)

        assert broker.save_snapshot_of(held)
        assert broker.save_snapshot_of(lambda: {"second": True}) is False  # the first runs
        os.write(gate_write, b"x")
        assert wait_until(lambda: redis_client.exists(broker.snapshot_key))
        assert wait_until(lambda: not broker._snapshotting)
    finally:
        os.close(gate_read)
        os.close(gate_write)

    b = make_broker("node-b")
    assert b.broker.wait_caught_up(WAIT)
    assert b.recorder.events == [("restore", {"held": True})]
