"""A snapshot encoded in a forked child (`channelstream.broker.forked`), as the leader takes it.

The child has the state as it was at the fork, whatever the parent does next; what it sends
back restores to a state equal to the original, as the in-process round trip does
(`tests/unit/core/test_snapshot.py`).
"""

from __future__ import annotations

import json
import os

from channelstream import encoding
from channelstream.broker.forked import fork_encoder, read_encoded
from channelstream.core.commands import apply_command
from channelstream.core.snapshot import state_from_data, state_to_data
from channelstream.core.state import State
from tests.unit.core.test_snapshot import (
    Commands,
    apply_all,
    build_state,
    describe,
    further_commands,
    message,
    plain,
    round_trip,
)


def encoded(state: State) -> bytes:
    return encoding.dumps(state_to_data(state)).encode()


def test_a_state_encoded_in_a_child_restores_to_an_equal_state() -> None:
    original = build_state()

    payload = read_encoded(fork_encoder(lambda: encoded(original)))

    assert payload is not None
    restored = state_from_data(json.loads(payload), State())
    assert plain(state_to_data(restored)) == plain(state_to_data(original))
    assert plain(state_to_data(restored)) == plain(state_to_data(round_trip(original)))
    commands = list(further_commands())  # and it goes on as the original does
    assert describe(apply_all(restored, commands)) == describe(apply_all(original, commands))


def test_the_child_encodes_the_state_as_it_was_at_the_fork() -> None:
    state = build_state()
    at_fork = plain(state_to_data(state))

    child = fork_encoder(lambda: encoded(state))
    cmd = Commands("later")  # the parent goes on changing its state meanwhile
    applied = apply_command(state, cmd("publish", 50, messages=[message(900, "room")]))
    assert applied.error is None
    payload = read_encoded(child)

    assert payload is not None
    assert json.loads(payload) == at_fork
    assert plain(state_to_data(state)) != at_fork


def test_a_payload_larger_than_the_pipe_comes_back_whole() -> None:
    large = os.urandom(3 << 20).hex().encode()  # 6 MiB: many pipe buffers

    assert read_encoded(fork_encoder(lambda: large)) == large


def test_a_failing_child_gives_nothing() -> None:
    def failing() -> bytes:
        raise RuntimeError("cannot walk the state")

    assert read_encoded(fork_encoder(failing)) is None
