"""Property-based tests of the sans-I/O core: random operation sequences keep its invariants.

A hypothesis state machine applies random `Command`s (connect, subscribe, unsubscribe,
publish, attach/detach, keep_polling, forget_node, disconnect, set_user_state, set_channel_configs,
collect_garbage under an advancing injected clock) through `apply_command` to two fresh
States over a small universe of users, channels, conn_ids and nodes. Beside the States it
keeps a plain model of the connections (owner, channels, listeners per node, last activity),
and after every step checks:

- membership: `channel.members` is exactly the users with a connection in the channel, each
  with exactly those connections; users, connections and channels reference each other
  consistently; a disconnected or collected conn_id is referenced nowhere (F17);
- presence: one "joined"/"parted" per membership change of a notify_presence channel, never to
  the user themself, alternating per (channel, user);
- history: at most `history_size` entries, none when it is 0 (F1), none private (F4);
- routing: channel messages, direct messages and user_state_change reach exactly the
  connections reference §3.3/§3.5 names; nothing goes to a missing channel; catchup on attach
  replays only what the connection's user may see;
- listeners: `listeners == sum(listeners_by_node)`, never negative; GC collects exactly the
  idle connections without listeners (F7, F8);
- replication: both States end every step with equal data and produced equal results;
- webhooks: the step's member_added/member_removed events are exactly its membership changes
  (so, on notify_presence channels, exactly its joined/parted frames); replaying every event
  so far gives the members, the occupied channels and the online users the State has; a
  connection_closed for each connection that ended, with the command's reason; within a
  step, user_online before that user's member_added, user_offline after their
  member_removed and connection_closed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from channelstream.core.commands import Applied, Command, apply_command, operation_of
from channelstream.core.errors import ConnectionOwnedByOther, UnknownConnection, UnknownUser
from channelstream.core.model import DELIVERY_KEYS
from channelstream.core.snapshot import state_to_data
from channelstream.core.state import Catchup, Limits, State
from channelstream.core.webhooks import EVENT_NAMES, WebhookEvent

T0 = datetime(2026, 1, 1)
WEBHOOKS_ON = Limits(webhook_events=frozenset(EVENT_NAMES))
# the reason a command's connection_closed and user_offline events give
REASONS = {"disconnect": "disconnect", "forget_node": "node_lost", "collect_garbage": "gc"}
USERS = ("alice", "bob", "carol")
GHOST = "ghost"  # never connects: a pm_users/exclude_users name that matches nobody
CHANNELS = ("x", "y", "z")
CONN_IDS = ("c1", "c2", "c3", "c4", "c5")
NODES = ("n1", "n2")
CONNS_AFTER, USERS_AFTER, CHANNELS_AFTER = 30, 60, 90

users = st.sampled_from(USERS)
conn_ids = st.sampled_from(CONN_IDS)
nodes = st.sampled_from(NODES)
channel_lists = st.lists(st.sampled_from(CHANNELS), max_size=3)
user_subsets = st.lists(st.sampled_from((*USERS, GHOST)), max_size=3, unique=True)
channel_config = st.fixed_dictionaries(
    {
        "notify_presence": st.booleans(),
        "store_history": st.booleans(),
        "history_size": st.integers(0, 3),
        "store_frames": st.booleans(),
        "broadcast_presence_with_user_lists": st.booleans(),
        "notify_state": st.booleans(),
    }
)
channel_configs = st.dictionaries(st.sampled_from(CHANNELS), channel_config, max_size=3)
# /channel_config never toggles notify_presence here: a live channel switching presence on
# would legitimately break the joined/parted alternation this file checks.
config_changes = st.fixed_dictionaries(
    {},
    optional={
        "store_history": st.booleans(),
        "history_size": st.integers(0, 3),
        "store_frames": st.booleans(),
        "broadcast_presence_with_user_lists": st.booleans(),
        "notify_state": st.booleans(),
    },
)
state_values = st.one_of(st.none(), st.booleans(), st.integers(0, 2), st.sampled_from(["a", "b"]))
user_states = st.dictionaries(st.sampled_from(["color", "mood", "secret"]), state_values)
public_keys = st.lists(st.sampled_from(["color", "mood"]), unique=True)


@dataclass
class ModelConnection:
    username: str
    last_active: datetime
    channels: set[str] = field(default_factory=set)
    nodes: dict[str, int] = field(default_factory=dict)


def members_of(state: State) -> dict[str, dict[str, set[str]]]:
    return {
        name: {user: set(conns) for user, conns in channel.members.items()}
        for name, channel in state.channels.items()
    }


def owners_of(state: State) -> dict[str, str]:
    return {conn_id: c.username for conn_id, c in state.connections.items()}


class CoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.replica = State(WEBHOOKS_ON)
        self.other = State(WEBHOOKS_ON)
        # the world as the webhook events so far tell it
        self.event_members: set[tuple[str, str]] = set()
        self.occupied: set[str] = set()
        self.online: set[str] = set()
        self.now = T0
        self.ids = itertools.count(1)
        self.model: dict[str, ModelConnection] = {}
        self.last_presence: dict[tuple[str, str], str] = {}
        # message uuid -> the users allowed to see it (live or in catchup)
        self.allowed: dict[str, set[str]] = {}

    # ------------------------------------------------------------------ helpers

    def run(self, name: str, args: dict[str, Any], *, exact_presence: bool = True) -> Applied:
        """Apply one command to both replicas, compare them, check presence of this step."""
        state = self.replica
        before_members = members_of(state)
        before_configs = {name: c.config for name, c in state.channels.items()}
        owners = owners_of(state)
        first_event = state.webhooks.next_number
        connections_before = set(state.connections)
        operation = operation_of(name, args)
        command = Command(operation, self.now, origin="n1", id=f"cmd-{next(self.ids)}")

        applied = apply_command(state, command)
        mirrored = apply_command(self.other, command)

        assert type(applied.error) is type(mirrored.error)
        assert applied.deliveries == mirrored.deliveries
        if isinstance(applied.result, Catchup):
            assert applied.result == mirrored.result
        owners.update(owners_of(state))
        for delivery in applied.deliveries:
            assert len(set(delivery.conn_ids)) == len(delivery.conn_ids)
            assert set(delivery.conn_ids) <= set(owners)
            assert not set(delivery.frame) & set(DELIVERY_KEYS)
        self.check_presence(applied, before_members, before_configs, owners, exact_presence)
        events = [e for e in state.webhooks.pending if e.number >= first_event]
        self.check_webhooks(name, events, applied, before_members, connections_before)
        return applied

    def check_webhooks(
        self,
        command: str,
        events: list[WebhookEvent],
        applied: Applied,
        before: dict[str, dict[str, set[str]]],
        connections_before: set[str],
    ) -> None:
        state = self.replica
        after = members_of(state)
        pairs_before = {(name, user) for name, members in before.items() for user in members}
        pairs_after = {(name, user) for name, members in after.items() for user in members}
        added = [(e.channel, e.user) for e in events if e.name == "member_added"]
        removed = [(e.channel, e.user) for e in events if e.name == "member_removed"]
        assert set(added) == pairs_after - pairs_before
        assert set(removed) == pairs_before - pairs_after
        presence = {
            (d.frame["channel"], d.frame["user"], d.frame["message"]["action"])
            for d in applied.deliveries
            if d.frame["type"] == "presence"
        }
        notified = {
            name
            for name in set(before) | set(after)
            if name in state.channels and state.channels[name].config.notify_presence
        }
        assert {(c, u, "joined") for c, u in added if c in notified} | {
            (c, u, "parted") for c, u in removed if c in notified
        } == presence
        for position, event in enumerate(events):
            later = events[position + 1 :]
            earlier = events[:position]
            match event.name:
                case "member_added":
                    assert (event.channel, event.user) not in self.event_members
                    self.event_members.add((event.channel, event.user))
                case "member_removed":
                    self.event_members.remove((event.channel, event.user))
                case "channel_occupied":
                    assert event.channel not in self.occupied
                    self.occupied.add(event.channel)
                    assert later and later[0].name == "member_added"
                case "channel_vacated":
                    self.occupied.remove(event.channel)
                    assert earlier and earlier[-1].name == "member_removed"
                case "user_online":
                    assert event.user not in self.online
                    self.online.add(event.user)
                    assert not any(
                        e.user == event.user for e in earlier if e.name == "member_added"
                    )
                case "user_offline":
                    self.online.remove(event.user)
                    assert event.reason == REASONS[command]
                    assert not any(
                        e.user == event.user and e.name in ("member_removed", "connection_closed")
                        for e in later
                    )
                case "connection_closed":
                    assert event.reason == REASONS[command]
        assert self.event_members == pairs_after
        assert self.occupied == {name for name, members in after.items() if members}
        present_users = {c.username for c in state.connections.values() if c.present}
        assert self.online == present_users
        closed = {e.conn_id for e in events if e.name == "connection_closed"}
        assert closed == connections_before - set(state.connections)

    def check_presence(
        self,
        applied: Applied,
        before: dict[str, dict[str, set[str]]],
        before_configs: dict[str, Any],
        owners: dict[str, str],
        exact: bool,
    ) -> None:
        state = self.replica
        after = members_of(state)
        joined = {
            (name, user)
            for name, members in after.items()
            if state.channels[name].config.notify_presence
            for user in members
            if user not in before.get(name, {})
        }
        parted = {
            (name, user)
            for name, members in before.items()
            if before_configs[name].notify_presence
            for user in members
            if user not in after.get(name, {})
        }
        seen: list[tuple[str, str, str]] = []
        for delivery in applied.deliveries:
            frame = delivery.frame
            if frame["type"] != "presence":
                continue
            name, user, action = frame["channel"], frame["user"], frame["message"]["action"]
            seen.append((name, user, action))
            # never to the user themself
            assert all(owners[conn_id] != user for conn_id in delivery.conn_ids)
            others_after = {
                conn_id
                for member, conns in after.get(name, {}).items()
                if member != user
                for conn_id in conns
            }
            others_before = {
                conn_id
                for member, conns in before.get(name, {}).items()
                if member != user
                for conn_id in conns
            }
            got = set(delivery.conn_ids)
            if exact:
                assert got == others_after
            else:  # several connections left in one step: bounded by before and after
                assert others_after <= got <= others_before | others_after
            previous = self.last_presence.get((name, user), "parted")
            assert action == ("joined" if previous == "parted" else "parted"), (name, user)
            self.last_presence[(name, user)] = action
        assert len(seen) == len(set(seen))
        assert {(n, u) for n, u, a in seen if a == "joined"} == joined
        assert {(n, u) for n, u, a in seen if a == "parted"} == parted

    def pick_conn(self, data: st.DataObject) -> str:
        """Mostly a live conn_id, sometimes any (maybe unknown) one."""
        if self.model and data.draw(st.integers(0, 4), label="live") > 0:
            return data.draw(st.sampled_from(sorted(self.model)), label="conn_id")
        return data.draw(conn_ids, label="conn_id")

    def connections_of(self, username: str) -> set[str]:
        return {conn_id for conn_id, c in self.model.items() if c.username == username}

    def assert_unchanged(self, before: dict[str, Any]) -> None:
        assert state_to_data(self.replica) == before

    def assert_gone(self, conn_id: str) -> None:
        """F17: a removed conn_id is referenced nowhere."""
        state = self.replica
        assert conn_id not in state.connections
        assert all(conn_id not in u.connections for u in state.users.values())
        assert all(
            conn_id not in conns for c in state.channels.values() for conns in c.members.values()
        )

    # ------------------------------------------------------------------ rules

    @initialize(
        start=st.lists(
            st.tuples(users, channel_lists, channel_configs), min_size=1, max_size=len(CONN_IDS)
        )
    )
    def populate(self, start) -> None:
        for conn_id, (username, channels, configs) in zip(CONN_IDS, start, strict=False):
            self.connect(username, conn_id, False, channels, configs, {}, [])

    @rule(seconds=st.sampled_from([0, 1, 10, 29, 31, 61, 91]))
    def tick(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @rule(
        username=users,
        conn_id=conn_ids,
        same_user=st.booleans(),
        channels=channel_lists,
        configs=channel_configs,
        user_state=user_states,
        keys=public_keys,
    )
    def connect_rule(self, username, conn_id, same_user, channels, configs, user_state, keys):
        self.connect(username, conn_id, same_user, channels, configs, user_state, keys)

    def connect(self, username, conn_id, same_user, channels, configs, user_state, keys) -> None:
        existing = self.model.get(conn_id)
        if existing is not None and same_user:
            username = existing.username  # F3: reconnect in place
        snapshot = state_to_data(self.replica)
        args = {
            "username": username,
            "conn_id": conn_id,
            "channels": channels,
            "channel_configs": configs,
            "user_state": user_state,
            "state_public_keys": keys,
        }
        applied = self.run("connect", args)
        if existing is not None and existing.username != username:
            assert isinstance(applied.error, ConnectionOwnedByOther)
            self.assert_unchanged(snapshot)
            return
        assert applied.error is None
        connection = self.model.setdefault(conn_id, ModelConnection(username, self.now))
        connection.channels.update(channels)
        connection.last_active = self.now

    @rule(data=st.data(), channels=channel_lists, configs=channel_configs)
    def subscribe(self, data, channels, configs) -> None:
        conn_id = self.pick_conn(data)
        snapshot = state_to_data(self.replica)
        args = {"conn_id": conn_id, "channels": channels, "channel_configs": configs}
        applied = self.run("subscribe", args)
        connection = self.model.get(conn_id)
        if connection is None:
            assert isinstance(applied.error, UnknownConnection)
            self.assert_unchanged(snapshot)
            return
        assert applied.error is None
        assert sorted(applied.result.changed_channels) == sorted(
            set(channels) - connection.channels
        )
        connection.channels.update(channels)
        connection.last_active = self.now

    @rule(data=st.data(), channels=channel_lists)
    def unsubscribe(self, data, channels) -> None:
        conn_id = self.pick_conn(data)
        snapshot = state_to_data(self.replica)
        applied = self.run("unsubscribe", {"conn_id": conn_id, "channels": channels})
        connection = self.model.get(conn_id)
        if connection is None:
            assert isinstance(applied.error, UnknownConnection)
            self.assert_unchanged(snapshot)
            return
        assert applied.error is None
        assert sorted(applied.result.changed_channels) == sorted(
            set(channels) & connection.channels
        )
        connection.channels.difference_update(channels)
        connection.last_active = self.now

    @rule(data=st.data())
    def disconnect(self, data) -> None:
        conn_id = self.pick_conn(data)
        applied = self.run("disconnect", {"conn_id": conn_id})
        assert applied.error is None
        assert (applied.result is None) == (conn_id not in self.model)
        self.model.pop(conn_id, None)
        self.assert_gone(conn_id)

    @rule(
        items=st.lists(
            st.tuples(
                st.sampled_from((None, *CHANNELS)),
                st.one_of(st.just([]), user_subsets),
                st.one_of(st.just([]), user_subsets),
                st.sampled_from([False, False, True]),
                users,
            ),
            min_size=1,
            max_size=4,
        )
    )
    def publish(self, items) -> None:
        state = self.replica
        existing_channels = set(state.channels)
        existing_users = set(state.users)
        members = members_of(state)
        messages: list[dict[str, Any]] = []
        expected: list[tuple[str, set[str]]] = []
        for channel, pm_users, exclude_users, no_history, sender in items:
            n = next(self.ids)
            message_uuid = f"msg-{n}"
            messages.append(
                {
                    "uuid": message_uuid,
                    "user": sender,
                    "timestamp": self.now,
                    "channel": channel,
                    "message": {"text": f"message {n}"},
                    "pm_users": pm_users,
                    "exclude_users": exclude_users,
                    "no_history": no_history,
                }
            )
            if channel is not None:
                self.allowed[message_uuid] = {
                    u
                    for u in (*USERS, GHOST)
                    if u not in exclude_users and (not pm_users or u in pm_users)
                }
                if channel in existing_channels:
                    expected.append(
                        (
                            message_uuid,
                            {
                                conn_id
                                for user, conns in members[channel].items()
                                if user in self.allowed[message_uuid]
                                for conn_id in conns
                            },
                        )
                    )
            elif pm_users:  # a direct message; exclude_users is ignored
                self.allowed[message_uuid] = set(pm_users)
                expected.append(
                    (
                        message_uuid,
                        {
                            conn_id
                            for user in pm_users
                            if user in existing_users
                            for conn_id in self.connections_of(user)
                        },
                    )
                )
        applied = self.run("publish", {"messages": messages})
        assert applied.error is None
        got = [(d.frame["uuid"], set(d.conn_ids)) for d in applied.deliveries]
        assert got == expected

    @rule(username=st.sampled_from((*USERS, GHOST)), user_state=user_states, keys=public_keys)
    def set_user_state(self, username, user_state, keys) -> None:
        state = self.replica
        snapshot = state_to_data(state)
        user = state.users.get(username)
        old_state = dict(user.state) if user else {}
        members = members_of(state)
        applied = self.run(
            "set_user_state",
            {"username": username, "user_state": user_state, "state_public_keys": keys},
        )
        if user is None:
            assert isinstance(applied.error, UnknownUser)
            self.assert_unchanged(snapshot)
            return
        assert applied.error is None
        changed = any(
            not (key not in old_state and value is None)
            and not (
                key in old_state and type(old_state[key]) is type(value) and old_state[key] == value
            )
            for key, value in user_state.items()
        )
        in_channels = {
            name
            for conn_id in self.connections_of(username)
            for name in self.model[conn_id].channels
        }
        expected = {
            name: {conn_id for conns in members[name].values() for conn_id in conns}
            for name in in_channels
            if changed and state.channels[name].config.notify_state
        }
        got = {d.frame["channel"]: set(d.conn_ids) for d in applied.deliveries}
        assert len(got) == len(applied.deliveries)
        assert all(d.frame["type"] == "user_state_change" for d in applied.deliveries)
        assert got == expected

    @rule(changes=st.dictionaries(st.sampled_from(CHANNELS), config_changes, min_size=1))
    def set_channel_configs(self, changes) -> None:
        applied = self.run("set_channel_configs", {"configs": changes})
        assert applied.error is None
        assert applied.deliveries == []

    @rule(data=st.data(), node=nodes)
    def attach(self, data, node) -> None:
        conn_id = self.pick_conn(data)
        snapshot = state_to_data(self.replica)
        applied = self.run("attach", {"conn_id": conn_id, "node": node})
        connection = self.model.get(conn_id)
        if connection is None:
            assert isinstance(applied.error, UnknownConnection)
            self.assert_unchanged(snapshot)
            return
        assert applied.error is None
        connection.nodes[node] = connection.nodes.get(node, 0) + 1
        connection.last_active = self.now
        for frame in applied.result.frames:
            assert frame["catchup"] is True
            if frame["type"] == "presence":
                assert frame["user"] != connection.username
            elif frame["type"] == "message":
                assert connection.username in self.allowed[frame["uuid"]]

    @rule(data=st.data(), node=nodes)
    def detach(self, data, node) -> None:
        conn_id = self.pick_conn(data)
        snapshot = state_to_data(self.replica)
        served = data.draw(st.integers(0, self.replica.seq), label="served_up_to")
        args = {"conn_id": conn_id, "node": node, "served_up_to": served}
        applied = self.run("detach", args)
        assert applied.error is None
        connection = self.model.get(conn_id)
        if connection is None or connection.nodes.get(node, 0) < 1:
            self.assert_unchanged(snapshot)
            return
        connection.nodes[node] -= 1
        if connection.nodes[node] == 0:
            del connection.nodes[node]
        connection.last_active = self.now

    @rule(data=st.data(), node=nodes)
    def keep_polling(self, data, node) -> None:
        """A node's once-a-second word for the long polls it served from its replica; first,
        one such poll's read-only catchup."""
        state = self.replica
        conn_id = self.pick_conn(data)
        seen = data.draw(st.integers(-1, state.seq + 1), label="seen")
        snapshot = state_to_data(state)
        catchup = state.catchup_from(conn_id, seen)
        self.assert_unchanged(snapshot)
        connection = self.model.get(conn_id)
        if catchup is not None:
            assert connection is not None
            for frame in catchup.frames:
                assert frame["catchup"] is True
                if frame["type"] == "message":
                    assert connection.username in self.allowed[frame["uuid"]]
                    assert frame["seq"] > seen
        conn_ids = [conn_id, self.pick_conn(data)]
        positions = [max(seen, 0), data.draw(st.integers(0, state.seq), label="seen 2")]
        applied = self.run("keep_polling", {"node": node, "conn_ids": conn_ids, "seen": positions})
        assert applied.error is None
        for polled in conn_ids:
            if polled in self.model:
                self.model[polled].last_active = self.now

    @rule(node=nodes)
    def forget_node(self, node) -> None:
        dropped = set()
        for conn_id, connection in self.model.items():
            if connection.nodes.pop(node, 0) and not connection.nodes:
                dropped.add(conn_id)
        applied = self.run("forget_node", {"node": node}, exact_presence=False)
        assert applied.error is None
        assert set(applied.result.connections) == dropped
        for conn_id in dropped:
            del self.model[conn_id]
            self.assert_gone(conn_id)

    @rule()
    def collect_garbage(self) -> None:
        state = self.replica
        idle = {
            conn_id
            for conn_id, c in self.model.items()
            if (self.now - c.last_active).total_seconds() > CONNS_AFTER
        }
        listened = {conn_id for conn_id, c in state.connections.items() if c.listeners}
        args = {
            "connections_after": CONNS_AFTER,
            "users_after": USERS_AFTER,
            "channels_after": CHANNELS_AFTER,
        }
        applied = self.run("collect_garbage", args, exact_presence=False)
        assert applied.error is None
        collected = set(applied.result.connections)
        assert not collected & listened  # F7
        assert collected == idle - listened  # F8
        for conn_id in collected:
            del self.model[conn_id]
            self.assert_gone(conn_id)
        for username in applied.result.users:
            assert not self.connections_of(username)
            assert username not in state.users
        for name in applied.result.channels:
            assert name not in state.channels

    # ------------------------------------------------------------------ invariants

    @invariant()
    def connections_match_the_model(self) -> None:
        state = self.replica
        assert set(state.connections) == set(self.model)
        for conn_id, connection in state.connections.items():
            expected = self.model[conn_id]
            assert connection.username == expected.username
            assert set(connection.channels) == expected.channels
            assert connection.listeners_by_node == expected.nodes
            assert connection.listeners == sum(connection.listeners_by_node.values()) >= 0
            assert all(count > 0 for count in connection.listeners_by_node.values())
            assert set(connection.channels) <= set(state.channels)
            assert connection.username in state.users
            assert conn_id in state.users[connection.username].connections

    @invariant()
    def users_reference_only_their_live_connections(self) -> None:
        for username, user in self.replica.users.items():
            assert set(user.connections) == self.connections_of(username)

    @invariant()
    def members_are_exactly_the_connected_users(self) -> None:
        for name, channel in self.replica.channels.items():
            expected: dict[str, set[str]] = {}
            for conn_id, connection in self.model.items():
                if name in connection.channels:
                    expected.setdefault(connection.username, set()).add(conn_id)
            assert {user: set(conns) for user, conns in channel.members.items()} == expected
            assert channel.total_connections == sum(len(c) for c in expected.values())

    @invariant()
    def history_is_bounded_and_public(self) -> None:
        for channel in self.replica.channels.values():
            size = channel.config.history_size
            assert len(channel.history) <= size  # F1: size 0 keeps nothing
            for stored in channel.history:
                assert stored.pm_users == ()  # F4
                assert stored.frame["type"] == "message"
                assert stored.frame["channel"] == channel.name

    @invariant()
    def replicas_agree(self) -> None:
        assert self.replica.channels_info() == self.other.channels_info()
        assert state_to_data(self.replica) == state_to_data(self.other)


# A pass takes seconds; a failure may shrink for minutes, which must not hit the 120 s
# default timeout (it would turn the shrunk example into a confusing Flaky error).
TestCoreProperties = pytest.mark.timeout(600)(CoreMachine.TestCase)
TestCoreProperties.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, derandomize=True
)
