"""The webhook sender: the cluster's pending events, POSTed in order to `webhook_url`.

The events themselves are replicated state (`core.webhooks`): every node holds the same
queue. Only the node that leads the cluster sends (with the memory broker, the one node).
It takes up to `webhook_batch_max` events from the head of the queue, POSTs them signed
(`webhook_signature`), and after a 2xx submits `AcknowledgeWebhooks`, which drops them on
every replica. One request is in flight at a time, so batches are never reordered; a
failure is retried with exponential backoff (1 s doubling to 60 s, with jitter) for
`webhook_retry_for` seconds, after which the batch is acknowledged as given up, counted and
logged. A leader killed mid-batch acknowledged nothing: the next leader sends the same
events (same ids) again.

It runs on a greenlet of its own and reads the queue, never holding it: a slow or dead
receiver costs one socket and a timer, never delivery, connects or the API. Each request is
bounded as a whole by `webhook_timeout` (connect, send, answer), at most `ANSWER_READ_MAX`
bytes of an answer's body are read (its headers: http.client's bounds), redirects are not
followed.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from urllib.parse import urlsplit

import gevent
import urllib3
from gevent.event import Event

from channelstream import encoding
from channelstream.broker import BrokerUnavailable
from channelstream.core.webhooks import WebhookEvent
from channelstream.webhook_signature import SIGNATURE_HEADER, signature_header

log = logging.getLogger(__name__)

BACKOFF_START_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 60.0
ANSWER_READ_MAX = 64 * 1024  # of a receiver's answer; the rest is never read
IDLE_CHECK_SECONDS = 1.0  # how often a node that does not send looks again (leadership)
ACK_RETRY_SECONDS = 0.5
# request latency buckets (seconds) for the histogram
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class WebhookSource(Protocol):
    """What the sender needs of the Node."""

    def sends_webhooks(self) -> bool:
        """Whether this node is the one that sends now (it leads the cluster)."""

    def pending_webhooks(self, limit: int) -> list[WebhookEvent]:
        """The oldest `limit` events not yet acknowledged."""

    def acknowledge_webhooks(self, up_to: int, delivered: bool) -> None:
        """Drop events up to `up_to` on every replica. Raises BrokerUnavailable."""


@dataclass
class WebhookCounters:
    """What this node's sender did, since it started (metrics, admin panel)."""

    events_sent: int = 0
    requests_sent: int = 0  # answered 2xx
    requests_failed: int = 0  # retried or given up on
    events_dropped: int = 0  # given up on after webhook_retry_for
    last_success_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    # request durations, as cumulative Prometheus buckets (upper bound -> count), and sum
    latency_buckets: dict[float, int] | None = None
    latency_sum: float = 0.0
    latency_count: int = 0

    def observe(self, seconds: float) -> None:
        if self.latency_buckets is None:
            self.latency_buckets = dict.fromkeys(LATENCY_BUCKETS, 0)
        for bound in LATENCY_BUCKETS:
            if seconds <= bound:
                self.latency_buckets[bound] += 1
        self.latency_sum += seconds
        self.latency_count += 1


class Attempt:
    """The outcome of one POST: delivered, or why not."""

    def __init__(self, error: str | None = None) -> None:
        self.error = error

    @property
    def delivered(self) -> bool:
        return self.error is None


def backoff_delay(failures: int, rand: Callable[[], float] = random.random) -> float:
    """Seconds before retry number `failures` (1 s doubling to 60 s), with "equal jitter":
    between half and all of it, so that retries spread out but never come at once."""
    doublings = min(max(0, failures - 1), 32)  # past the cap anyway; 2**n stays a float
    base = min(BACKOFF_MAX_SECONDS, BACKOFF_START_SECONDS * 2**doublings)
    return base / 2 + rand() * base / 2


