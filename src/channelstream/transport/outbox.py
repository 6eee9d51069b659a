"""A listener's bounded outbound buffer: the backpressure point of the server.

The Node pushes already-encoded frames; one writer per listener takes everything waiting and
sends it as one JSON array. A listener that falls `limit` frames behind is closed with 4002
rather than allowed to grow memory: it reconnects and catches up from stored frames.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from gevent.event import Event

from channelstream.close_codes import CloseCode


class Outbox:
    """Frames waiting for one listener (a websocket, SSE stream or long poll) of a connection."""

    def __init__(self, conn_id: str, limit: int, served_up_to: int, kind: str) -> None:
        self.conn_id = conn_id
        self.kind = kind  # "ws", "sse" or "poll": a label for metrics and log lines
        self.heartbeats = True  # whether it gets `[]` every heartbeat_interval
        self.limit = limit
        # seq of the newest frame handed to the client; becomes the catchup cursor on detach
        self.served_up_to = served_up_to
        self.close_code: CloseCode | None = None
        self.close_reason = ""  # the close frame's reason text, when not the code's name
        self.peer = ""  # the client's address, for log lines (set by the transport)
        self.discarded = 0  # frames thrown away by the close (catchup replays them)
        self._items: deque[tuple[int, str]] = deque()  # (seq, encoded frames without brackets)
        self._queued_frames = 0  # frames in `_items` (an item may join several)
        self._heartbeat_due = False
        self._taken_up_to = served_up_to
        self._ready = Event()
        # called once with the code when a close is decided (the transport's watchdog hook)
        self.on_close: Callable[[CloseCode], object] | None = None
        # A transport that writes without a greenlet of its own (websockets) sets this: it is
        # called, instead of waking a waiting writer, whenever something is waiting.
        self.notify: Callable[[], object] | None = None
        # Such a transport may also take a frame at once when nothing is waiting: called with
        # (seq, encoded), True when the frame is taken (the listener then owns its delivery).
        self.send_now: Callable[[int, str], bool] | None = None

    @property
    def closed(self) -> bool:
        return self.close_code is not None

    def push(self, seq: int, encoded: str, frames: int = 1) -> bool:
        """Queue `frames` encoded frames (comma-joined JSON objects; `seq` is the last one's).
        False if the listener is closed or just overflowed: `limit` counts frames, however
        they were pushed."""
        if self.close_code is not None:
            return False
        if not self._items and self.send_now is not None and self.send_now(seq, encoded):
            return True  # the common case: an idle websocket whose kernel buffer has room
        if self._queued_frames + frames > self.limit and self._items:
            self.close(CloseCode.TOO_SLOW)
            return False
        self._items.append((seq, encoded))
        self._queued_frames += frames
        self._wake()
        return True

    def push_heartbeat(self) -> None:
        if self.close_code is None:
            self._heartbeat_due = True
            self._wake()

    def close(self, code: CloseCode, reason: str = "") -> None:
        """Ask the writer to close with `code` (and `reason`, e.g. the one /user_disconnect
        was given); frames not yet written are dropped (catchup replays them: `served_up_to`
        is not advanced)."""
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason
            self.discarded = self._queued_frames
            self._items.clear()
            self._queued_frames = 0
            if self.on_close is not None:
                self.on_close(code)
            self._wake()

    def _wake(self) -> None:
        if self.notify is not None:
            self.notify()
        else:
            self._ready.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until something is waiting (frames, heartbeat or close) or `timeout` passes."""
        return self._ready.wait(timeout)

    def take(self) -> str | None:
        """Everything waiting as one JSON array text; `[]` for a lone heartbeat; None if idle.

        Call `confirm_sent()` once the text has reached the client: only then do the taken
        frames count as served (a send that fails leaves them to catchup).
        """
        parts = self.take_parts()
        return None if parts is None else "[" + ",".join(parts) + "]"

    def take_parts(self) -> list[str] | None:
        """Like `take`, the array's items (encoded frames) unjoined: [] for a heartbeat."""
        self._ready.clear()
        if self._items:
            parts = [encoded for _, encoded in self._items]
            self._taken_up_to = self._items[-1][0]
            self._items.clear()
            self._queued_frames = 0
            self._heartbeat_due = False
            return parts
        if self._heartbeat_due:
            self._heartbeat_due = False
            return []
        return None

    def confirm_sent(self) -> None:
        self.served_up_to = max(self.served_up_to, self._taken_up_to)

    def taken_directly(self, seq: int) -> None:
        """`send_now` took the frame `seq`: it counts as taken, to be confirmed as usual."""
        self._taken_up_to = seq

    def sent_directly(self, seq: int) -> None:
        """`send_now` took the frame `seq` and the kernel all of it: taken and confirmed."""
        self._taken_up_to = seq
        if seq > self.served_up_to:
            self.served_up_to = seq

    def __len__(self) -> int:
        """Frames waiting."""
        return self._queued_frames
