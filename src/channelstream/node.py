"""The Node: the one object HTTP views and socket handlers call.

It owns this process's replica of the core `State`, the listeners' outboxes and the background
loops. Every change is a `Command` submitted to the broker, which orders the commands of the
whole cluster and hands each back to every node's `_apply`: the state changes there, and the
resulting frames go to this node's own listeners, each frame JSON-encoded once. With the
memory broker a command is applied before `submit` returns, and nothing yields in between,
so the state is never seen half-updated. With Redis the submitter waits for its command to
come back in cluster order.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import gevent
from gevent.event import AsyncResult

from channelstream import encoding
from channelstream.broker import Broker, BrokerUnavailable, build_broker
from channelstream.close_codes import CloseCode
from channelstream.core.commands import (
    AcknowledgeWebhooks,
    Applied,
    Attach,
    CollectGarbage,
    Command,
    Delete,
    Detach,
    Disconnect,
    DisconnectUsers,
    Edit,
    ExpireConnection,
    ForgetNode,
    KeepPolling,
    Operation,
    Publish,
    StartEpoch,
    Unsupported,
    apply_command,
)
from channelstream.core.model import (
    Connection,
    DeleteItem,
    Delivery,
    EditItem,
    PublishItem,
    Totals,
    User,
)
from channelstream.core.snapshot import state_from_data, state_to_data
from channelstream.core.state import (
    Catchup,
    GarbageOutcome,
    HistoryPage,
    Limits,
    MessagesOutcome,
    State,
)
from channelstream.core.webhooks import WebhookEvent
from channelstream.settings import Settings
from channelstream.transport.outbox import Outbox
from channelstream.webhooks import WebhookCounters, WebhookSender, displayed_url

log = logging.getLogger(__name__)

Result = TypeVar("Result")
Item = TypeVar("Item")
Chunked = TypeVar("Chunked")

CHORES_INTERVAL_SECONDS = 1.0  # GC, dead-node and retry sweeps
# Long polls skip the cluster's log only if a once-a-chore KeepPolling keeps their connection
# present with room to spare (default presence_grace: 3 s).
KEEP_POLLING_MIN_GRACE_SECONDS = 2 * CHORES_INTERVAL_SECONDS
SNAPSHOT_INTERVAL_SECONDS = 10.0
COMMAND_TIMEOUT_SECONDS = 5.0  # how long a request waits for its command to be applied
# A /message batch is applied this many items per command, with a pause between commands, so
# that a batch of 10,000 does not hold the process for its whole length (others' deliveries
# and requests run in the pauses). ~2 ms of work per chunk.
BATCH_CHUNK = 250
# A pause of zero may resume before the event loop polls for I/O; a tiny timer never does.
PAUSE_SECONDS = 0.0001


def pause() -> None:
    """Let other greenlets, and the event loop's I/O, run before going on."""
    gevent.sleep(PAUSE_SECONDS)


def paced_chunks(items: Sequence[Chunked]) -> Iterator[tuple[int, Sequence[Chunked]]]:
    """`items` in slices of BATCH_CHUNK, each with its offset, and a pause before every slice
    but the first: whoever works through a long batch this way lets others in between."""
    for start in range(0, len(items), BATCH_CHUNK):
        if start:
            pause()
        yield start, items[start : start + BATCH_CHUNK]


