"""The Redis broker: many nodes, one order of commands, kept by Redis.

Keys, all under `redis_prefix` (`P`):

- `P:log`: a Redis stream, the cluster's commands in order. Every node reads all of it from
  where its state starts and applies each entry (`XREAD BLOCK`).
- `P:snapshot`: the state after some log entry, written every few seconds by the leader, so a
  node that starts late restores it and reads on from there; the log is trimmed behind it.
  The leader encodes it in a forked child (`broker/forked.py`), so a large state does not
  stop the leader while it is walked and encoded.
- `P:trimmed`: where the log was last trimmed. A node whose position is before it has missed
  entries and restores the snapshot. It is read only when a trim may have passed the node's
  position (see `_read_loop`), not before every read.
- `P:node:<id>`: "this node is alive", refreshed every `presence_ttl / 4` seconds, expiring
  after `presence_ttl`. The leader ends the connections of nodes whose key has expired.
- `P:leader`: the node id holding the leadership lease (GC, dead nodes, snapshots).
- `P:admin_session:<id>`: an open admin session, expiring with its cookie, deleted at sign-out.
  Any node checks it, so the admin cookie works behind a load balancer; it outlives node
  restarts (not a Redis restart without persistence, which signs the admin out).

The log expires a day after the last command or snapshot, the snapshot a day after it was
written, so a cluster that is shut down leaves nothing behind for long (admin sessions: until
their cookie would expire). The loops use
`threading`, which the server's gevent monkey-patching turns into greenlets (unpatched, as in
the broker's own tests, they are threads).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis

from channelstream import encoding
from channelstream.broker import BrokerUnavailable
from channelstream.broker.forked import Child, fork_encoder, read_encoded
from channelstream.core.commands import Command, Unsupported, from_wire, to_wire

log = logging.getLogger(__name__)

CLUSTER_STATE_TTL_SECONDS = 86400
REDIS_POOL_SIZE = 32  # connections a node's requests share; more wait their turn
READ_BLOCK_MS = 1000
# A backlog is read this many entries at a time: parsing a reply runs in one go (a few ms for
# 100 entries), and the fixed cost of a read is small beside 100 entries.
READ_BATCH = 100
# Under load, reads are at least this far apart, so that each brings several entries: the
# fixed cost of a read (the round trip, parsing, a wake-up) is most of what following costs
# when each brings one. At most this much is added to an entry's way through the cluster,
# and only while entries keep coming (a read after an idle one starts at once).
READ_SPACING_SECONDS = 0.002
# Applying a batch read from the log (a backlog brings READ_BATCH entries) pauses this
# often, so that a node catching up still serves its clients: no stretch much longer.
APPLY_SLICE_SECONDS = 0.004
PAUSE_SECONDS = 0.0001  # a tiny timer, so that the event loop polls for I/O in the pause
# Two snapshots that trim the log are at least this far apart (a trim's bound is the position
# of the snapshot before): so a node that read up to the head of the log less than
# GAP_FREE_SECONDS ago cannot have had entries after its position trimmed away.
TRIM_SPACING_SECONDS = 1.0
GAP_FREE_SECONDS = TRIM_SPACING_SECONDS / 2
BACKOFF_START_SECONDS = 0.1
BACKOFF_MAX_SECONDS = 5.0
SNAPSHOT_WAIT_SECONDS = 15.0  # default wait of a starting node for a missing snapshot
SNAPSHOT_POLL_SECONDS = 0.2
STOP_JOIN_SECONDS = 5.0  # how long stop() waits for an announcement in flight

# Renew the lease only if we still hold it (atomic compare-and-expire).
RENEW_LEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
RELEASE_LEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""

RedisErrors = (redis.ConnectionError, redis.TimeoutError, OSError)


def stream_id(value: str | bytes) -> tuple[int, int]:
    text = value.decode() if isinstance(value, bytes) else value
    millis, _, sequence = text.partition("-")
    return int(millis), int(sequence or 0)


def encode_command(command: Command) -> str:
    """A log entry: the operation as its versioned wire object, and the envelope."""
    return encoding.dumps(
        {
            "c": to_wire(command.operation),
            "t": command.now.isoformat(),
            "o": command.origin,
            "i": command.id,
        }
    )


def decode_command(text: str | bytes) -> Command:
    """A log entry's command. An operation this node cannot read (a newer version, another
    format) becomes `Unsupported`, which the node refuses to apply."""
    try:
        data = json.loads(text)
        return Command(
            operation=from_wire(data.get("c")),
            now=datetime.fromisoformat(data["t"]),
            origin=str(data["o"]),
            id=str(data["i"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        unreadable = Unsupported(wire_type="?", version=None, reason="not a command entry")
        return Command(unreadable, datetime.now(UTC), origin="?", id="?")


class RedisBroker:
    keeps_snapshots = True

    def __init__(self, url: str, node_id: str, *, prefix: str, presence_ttl: float) -> None:
        self.node_id = node_id
        self.url = url
        self.prefix = prefix
        self.presence_ttl = presence_ttl
        self.announce_interval = max(0.2, min(presence_ttl / 4, 5.0))
        self.lease_ms = max(500, int(presence_ttl * 1000 / 2))
        # a node key lives presence_ttl exactly (not rounded to seconds), and outlives at
        # least two announcements
        self.node_ttl_ms = max(round(presence_ttl * 1000), round(self.announce_interval * 2000))
        self.log_key = f"{prefix}:log"
        self.snapshot_key = f"{prefix}:snapshot"
        self.leader_key = f"{prefix}:leader"
        self.trimmed_key = f"{prefix}:trimmed"
        # short timeouts for commands, so a request never hangs on a dead Redis. A bounded
        # pool that makes a greenlet wait for a free connection: a thousand websockets closing
        # at once each submit a Detach, which with redis-py's default pool failed past 100
        # connections ("Too many connections", taken for an outage).
        self._client = redis.Redis(
            connection_pool=redis.BlockingConnectionPool.from_url(
                url,
                max_connections=REDIS_POOL_SIZE,
                timeout=2,
                socket_timeout=2,
                socket_connect_timeout=2,
            )
        )
        self._reader = redis.Redis.from_url(
            url, socket_timeout=READ_BLOCK_MS / 1000 + 3, socket_connect_timeout=2
        )
        self._renew = self._client.register_script(RENEW_LEASE)
        self._release = self._client.register_script(RELEASE_LEASE)
        self._applied = threading.Condition()
        self._catching_up = 0  # callers of wait_caught_up waiting on _applied
        self._ran_since = 0.0  # when the read loop last paused (time.monotonic())
        self.applied_id = "0-0"
        self._previous_snapshot_id: str | None = None
        self._previous_snapshot_at = 0.0  # time.monotonic() when it was taken
        self._snapshotting = False  # a forked child is encoding one
        self._restore: Callable[[Any], None] = lambda data: None
        self._restored = False
        self._started_at = time.monotonic()
        self.snapshot_wait = SNAPSHOT_WAIT_SECONDS
        self._available = False
        # when Redis answered again after being unreachable (None: no outage seen)
        self._reachable_again_at: float | None = None
        self._leader = False
        self._running = False
        self._stopping = threading.Event()  # wakes the loops' pauses on stop()
        self._threads: list[threading.Thread] = []
        self._announcer: threading.Thread | None = None
        self.commands_applied = 0
        self.errors = 0  # failed Redis operations (the broker errors metric)

    def node_key(self, node_id: str) -> str:
        return f"{self.prefix}:node:{node_id}"

    def admin_session_key(self, session_id: str) -> str:
        return f"{self.prefix}:admin_session:{session_id}"

    # ------------------------------------------------------------------ lifecycle

    def start(self, apply: Callable[[Command], None], restore: Callable[[Any], None]) -> None:
        """Restore the snapshot if Redis has one, then start the loops. Without Redis at
        start, the read loop restores it once Redis first answers, before applying anything."""
        self._restore = restore
        try:
            self._restore_snapshot()
        except RedisErrors as error:
            self._set_available(False, error)
        self._running = True
        self._stopping.clear()
        self._announcer = threading.Thread(
            target=self._announce_loop, name=f"broker-announce-{self.node_id}", daemon=True
        )
        self._threads = [
            threading.Thread(
                target=self._read_loop,
                args=(apply,),
                name=f"broker-read-{self.node_id}",
                daemon=True,
            ),
            self._announcer,
        ]
        for thread in self._threads:
            thread.start()

    def _restore_snapshot(self) -> None:
        """Start from the snapshot. A log without a snapshot means the log's start may have
        been lost (a Redis restart): wait a little for the leader to write one (it does when
        it finds none) rather than replay a partial log."""
        raw = self._client.get(self.snapshot_key)
        if raw:
            snapshot = json.loads(raw)
            self._restore(snapshot["state"])
            self.applied_id = snapshot["id"]
        elif (
            self._client.xlen(self.log_key)
            and time.monotonic() - self._started_at < self.snapshot_wait
        ):
            self._set_available(True)
            return
        self._restored = True
        self._set_available(True)

    def _gap_before(self, position: str) -> bool:
        """Whether entries after `position` may have been trimmed away: `P:trimmed` (set with
        each trim, in its transaction) is past it. Asked after the read that started at
        `position`, so a trim before that read is always seen (a trim between the read and
        this question only restores the snapshot once too often)."""
        trimmed: Any = self._client.get(self.trimmed_key)
        if trimmed and stream_id(position) < stream_id(trimmed):
            log.warning(
                "this node fell behind the trimmed log (at %s, trimmed before %s): restoring "
                "the snapshot",
                position,
                trimmed,
            )
            return True
        return False

    def stop(self) -> None:
        self._running = False
        self._stopping.set()
        # an announcement in flight would write the node key and lease back after we delete
        # them: let it end first
        if self._announcer is not None and self._announcer is not threading.current_thread():
            self._announcer.join(STOP_JOIN_SECONDS)
        try:
            self._client.delete(self.node_key(self.node_id))
            self._release(keys=[self.leader_key], args=[self.node_id])
        except RedisErrors:
            pass
        self._leader = False
        self._client.connection_pool.disconnect()  # a command after this connects anew

    # ------------------------------------------------------------------ the log

    def submit(self, command: Command) -> None:
        try:
            pipe = self._client.pipeline()
            pipe.xadd(self.log_key, {"c": encode_command(command)})
            pipe.expire(self.log_key, CLUSTER_STATE_TTL_SECONDS)  # never a log without expiry
            pipe.execute()
        except RedisErrors as error:
            self._set_available(False, error)
            raise BrokerUnavailable(f"Redis is unreachable: {error}") from None

    def _read_loop(self, apply: Callable[[Command], None]) -> None:
        """Read the log from this node's position and hand each entry to `apply`, in order.

        Per read: one `XREAD` (blocking up to READ_BLOCK_MS, up to READ_BATCH entries; under
        load, reads are READ_SPACING_SECONDS apart so each brings several). The
        trim marker is only read when a trim may have passed this node's position: a trim's
        bound is a snapshot taken at least TRIM_SPACING_SECONDS earlier, so within
        GAP_FREE_SECONDS of a read that reached the head of the log, none can have. A batch is
        applied in slices of APPLY_SLICE_SECONDS with a pause between them."""
        backoff = BACKOFF_START_SECONDS
        gap_free_until = 0.0  # before then, no entry after our position can have been trimmed
        while self._running:
            try:
                if not self._restored:
                    self._restore_snapshot()
                    gap_free_until = 0.0
                    if not self._restored:
                        self._stopping.wait(SNAPSHOT_POLL_SECONDS)
                        continue
                position = self.applied_id
                asked_at = time.monotonic()
                batches: Any = self._reader.xread(
                    {self.log_key: position}, count=READ_BATCH, block=READ_BLOCK_MS
                )
                entries = batches[0][1] if batches else []
                if entries and time.monotonic() > gap_free_until and self._gap_before(position):
                    self._restored = False
                    continue
                self._set_available(True)
                backoff = BACKOFF_START_SECONDS
            except RedisErrors as error:
                self._set_available(False, error)
                gap_free_until = 0.0
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)
                continue
            # fewer than asked: this read reached the head of the log when Redis ran it
            gap_free_until = asked_at + GAP_FREE_SECONDS if len(entries) < READ_BATCH else 0.0
            if not self._apply_entries(apply, entries):
                return
            if entries and len(entries) < READ_BATCH:  # following live: let a few more come
                spacing = asked_at + READ_SPACING_SECONDS - time.monotonic()
                if spacing > 0:
                    self._pause(spacing)

    def _apply_entries(self, apply: Callable[[Command], None], entries: Any) -> bool:
        """Apply entries in order, pausing whenever this loop has run APPLY_SLICE_SECONDS
        since it last let others run (reads count too: a read Redis answers at once does not
        yield); False once stopped."""
        for entry_id, fields in entries:
            if not self._running:  # stopped: hand nothing more over
                return False
            try:
                apply(decode_command(fields[b"c"]))
            except Exception:  # one bad entry must not stop the node for good
                log.exception("applying log entry %s failed", entry_id)
            # the position of what is applied, as a snapshot taken in a pause pairs it
            self.applied_id = entry_id.decode()
            self.commands_applied += 1
            if time.monotonic() - self._ran_since >= APPLY_SLICE_SECONDS:
                self._notify_applied()
                self._pause(PAUSE_SECONDS)
        self._notify_applied()
        return True

    def _pause(self, seconds: float) -> None:
        time.sleep(seconds)  # cooperative under gevent
        self._ran_since = time.monotonic()

    def _notify_applied(self) -> None:
        """Wake `wait_caught_up` callers, if any (the position is set before this reads the
        count, and a waiter counts itself before it reads the position: none is missed)."""
        if self._catching_up:
            with self._applied:
                self._applied.notify_all()

    def wait_caught_up(self, timeout: float) -> bool:
        try:
            info = self._client.xinfo_stream(self.log_key)
            target = info["last-generated-id"]
        except redis.ResponseError:  # no log yet: nothing to catch up with
            return True
        except RedisErrors as error:
            self._set_available(False, error)
            return False
        target_id = stream_id(target)
        deadline = time.monotonic() + timeout
        with self._applied:
            self._catching_up += 1
            try:
                while stream_id(self.applied_id) < target_id:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._applied.wait(remaining)
            finally:
                self._catching_up -= 1
        return True

    # ------------------------------------------------------------------ nodes and leader

    def _announce_loop(self) -> None:
        while self._running:
            try:
                pipe = self._client.pipeline()
                pipe.set(self.node_key(self.node_id), "1", px=self.node_ttl_ms)
                pipe.set(self.leader_key, self.node_id, nx=True, px=self.lease_ms)
                _, acquired = pipe.execute()
                self._leader = bool(acquired) or bool(
                    self._renew(keys=[self.leader_key], args=[self.node_id, self.lease_ms])
                )
                self._set_available(True)
            except RedisErrors as error:
                self._leader = False
                self._set_available(False, error)
            self._stopping.wait(self.announce_interval)

    def is_leader(self) -> bool:
        return self._leader and self._available

    def live_nodes(self, candidates: set[str]) -> set[str]:
        if not candidates:
            return set()
        again = self._reachable_again_at
        if again is not None and time.monotonic() - again < self.presence_ttl:
            # Redis was unreachable a moment ago: it may have restarted without its keys, and
            # live nodes announce again within presence_ttl. A missing key proves nothing yet.
            return set(candidates)
        ordered = sorted(candidates)
        try:
            values = self._client.mget([self.node_key(node) for node in ordered])
        except RedisErrors as error:
            self._set_available(False, error)
            return set(candidates)  # unknown: assume alive rather than end connections
        return {node for node, value in zip(ordered, values, strict=True) if value is not None}

    # ------------------------------------------------------------------ snapshots

    def has_snapshot(self) -> bool:
        try:
            return bool(self._client.exists(self.snapshot_key))
        except RedisErrors as error:
            self._set_available(False, error)
            return True  # nothing to do about it now

    def save_snapshot(self, snapshot: Any) -> None:
        """Pair the snapshot with the last applied entry (taken now, before any I/O) and store
        it (see `_store_snapshot`). Encodes it here, holding up this node: the leader uses
        `save_snapshot_of`."""
        entry_id = self.applied_id
        self._store_snapshot(entry_id, self._payload(entry_id, snapshot))

    def save_snapshot_of(self, take: Callable[[], Any]) -> bool:
        """Store the snapshot `take()` gives, taken now, without holding up this node: a forked
        child calls `take` on its copy of the process and encodes the result; a greenlet (a
        thread unpatched) reads it back and stores it, paired with the entry applied at the
        fork. False if the previous one is still being written (nothing is started)."""
        if self._snapshotting:
            return False
        entry_id = self.applied_id  # no yield between this and the fork
        try:
            child = fork_encoder(lambda: self._payload(entry_id, take()).encode())
        except OSError as error:
            log.warning("could not fork to encode the snapshot (%s): encoding it here", error)
            self.save_snapshot(take())
            return True
        self._snapshotting = True
        threading.Thread(
            target=self._store_forked_snapshot,
            args=(child, entry_id),
            name=f"broker-snapshot-{self.node_id}",
            daemon=True,
        ).start()
        return True

    def _store_forked_snapshot(self, child: Child, entry_id: str) -> None:
        try:
            payload = read_encoded(child)
            if payload is None:
                log.error("the forked snapshot encoder failed: no snapshot stored this time")
            else:
                self._store_snapshot(entry_id, payload)
        finally:
            self._snapshotting = False

    @staticmethod
    def _payload(entry_id: str, snapshot: Any) -> str:
        return encoding.dumps({"id": entry_id, "state": snapshot})

    def _store_snapshot(self, entry_id: str, payload: str | bytes) -> None:
        """Store a snapshot after `entry_id` and trim the log up to the previous snapshot (one
        interval of slack for nodes that read a little behind). A trim waits until the
        previous snapshot is TRIM_SPACING_SECONDS old (what lets readers skip the trim
        marker, see `_read_loop`); the leader's are 10 s apart, so it never waits there."""
        trim = self._previous_snapshot_id
        if trim:
            too_soon = self._previous_snapshot_at + TRIM_SPACING_SECONDS - time.monotonic()
            if too_soon > 0 and self._stopping.wait(too_soon):
                trim = None  # stopping: no trim
        try:
            pipe = self._client.pipeline()
            pipe.set(self.snapshot_key, payload, ex=CLUSTER_STATE_TTL_SECONDS)
            pipe.expire(self.log_key, CLUSTER_STATE_TTL_SECONDS)
            if trim:
                pipe.xtrim(self.log_key, minid=trim, approximate=False)
                # entries before this id are gone: a node that has not applied them restores
                pipe.set(self.trimmed_key, trim, ex=CLUSTER_STATE_TTL_SECONDS)
            pipe.execute()
            self._previous_snapshot_id = entry_id
            self._previous_snapshot_at = time.monotonic()  # after its position was fixed
        except RedisErrors as error:
            self._set_available(False, error)

    # ------------------------------------------------------------------ admin sessions

    def open_admin_session(self, session_id: str, ttl: float) -> None:
        # PX rather than EX: a ttl in whole seconds would round short ones away
        ttl_ms = max(1, round(ttl * 1000))
        self._call(lambda: self._client.set(self.admin_session_key(session_id), "1", px=ttl_ms))

    def admin_session_is_open(self, session_id: str) -> bool:
        return bool(self._call(lambda: self._client.exists(self.admin_session_key(session_id))))

    def close_admin_session(self, session_id: str) -> bool:
        return bool(self._call(lambda: self._client.delete(self.admin_session_key(session_id))))

    def _call(self, command: Callable[[], Any]) -> Any:
        """One Redis command for a request: its answer, or BrokerUnavailable."""
        try:
            return command()
        except RedisErrors as error:
            self._set_available(False, error)
            raise BrokerUnavailable(f"Redis is unreachable: {error}") from None

    # ------------------------------------------------------------------ health

    @property
    def available(self) -> bool:
        return self._available

    def _set_available(self, available: bool, error: BaseException | None = None) -> None:
        if error is not None:
            self.errors += 1
        if available != self._available:
            if available:
                log.info("Redis broker at %s reachable", self.url)
                if self._running:  # back after an outage, not the first contact at start
                    self._reachable_again_at = time.monotonic()
            else:
                log.error("Redis broker at %s unreachable: %s", self.url, error)
        self._available = available

    def stats(self) -> dict[str, Any]:
        return {
            "broker": "redis",
            "node_id": self.node_id,
            "leader": self._leader,
            "available": self._available,
            "applied_id": self.applied_id,
            "commands_applied": self.commands_applied,
            "errors": self.errors,
        }