def displayed_url(url: str) -> str:
    """The URL without user info, query or fragment (which may hold a credential)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


class WebhookSender:
    """Sends the pending events of `source` to `url` while `source` says it sends."""

    def __init__(
        self,
        source: WebhookSource,
        *,
        url: str,
        secret: str,
        timeout: float,
        batch_max: int,
        retry_for: float,
        clock: Callable[[], datetime],
    ) -> None:
        self.source = source
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self.batch_max = batch_max
        self.retry_for = retry_for
        self.clock = clock
        self.counters = WebhookCounters()
        self._wakeup = Event()
        self._greenlet: gevent.Greenlet | None = None
        self._http = urllib3.PoolManager(
            num_pools=1, maxsize=1, retries=False, timeout=urllib3.Timeout(timeout, timeout)
        )

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None
        self._http.clear()

    def wake(self) -> None:
        """New events were queued: send them now rather than at the next check."""
        self._wakeup.set()

    # ------------------------------------------------------------------ the loop

    def _run(self) -> None:
        while True:
            try:
                self._send_pending()
            except gevent.GreenletExit:
                raise
            except Exception:  # a bug here must not stop webhooks for good
                log.exception("webhook sender failed; going on")
            self._wakeup.wait(IDLE_CHECK_SECONDS)
            self._wakeup.clear()

    def _send_pending(self) -> None:
        """Send the head of the queue, batch after batch, while this node sends and events
        wait (the head is re-read before each try: it may have grown, or an earlier
        sender's late acknowledgement may have taken it). After a failure, wait the backoff
        (it keeps growing across batches until a delivery), and first give up on the
        events older than `retry_for`: each event's age counts from when it was made, so
        one made late in an outage gets its full time too, whichever node sends it."""
        failures = 0
        while self.source.sends_webhooks():
            batch = self.source.pending_webhooks(self.batch_max)
            if not batch:
                return
            attempt = self.post(batch)
            if attempt.delivered:
                failures = 0
                self.counters.requests_sent += 1
                self.counters.events_sent += len(batch)
                self.counters.last_success_at = self.clock()
                self._acknowledge(batch[-1].number, delivered=True)
                continue
            failures += 1
            self.counters.requests_failed += 1
            self.counters.last_error = attempt.error
            self.counters.last_error_at = self.clock()
            self._give_up_on_expired(attempt, failures)
            head = self.source.pending_webhooks(1)
            if not head:
                return
            delay = min(backoff_delay(failures), max(0.0, self.retry_for - self._age(head[0])))
            log.warning(
                "webhook: POST %s failed (%s) for %d events: retry %d in %.1f s",
                displayed_url(self.url),
                attempt.error,
                len(batch),
                failures,
                delay,
            )
            gevent.sleep(delay)

    def _age(self, event: WebhookEvent) -> float:
        return (self.clock() - event.time).total_seconds()

    def _give_up_on_expired(self, attempt: Attempt, failures: int) -> None:
        """Drop the events made more than `retry_for` ago (the oldest ones, all at once:
        never one failed request per stale batch), count them and say so in one line."""
        limit = self.batch_max
        while True:
            pending = self.source.pending_webhooks(limit)
            expired = 0
            for event in pending:
                if self._age(event) < self.retry_for:
                    break
                expired += 1
            if expired < len(pending) or len(pending) < limit:
                break
            limit *= 4  # all expired so far: look further
        if not expired:
            return
        first, last = pending[0], pending[expired - 1]
        self.counters.events_dropped += expired
        log.error(
            "webhook: gave up on %d events (%s .. %s) not delivered within %g s "
            "(webhook_retry_for) after %d failed tries: dropped; last error: %s",
            expired,
            first.id,
            last.id,
            self.retry_for,
            failures,
            attempt.error,
        )
        self._acknowledge(last.number, delivered=False)

    def _acknowledge(self, up_to: int, delivered: bool) -> None:
        """Tell the cluster, retried while Redis is unreachable and this node still sends
        (if it stops sending, the next sender sends these events again: duplicates, not
        losses)."""
        while True:
            try:
                self.source.acknowledge_webhooks(up_to, delivered)
                return
            except BrokerUnavailable:
                if not self.source.sends_webhooks():
                    return
                gevent.sleep(ACK_RETRY_SECONDS)

    # ------------------------------------------------------------------ one request

    def body(self, batch: list[WebhookEvent]) -> bytes:
        payload = {
            "time_ms": int(time.time() * 1000),
            "events": [event.body() for event in batch],
        }
        return encoding.dumps(payload).encode()

    def post(self, batch: list[WebhookEvent]) -> Attempt:
        """One signed POST of `batch`, bounded as a whole by `timeout`."""
        body = self.body(batch)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "channelstream-webhooks",
            SIGNATURE_HEADER: signature_header(self.secret, body, int(time.time())),
        }
        started = time.monotonic()
        try:
            with gevent.Timeout(self.timeout):
                response = self._http.request(
                    "POST",
                    self.url,
                    body=body,
                    headers=headers,
                    redirect=False,
                    preload_content=False,
                )
                try:
                    whole = len(response.read(ANSWER_READ_MAX + 1)) <= ANSWER_READ_MAX
                except BaseException:
                    whole = False
                    raise
                finally:
                    if not whole:
                        response.close()  # never back to the pool half read
                    response.release_conn()
        except gevent.Timeout:
            return self._observed(started, Attempt(f"no complete answer within {self.timeout:g} s"))
        except (urllib3.exceptions.HTTPError, OSError) as error:
            return self._observed(started, Attempt(f"request error: {error}"))
        if 200 <= response.status < 300:
            return self._observed(started, Attempt())
        return self._observed(started, Attempt(f"status {response.status}"))

    def _observed(self, started: float, attempt: Attempt) -> Attempt:
        self.counters.observe(time.monotonic() - started)
        return attempt