@dataclass(frozen=True)
class WebhookStatus:
    """Webhooks as this node sees them. The queue is the cluster's (the same on every
    node); `counters` are this node's sender's, which sends only while it leads."""

    url: str  # without user info or query
    sending: bool
    queue_length: int
    queue_max: int
    queued: int  # events queued since this node started (or restored a snapshot)
    overflowed: int  # events dropped because the queue was full, as for `queued`
    last_delivered_at: datetime | None  # by whichever node sent them
    counters: WebhookCounters


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Node:
    """One server process: its replica of the cluster state and its own listeners."""

    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], datetime] = utc_now,
        broker: Broker | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.node_id = uuid.uuid4().hex  # new per process: a restarted node is a new node
        self.limits = Limits(
            max_channels_per_connection=settings.max_channels_per_connection,
            max_connections=settings.max_connections,
            max_connections_per_user=settings.max_connections_per_user,
            channel_namespaces=settings.channel_namespaces,
            webhook_events=frozenset(settings.webhook_events if settings.webhook_url else ()),
            webhook_queue_max=settings.webhook_queue_max,
        )
        self.state = State(self.limits)
        self.broker: Broker = broker or build_broker(
            settings.broker,
            self.node_id,
            prefix=settings.redis_prefix,
            presence_ttl=settings.presence_ttl,
        )
        self.started_at = clock()
        self._outboxes: dict[str, list[Outbox]] = {}
        self._waiting: dict[str, AsyncResult] = {}
        self._attached: dict[str, Outbox] = {}  # outboxes opened for attach commands, by id
        self._position_wanted: set[str] = set()  # attach commands whose listener gets one
        self._unsent_detaches: list[Command] = []
        # long polls served without attaching (`poll_listener`): the open ones, and what the
        # clients of those that ended have seen, for the next KeepPolling
        self._open_polls: set[Outbox] = set()
        self._polled: dict[str, int] = {}
        self._loops: list[gevent.Greenlet] = []
        # token connections this node let in: their expiry (Unix time) and its timer
        self._expiries: dict[str, tuple[float, gevent.Greenlet]] = {}
        self._last_snapshot = 0.0
        self.frames_dropped = 0  # overflows: listeners closed for falling behind (4002)
        # frames those overflows threw away (the rejected one and the queued ones)
        self.frames_discarded = 0
        self.draining = False  # set when the process stops: /ready answers 503
        # why this replica stopped following the cluster (an operation it cannot read)
        self.unsupported: str | None = None
        self.webhooks: WebhookSender | None = None
        if settings.webhook_url:
            self.webhooks = WebhookSender(
                self,
                url=settings.webhook_url,
                secret=settings.webhook_secret,
                timeout=settings.webhook_timeout,
                batch_max=settings.webhook_batch_max,
                retry_for=settings.webhook_retry_for,
                clock=clock,
            )
        # the queue's overflow count when it last had room, and whether it is full now
        self._webhook_overflow_mark = 0
        self._webhook_overflowing = False
        self.broker.start(self._apply, self._restore)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the heartbeat and chores loops (they run once the gevent hub runs)."""
        if not self._loops:
            self._loops = [
                gevent.spawn(self._every, self.settings.heartbeat_interval, self.send_heartbeats),
                gevent.spawn(self._every, CHORES_INTERVAL_SECONDS, self.run_chores),
            ]
            if self.webhooks is not None:
                self.webhooks.start()

    def stop(self) -> None:
        """Stop the loops and close every listener with 1001 (going away)."""
        self.draining = True
        gevent.killall(self._loops)
        self._loops = []
        if self.webhooks is not None:
            self.webhooks.stop()
        gevent.killall([timer for _, timer in self._expiries.values()], block=False)
        self._expiries.clear()
        self.close_listeners()
        self.broker.stop()

    def begin_drain(self) -> None:
        """The process is stopping: /ready answers 503 from now on, so balancers send no
        new clients here while the open ones are closed."""
        if not self.draining:
            self.draining = True
            log.info("draining: /ready answers 503")

    def close_listeners(self, batch_size: int = 0, pause: float = 0.0) -> int:
        """Close every listener with 1001 (going away), `batch_size` at a time (0: all at
        once), yielding `pause` seconds between batches so in-flight requests go on and the
        clients, which reconnect at once, do not all land on the other nodes in the same
        instant. Returns the number of batches."""
        outboxes = [outbox for group in self._outboxes.values() for outbox in group]
        size = batch_size if batch_size > 0 else max(len(outboxes), 1)
        batches = 0
        for start in range(0, len(outboxes), size):
            if batches:
                gevent.sleep(pause)
            for outbox in outboxes[start : start + size]:
                outbox.close(CloseCode.GOING_AWAY)
            batches += 1
        return batches

    @staticmethod
    def _every(interval: float, action: Callable[[], Any]) -> None:
        """Run `action` every `interval` seconds, counted from one start to the next: a pass
        that takes a while (heartbeats go in slices) does not push the next one later, so a
        listener's heartbeats stay `interval` apart. A pass longer than `interval` is
        followed by the next at once."""
        next_start = time.monotonic() + interval
        while True:
            gevent.sleep(max(0.0, next_start - time.monotonic()))
            next_start = max(next_start + interval, time.monotonic())
            try:
                action()
            except BrokerUnavailable:
                pass  # the broker logs its own state changes
            except Exception:  # a bug in one sweep must not stop the loop for good
                log.exception("background task %s failed", getattr(action, "__name__", action))

    @property
    def ready(self) -> bool:
        """Can take traffic: not stopping, following the cluster, the broker reachable."""
        return self.not_ready_reason() is None

    def not_ready_reason(self) -> str | None:
        """Why /ready answers 503, or None."""
        if self.draining:
            return "draining"
        if self.unsupported is not None:
            return "unsupported command"
        if not self.broker.available:
            return "broker unreachable"
        return None

    # ------------------------------------------------------------------ commands

    def submit(self, operation: Operation[Result]) -> Result:
        """Submit an operation (views build them from what they loaded) and wait for it to be
        applied here; its result, or its CoreError raised. BrokerUnavailable when it cannot be
        submitted or does not come back."""
        return self._submit_command(Command(operation, self.clock(), self.node_id))

    def _submit_command(self, command: Command) -> Any:
        """`submit` for a command made by the caller (who needs its id)."""
        waiter = AsyncResult()
        self._waiting[command.id] = waiter
        try:
            self.broker.submit(command)
            applied: Applied = waiter.get(timeout=COMMAND_TIMEOUT_SECONDS)
        except gevent.Timeout:
            raise BrokerUnavailable("the command was not applied in time") from None
        finally:
            self._waiting.pop(command.id, None)
        if applied.error is not None:
            raise applied.error
        return applied.result

    def _apply(self, command: Command) -> None:
        """Apply one command in cluster order (called by the broker, for every command)."""
        operation = command.operation
        if isinstance(operation, Unsupported):
            self._refuse_unsupported(command, operation)
            return
        applied = apply_command(self.state, command)
        mine = command.origin == self.node_id
        match operation:
            case Attach() if mine and applied.error is None:
                position = command.id in self._position_wanted
                outbox = self._open_outbox(operation, applied.result, position)
                if command.id in self._waiting:
                    self._attached[command.id] = outbox  # for `attach`, which waits for it
                else:  # its request gave up waiting: undo
                    self.detach(outbox)
            case Disconnect(conn_id=conn_id) if applied.result is not None:
                for outbox in self._outboxes.pop(conn_id, []):
                    outbox.close(CloseCode.NORMAL)
            case ExpireConnection(conn_id=conn_id) if applied.result is not None:
                for outbox in self._outboxes.pop(conn_id, []):
                    outbox.close(CloseCode.TOKEN_EXPIRED)
            case DisconnectUsers(reason=reason) if applied.error is None:
                for conn_ids in applied.result.ended.values():
                    for conn_id in conn_ids:
                        for outbox in self._outboxes.pop(conn_id, []):
                            outbox.close(CloseCode.USER_DISCONNECTED, reason)
            case ForgetNode(node=node) if node == self.node_id:
                self._close_forgotten_listeners(applied.result)
        deliveries = applied.deliveries
        if len(deliveries) == 1:
            self._deliver(deliveries[0])
        elif deliveries:
            self._deliver_together(deliveries)
        webhook_queue = self.state.webhooks
        if webhook_queue.pending and self.webhooks is not None:
            self.webhooks.wake()
        if webhook_queue.overflowed != self._webhook_overflow_mark:
            self._watch_webhook_overflow()
        if isinstance(applied.result, GarbageOutcome) and applied.result.absent:
            log.info(
                "%s: %d connections without a listener for presence_grace: absent (%s)",
                command.name,
                len(applied.result.absent),
                ", ".join(applied.result.absent[:5]),
            )
        if isinstance(applied.result, GarbageOutcome) and applied.result.connections:
            log.info(
                "%s: %d connections ended (%s)",
                command.name,
                len(applied.result.connections),
                ", ".join(applied.result.connections[:5]),
            )
        if mine:
            waiter = self._waiting.get(command.id)
            if waiter is not None:
                waiter.set(applied)

    def _watch_webhook_overflow(self) -> None:
        """Log once when the webhook queue overflows (new events are dropped from then on)
        and once when it has room again, with the count: never a line per dropped event."""
        queue = self.state.webhooks
        if not self._webhook_overflowing:
            if queue.overflowed > self._webhook_overflow_mark:
                self._webhook_overflowing = True
                log.error(
                    "webhook queue full (%d events, webhook_queue_max): new events are "
                    "dropped until the receiver catches up",
                    queue.max_events,
                )
        elif len(queue.pending) < queue.max_events:
            log.warning(
                "webhook queue has room again: %d events were dropped while it was full",
                queue.overflowed - self._webhook_overflow_mark,
            )
            self._webhook_overflow_mark = queue.overflowed
            self._webhook_overflowing = False

    def _refuse_unsupported(self, command: Command, operation: Unsupported) -> None:
        """An operation from another node that this one cannot read: apply none of it, and
        stop taking traffic, since this replica no longer matches the cluster's. Said once."""
        if self.unsupported is None:
            log.error(
                "command %s from node %s is not understood (%s %s): this node applies "
                "nothing of it and answers /ready 503; upgrade it to the cluster's version",
                command.id,
                command.origin,
                operation.wire_type,
                operation.reason,
            )
        self.unsupported = f"{operation.wire_type}: {operation.reason}"

    def _close_forgotten_listeners(self, outcome: GarbageOutcome) -> None:
        """The cluster took this node for dead (cut off from the broker for presence_ttl)
        and no longer counts its listeners. Close them all, so their clients come back: with
        4001 (ask for a new connection) where the connection ended, else 1001 (re-attach)."""
        ended = set(outcome.connections)
        for conn_id, outboxes in list(self._outboxes.items()):
            code = CloseCode.UNKNOWN_CONNECTION if conn_id in ended else CloseCode.GOING_AWAY
            for outbox in outboxes:
                outbox.close(code)
        if self._outboxes:
            log.warning("this node was taken for dead: its listeners were closed")
        self._outboxes.clear()

    def _restore(self, data: Any) -> None:
        """Start from a cluster snapshot (a node joining a running cluster)."""
        self.state = state_from_data(data, State(self.limits))
        self._webhook_overflow_mark = 0
        self._webhook_overflowing = False
        log.info(
            "state restored from snapshot: %d channels, %d users, %d connections",
            len(self.state.channels),
            len(self.state.users),
            len(self.state.connections),
        )

    def snapshot(self) -> dict[str, Any]:
        """The state as plain data. The leader's broker calls it in a forked copy of this
        process (`save_snapshot_of`), so walking a large state stops no one here."""
        return state_to_data(self.state)

    def sync(self) -> None:
        """Wait until this replica has applied what the cluster had when called, so a read
        here sees writes made through any node (no-op with the memory broker)."""
        if not self.broker.wait_caught_up(COMMAND_TIMEOUT_SECONDS):
            raise BrokerUnavailable("this node could not catch up with the cluster")

    # ------------------------------------------------------------------ API operations

    def publish(self, messages: Iterable[PublishItem]) -> MessagesOutcome:
        window = self.settings.idempotency_window
        return self._submit_in_chunks(
            lambda chunk: Publish(messages=chunk, idempotency_window=window), messages
        )

    def edit(self, edits: Iterable[EditItem]) -> MessagesOutcome:
        return self._submit_in_chunks(lambda chunk: Edit(edits=chunk), edits)

    def delete(self, deletes: Iterable[DeleteItem]) -> MessagesOutcome:
        return self._submit_in_chunks(lambda chunk: Delete(deletes=chunk), deletes)

    def _submit_in_chunks(
        self,
        operation: Callable[[tuple[Item, ...]], Operation[MessagesOutcome]],
        items: Iterable[Item],
    ) -> MessagesOutcome:
        """Submit a batch as commands of at most BATCH_CHUNK items, in order, pausing between
        them (see BATCH_CHUNK). Others' commands may come between two chunks; a chunk is
        applied whole. If the broker fails midway, the chunks before stay applied."""
        batch = list(items)
        outcome = MessagesOutcome()
        for _, chunk in paced_chunks(batch) if batch else [(0, batch)]:  # empty: one command
            outcome.accepted += self.submit(operation(tuple(chunk))).accepted
        return outcome

    def disconnect(self, conn_id: str) -> bool:
        """End a connection now: presence goes out and its listeners close with 1000."""
        ended = self.submit(Disconnect(conn_id=conn_id)) is not None
        if ended:
            log.info("connection %s disconnected", conn_id)
        return ended

    def disconnect_users(self, usernames: Iterable[str], reason: str = "") -> dict[str, int]:
        """End every connection of these users on every node (their listeners close with
        4003 and `reason`); how many each had."""
        outcome = self.submit(DisconnectUsers(usernames=tuple(usernames), reason=reason))
        counts = {username: len(conn_ids) for username, conn_ids in outcome.ended.items()}
        log.info(
            "users disconnected (%s): %s",
            reason or "no reason given",
            ", ".join(f"{username} ({count})" for username, count in counts.items()),
        )
        return counts

    def expire_at(self, conn_id: str, expires_at: float) -> None:
        """End a token connection at `expires_at` (Unix time): its listeners on every node
        close with 4004. Kept by the node that let the token in; a later token for the same
        connection (same `jti`) moves the time later, never earlier."""
        known = self._expiries.get(conn_id)
        if known is not None and known[0] >= expires_at:
            return
        if known is not None:
            known[1].kill(block=False)
        delay = max(0.0, expires_at - self.clock().replace(tzinfo=UTC).timestamp())
        self._expiries[conn_id] = (expires_at, gevent.spawn_later(delay, self._expire, conn_id))

    def _expire(self, conn_id: str) -> None:
        self._expiries.pop(conn_id, None)
        if conn_id not in self.state.connections:
            return  # ended already (or never replicated here): nothing to close
        try:
            ended = self.submit(ExpireConnection(conn_id=conn_id)) is not None
        except BrokerUnavailable:  # tried again until it is ended
            log.warning("connection %s: token expired, the broker is unreachable", conn_id)
            expires_at = self.clock().replace(tzinfo=UTC).timestamp()
            self.expire_at(conn_id, expires_at + CHORES_INTERVAL_SECONDS)
            return
        if ended:
            log.info("connection %s: token expired, closed with 4004", conn_id)

    # ------------------------------------------------------------------ queries
    # What views, the admin panel and metrics may read: nothing else of the State.

    def channels_info(self, names: Iterable[str] | None = None, **options: Any) -> dict[str, Any]:
        """Read after catching up with the cluster (see `sync`)."""
        self.sync()
        return self.state.channels_info(names, **options)

    def epoch(self) -> str:
        """The cluster state's epoch (one is started if no command has named it yet)."""
        return self.state.epoch or self.submit(StartEpoch())

    def history(
        self,
        channel: str,
        *,
        since_seq: int = 0,
        limit: int = 100,
        reverse: bool = False,
        username: str | None = None,
    ) -> HistoryPage:
        """A channel's stored messages (see `State.history`), read after catching up."""
        self.sync()
        return self.state.history(
            channel,
            self.clock(),
            since_seq=since_seq,
            limit=limit,
            reverse=reverse,
            username=username,
        )

    def totals(self) -> Totals:
        """The cluster's counts as this replica has them (no waiting: for metrics)."""
        return self.state.totals()

    def connected_users(self) -> list[User]:
        return self.state.connected_users()

    def connections(self) -> list[Connection]:
        return self.state.connections_by_user()

    def sends_webhooks(self) -> bool:
        """Whether this node sends the cluster's webhook events now: the one that leads
        (GC, dead nodes, snapshots), while it follows the cluster."""
        return self.unsupported is None and self.broker.is_leader()

    def pending_webhooks(self, limit: int) -> list[WebhookEvent]:
        return self.state.webhooks.head(limit)

    def acknowledge_webhooks(self, up_to: int, delivered: bool) -> None:
        self.submit(AcknowledgeWebhooks(up_to=up_to, delivered=delivered))

    def webhook_status(self) -> WebhookStatus | None:
        """For the admin panel and metrics; None when webhooks are off."""
        if self.webhooks is None:
            return None
        queue = self.state.webhooks
        return WebhookStatus(
            url=displayed_url(self.webhooks.url),
            sending=self.sends_webhooks(),
            queue_length=len(queue.pending),
            queue_max=queue.max_events,
            queued=queue.queued,
            overflowed=queue.overflowed,
            last_delivered_at=queue.last_delivered_at,
            counters=self.webhooks.counters,
        )

    def broker_stats(self) -> dict[str, Any]:
        """The broker's own figures (`errors`: failed broker operations, if it counts them)."""
        return self.broker.stats()

    # ------------------------------------------------------------------ listeners

    def attach(
        self, conn_id: str, kind: str, *, heartbeats: bool = True, position: bool = False
    ) -> Outbox:
        """Register a listener; its outbox starts with the connection's catchup frames.
        `kind` labels it (ws, sse, poll) for the metrics; `heartbeats`: whether it gets `[]`
        every heartbeat_interval (a long poll does not: it answers and ends); `position`:
        whether a `position` frame comes first (token connections: their page never saw
        `/connect`'s epoch and seq, and needs them for `recover`).

        Raises UnknownConnection (or BrokerUnavailable).
        """
        command = Command(
            Attach(conn_id=conn_id, node=self.node_id, kind=kind, heartbeats=heartbeats),
            self.clock(),
            self.node_id,
        )
        if position:
            self._position_wanted.add(command.id)
        try:
            self._submit_command(command)
        finally:
            self._position_wanted.discard(command.id)
        return self._attached.pop(command.id)

    def _open_outbox(self, attach: Attach, catchup: Catchup, position: bool = False) -> Outbox:
        """Runs inside `_apply`, so no frame can slip between the catchup and live ones.
        With `position`, a first frame `{"type": "position", "epoch", "seq", "conn_id"}` says
        which connection this is and where the catchup starts, as `/connect`'s answer does."""
        conn_id = attach.conn_id
        outbox = Outbox(conn_id, self.settings.max_queued_frames, catchup.seq, attach.kind)
        outbox.heartbeats = attach.heartbeats
        connection = self.state.connections.get(conn_id)
        if position and connection is not None:
            start = min(connection.cursor, catchup.seq)
            frame = {
                "type": "position",
                "epoch": self.state.epoch,
                "seq": start,
                "conn_id": conn_id,  # the page's web app names it to /subscribe, /disconnect
            }
            outbox.push(start, encoding.dumps(frame))
        if catchup.frames:
            outbox.push(catchup.seq, ",".join(encoding.dumps(f) for f in catchup.frames))
        self._outboxes.setdefault(conn_id, []).append(outbox)
        return outbox

    def detach(self, outbox: Outbox) -> None:
        """The listener is gone: stop feeding it now; tell the cluster (retried if the broker
        is unreachable, so the connection is not thought listened to for ever)."""
        outboxes = self._outboxes.get(outbox.conn_id)
        if not outboxes or outbox not in outboxes:
            return  # dropped here already (/disconnect, this node forgotten): not counted
        outboxes.remove(outbox)
        if not outboxes:
            del self._outboxes[outbox.conn_id]
        command = Command(
            Detach(conn_id=outbox.conn_id, served_up_to=outbox.served_up_to, node=self.node_id),
            self.clock(),
            self.node_id,
        )
        try:
            self.broker.submit(command)
        except BrokerUnavailable:
            self._unsent_detaches.append(command)

    def poll_listener(self, conn_id: str, epoch: str, seen: int) -> Outbox | None:
        """A long poll whose client says where it is (`epoch`, and the `seq` it has seen),
        served from this replica without a command: no Attach and Detach in the cluster's
        log per poll. This node tells the cluster once a second, for all such polls, that
        their connections are active (`KeepPolling`). None when the poll must attach
        instead (see `State.catchup_from`; another epoch; or `presence_grace` too short for
        a once-a-second word to keep the connection present).

        Raises BrokerUnavailable when this replica is behind what the client saw and cannot
        catch up."""
        if self.settings.presence_grace < KEEP_POLLING_MIN_GRACE_SECONDS:
            return None
        if epoch != self.state.epoch:
            return None
        if seen > self.state.seq:  # the client saw frames through a node ahead of this one
            self.sync()
        catchup = self.state.catchup_from(conn_id, seen)
        if catchup is None:
            return None
        outbox = Outbox(conn_id, self.settings.max_queued_frames, seen, "poll")
        outbox.heartbeats = False
        if catchup.frames:
            outbox.push(catchup.seq, ",".join(encoding.dumps(f) for f in catchup.frames))
        self._outboxes.setdefault(conn_id, []).append(outbox)
        self._open_polls.add(outbox)
        return outbox

    def end_poll(self, outbox: Outbox) -> None:
        """A poll from `poll_listener` answered (or its client left): stop feeding it, and
        remember what its client has been sent for the next KeepPolling."""
        self._open_polls.discard(outbox)
        outboxes = self._outboxes.get(outbox.conn_id)
        if outboxes and outbox in outboxes:
            outboxes.remove(outbox)
            if not outboxes:
                del self._outboxes[outbox.conn_id]
        conn_id = outbox.conn_id
        self._polled[conn_id] = max(self._polled.get(conn_id, 0), outbox.served_up_to)

    def keep_polling(self) -> None:
        """Tell the cluster which connections this node served long polls for without
        attaching since the last time, open ones included (one command for all)."""
        polled = self._polled
        for outbox in self._open_polls:
            polled[outbox.conn_id] = max(polled.get(outbox.conn_id, 0), outbox.served_up_to)
        if not polled:
            return
        self._polled = {}
        try:
            self.submit(
                KeepPolling(node=self.node_id, conn_ids=tuple(polled), seen=tuple(polled.values()))
            )
        except BrokerUnavailable:  # said again with the next ones
            for conn_id, seen in polled.items():
                self._polled[conn_id] = max(self._polled.get(conn_id, 0), seen)
            raise

    def touch(self, conn_id: str) -> bool:
        """Client activity on a listener. A connection with a listener is never idle, so this
        changes no shared state; it tells whether the connection still exists here."""
        return conn_id in self.state.connections

    def listener_counts(self) -> dict[str, int]:
        """This node's open listeners by transport kind (ws, sse, poll)."""
        counts: dict[str, int] = {}
        for outboxes in self._outboxes.values():
            for outbox in outboxes:
                counts[outbox.kind] = counts.get(outbox.kind, 0) + 1
        return counts

    def listener_count(self) -> int:
        return sum(len(outboxes) for outboxes in self._outboxes.values())

    def send_heartbeats(self) -> None:
        """`[]` to every listener that takes heartbeats (websockets and SSE streams, fix
        F7), whenever they attached. In slices with pauses between them: with 20,000
        listeners one pass is ~0.3 s of sends, which would otherwise hold every delivery."""
        listeners = [
            outbox
            for outboxes in self._outboxes.values()
            for outbox in outboxes
            if outbox.heartbeats
        ]
        for _, outboxes in paced_chunks(listeners):
            for outbox in outboxes:
                outbox.push_heartbeat()  # a no-op once closed

    # ------------------------------------------------------------------ chores

    def run_chores(self) -> None:
        """Every second: resend detaches that failed, say which connections long polls kept
        active (`keep_polling`); on the leader only, collect garbage,
        end connections of dead nodes, and refresh the snapshot."""
        while self._unsent_detaches:
            self.broker.submit(self._unsent_detaches[0])
            self._unsent_detaches.pop(0)
        self.keep_polling()
        if not self.broker.is_leader():
            return
        self.collect_garbage()
        others = self.state.listener_nodes() - {self.node_id}
        for node in others - self.broker.live_nodes(others):
            log.warning("node %s stopped announcing itself: ending its connections", node)
            self.submit(ForgetNode(node=node))
        now = self.clock().timestamp()
        if not self.broker.keeps_snapshots:
            return
        due = now - self._last_snapshot >= SNAPSHOT_INTERVAL_SECONDS
        if (due or not self.broker.has_snapshot()) and self.broker.save_snapshot_of(self.snapshot):
            self._last_snapshot = now  # encoded in a forked child: this node goes on meanwhile

    def collect_garbage(self) -> None:
        self.submit(
            CollectGarbage(
                connections_after=self.settings.gc_conns_after,
                users_after=self.settings.gc_users_after,
                channels_after=self.settings.gc_channels_after,
                presence_grace=self.settings.presence_grace,
            )
        )

    # ------------------------------------------------------------------ delivery

    def _deliver(self, delivery: Delivery) -> None:
        """One frame to its recipients' listeners, encoded once, only if someone listens."""
        encoded: str | None = None
        outboxes_of = self._outboxes.get  # the hot loop of a fan-out: locals, no properties
        seq = delivery.seq
        for conn_id in delivery.conn_ids:
            for outbox in outboxes_of(conn_id, ()):
                if encoded is None:
                    encoded = encoding.dumps(delivery.frame)
                if outbox.close_code is None and not outbox.push(seq, encoded):
                    self._overflowed(outbox, 1)

    def _deliver_together(self, deliveries: Sequence[Delivery]) -> None:
        """The frames of one command (a /message chunk, a subscribe's presence) to each
        listener as one push: one write of one websocket frame per listener, not one per
        message. Listeners that get the same frames share one joined text, so its websocket
        frame is built once too (`FrameCache`). Order per listener is the frames' order."""
        outboxes_of = self._outboxes.get
        wanted: dict[Outbox, list[int]] = {}  # listener -> indexes of its frames, in order
        for index, delivery in enumerate(deliveries):
            for conn_id in delivery.conn_ids:
                for outbox in outboxes_of(conn_id, ()):
                    indexes = wanted.get(outbox)
                    if indexes is None:
                        wanted[outbox] = [index]
                    else:
                        indexes.append(index)
        if not wanted:
            return
        encoded: list[str | None] = [None] * len(deliveries)
        joined: dict[tuple[int, ...], str] = {}
        for outbox, indexes in wanted.items():
            if outbox.close_code is not None:
                continue
            key = tuple(indexes)
            text = joined.get(key)
            if text is None:
                for index in indexes:
                    if encoded[index] is None:
                        encoded[index] = encoding.dumps(deliveries[index].frame)
                text = joined[key] = ",".join(encoded[index] or "" for index in indexes)
            if not outbox.push(deliveries[indexes[-1]].seq, text, len(indexes)):
                self._overflowed(outbox, len(indexes))

    def _overflowed(self, outbox: Outbox, frames: int) -> None:
        """`outbox` refused `frames` frames and closed (4002): count and say so, once."""
        self.frames_dropped += 1
        self.frames_discarded += outbox.discarded + frames
        conn_id = outbox.conn_id
        log.warning(
            "connection %s from %s fell %d frames behind: closing its %s listener with 4002",
            conn_id,
            outbox.peer or "?",
            outbox.limit,
            outbox.kind,
            extra={"conn_id": conn_id},
        )
