"""Property test of positions and recovery: never a silent hole.

A hypothesis state machine follows one browser of "alice" in channels x and y through any
interleaving of: messages to the channels and to her (some she may not see), catchup_size,
store_frames and history_ttl changes, her listener attaching and detaching, the clock moving
with garbage collection (presence_grace, gc_conns_after, channels and users collected),
connecting anew with `recover` once her connection is gone, and the state starting empty
(a memory broker restart: a new epoch). Commands go through `apply_command`.

What the browser receives is checked against every frame sent that she may see (an
oracle kept from the deliveries): whenever she listens, each such frame was received exactly
once, in order per channel, or it lies inside a gap she was told of: after a `gap` frame's
`seq` and before the next frame of that channel she received (or, across an epoch, any frame
of the old epoch she did not get, once a gap of the new epoch came for that channel).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from channelstream.core.commands import (
    Attach,
    CollectGarbage,
    Command,
    Connect,
    Detach,
    Operation,
    Publish,
    SetChannelConfigs,
    apply_command,
)
from channelstream.core.errors import UnknownConnection
from channelstream.core.model import PublishItem
from channelstream.core.state import Catchup, State

T0 = datetime(2026, 1, 1)
CHANNELS = ("x", "y")
GRACE, CONNS_AFTER, USERS_AFTER, CHANNELS_AFTER = 3.0, 10.0, 40.0, 20.0
DIRECT = None  # the "channel" of direct messages, as gap frames name it

audiences = st.sampled_from(["all", "all", "all", "excluded", "pm_alice", "pm_bob"])


@dataclass
class Gap:
    epoch: str
    channel: str | None
    seq: int
    upper: int | None = None  # seq of the next frame of the channel received after it


@dataclass
class Browser:
    """What alice's page holds: its connection, its listener and every frame it got."""

    conn_id: str | None = None
    attached: bool = False
    served_up_to: int = 0
    epoch: str = ""
    position: int = 0  # greatest seq received in `epoch`
    received: list[tuple[str, str | None, int]] = field(default_factory=list)  # epoch, ch, seq
    gaps: list[Gap] = field(default_factory=list)


class RecoveryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.state = State()
        self.now = T0
        self.browser = Browser()
        self.oracle: list[tuple[str, str | None, int]] = []  # what alice may see
        self.counter = itertools.count(1)
        self.conn_numbers = itertools.count(1)

    # ------------------------------------------------------------------ plumbing

    def apply(self, operation: Operation[Any]) -> Any:
        applied = apply_command(self.state, Command(operation, self.now, "n1"))
        for delivery in applied.deliveries:
            frame = delivery.frame
            if frame["type"] == "message" and self._for_alice(frame, delivery.conn_ids):
                self.oracle.append((self.state.epoch, frame["channel"], delivery.seq))
            if self.browser.attached and self.browser.conn_id in delivery.conn_ids:
                self._receive(frame)
                self.browser.served_up_to = max(self.browser.served_up_to, delivery.seq)
        if applied.error is not None:
            raise applied.error
        return applied.result

    def _for_alice(self, frame: dict[str, Any], conn_ids: tuple[str, ...]) -> bool:
        """Whether alice may see it: recorded on the published item (see `publish`)."""
        return bool(frame.get("message", {}).get("for_alice"))

    def _receive(self, frame: dict[str, Any]) -> None:
        browser = self.browser
        channel = frame["channel"]
        if frame["type"] == "gap":
            browser.gaps.append(Gap(self.state.epoch, channel, frame["seq"]))
            return
        if frame["type"] != "message":
            return
        for gap in browser.gaps:
            if gap.epoch == self.state.epoch and gap.channel == channel and gap.upper is None:
                gap.upper = frame["seq"]
        browser.received.append((self.state.epoch, channel, frame["seq"]))
        browser.epoch = self.state.epoch
        browser.position = max(browser.position, frame["seq"])

    def _start_listening(self, catchup: Catchup) -> None:
        self.browser.attached = True
        self.browser.served_up_to = catchup.seq
        for frame in catchup.frames:
            self._receive(frame)
        for gap in self.browser.gaps:  # a gap with nothing after it covers up to now
            if gap.upper is None and gap.epoch == self.state.epoch:
                gap.upper = catchup.seq + 1

    def _connect(self, recover: bool) -> None:
        conn_id = f"c{next(self.conn_numbers)}"
        position = {"epoch": self.browser.epoch, "seq": self.browser.position}
        self.apply(
            Connect(
                username="alice",
                conn_id=conn_id,
                channels=CHANNELS,
                recover=position if recover else None,
            )
        )
        self.browser.conn_id = conn_id
        if self.browser.epoch != self.state.epoch:  # as the JS client reads a connect answer:
            self.browser.epoch = self.state.epoch  # a new server state, whose seqs start anew
            self.browser.position = 0
        self._start_listening(self.apply(Attach(conn_id=conn_id, node="n1")))

    # ------------------------------------------------------------------ rules

    @initialize()
    def start(self) -> None:
        self.apply(Connect(username="bob", conn_id="bob1", channels=CHANNELS))
        self._connect(recover=False)
        self.browser.epoch = self.state.epoch

    @rule(
        to=st.sampled_from([*CHANNELS, DIRECT]),
        audience=audiences,
        count=st.integers(1, 4),
    )
    def publish(self, to: str | None, audience: str, count: int) -> None:
        items = []
        for _ in range(count):
            n = next(self.counter)
            pm = {"pm_alice": ["alice"], "pm_bob": ["bob"]}.get(audience, [])
            if to is DIRECT and not pm:
                pm = ["alice"]
            for_alice = audience != "excluded" and (not pm or "alice" in pm)
            item = PublishItem(
                channel=to,
                pm_users=pm,
                exclude_users=["alice"] if audience == "excluded" else [],
                no_history=False,
                user="bob",
                message={"n": n, "for_alice": for_alice},
                uuid=f"m{n}",
                timestamp=self.now.isoformat(),
            )
            items.append(item)
        self.apply(Publish(messages=tuple(items)))

    @rule(
        channel=st.sampled_from(CHANNELS),
        catchup_size=st.integers(0, 4),
        store_frames=st.booleans(),
        history_ttl=st.sampled_from([0, 0, 2, 5]),
    )
    def configure(
        self, channel: str, catchup_size: int, store_frames: bool, history_ttl: int
    ) -> None:
        changes = {
            "catchup_size": catchup_size,
            "store_frames": store_frames,
            "history_ttl": history_ttl,
        }
        self.apply(SetChannelConfigs(configs={channel: changes}))

    @precondition(lambda self: self.browser.attached)
    @rule()
    def detach(self) -> None:
        assert self.browser.conn_id is not None
        self.browser.attached = False
        self.apply(
            Detach(conn_id=self.browser.conn_id, served_up_to=self.browser.served_up_to, node="n1")
        )

    @precondition(lambda self: not self.browser.attached)
    @rule()
    def come_back(self) -> None:
        """Re-attach with the same conn_id; once it is gone, connect anew with recover."""
        assert self.browser.conn_id is not None
        try:
            catchup = self.apply(Attach(conn_id=self.browser.conn_id, node="n1"))
        except UnknownConnection:
            self._connect(recover=True)
        else:
            self._start_listening(catchup)

    @rule(seconds=st.sampled_from([1, 2, 4, 11, 25, 50]))
    def time_passes(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)
        self.apply(
            CollectGarbage(
                connections_after=CONNS_AFTER,
                users_after=USERS_AFTER,
                channels_after=CHANNELS_AFTER,
                presence_grace=GRACE,
            )
        )

    @precondition(lambda self: not self.browser.attached)
    @rule()
    def bob_reconnects(self) -> None:
        """Keeps (or makes again) the channels alive while alice is away."""
        self.apply(Connect(username="bob", conn_id=f"bob{next(self.counter)}", channels=CHANNELS))

    @precondition(lambda self: not self.browser.attached)
    @rule()
    def state_starts_empty(self) -> None:
        """A memory broker restart: every connection is gone, a new epoch begins."""
        old_epoch = self.state.epoch
        self.state = State()
        self.apply(Connect(username="bob", conn_id="bob1", channels=CHANNELS))
        assert self.state.epoch != old_epoch

    # ------------------------------------------------------------------ the property

    @invariant()
    def nothing_missing_silently(self) -> None:
        browser = self.browser
        if not browser.attached:
            return
        received = browser.received
        assert len(received) == len(set(received)), "a frame was received twice"
        for channel in (*CHANNELS, DIRECT):
            for epoch in {e for e, _, _ in received}:
                seqs = [s for e, c, s in received if c == channel and e == epoch]
                assert seqs == sorted(seqs), f"out of order on {channel}"
        got = set(received)
        for epoch, channel, seq in self.oracle:
            if (epoch, channel, seq) in got:
                continue
            assert self._in_a_gap(epoch, channel, seq), (
                f"silent hole: {channel} seq {seq} (epoch {epoch[:8]}) never received, no gap"
            )

    def _in_a_gap(self, epoch: str, channel: str | None, seq: int) -> bool:
        for gap in self.browser.gaps:
            if gap.channel != channel:
                continue
            if gap.epoch != epoch and self._epoch_index(gap.epoch) > self._epoch_index(epoch):
                return True
            if gap.epoch == epoch and gap.seq < seq and (gap.upper is None or seq < gap.upper):
                return True
        return False

    def _epoch_index(self, epoch: str) -> int:
        order = list(dict.fromkeys(e for e, _, _ in self.oracle))
        order += [g.epoch for g in self.browser.gaps if g.epoch not in order]
        return order.index(epoch) if epoch in order else len(order)


RecoveryMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=40, deadline=None
)
TestRecovery = RecoveryMachine.TestCase
