"""The websocket wire format (RFC 6455), sans I/O: building server frames and reading client
frames incrementally from whatever bytes arrive.

The server ignores what clients send (every complete message only counts as activity), so
the reader never keeps a data payload: it counts its bytes and skips them. A message whose
declared size exceeds the limit is reported as soon as its header arrives, before any of its
payload is read. Only control frames (close, ping, pong; at most 125 bytes) are buffered.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from channelstream.close_codes import CloseCode

OPCODE_CONTINUATION = 0x0
OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2
OPCODE_CLOSE = 0x8
OPCODE_PING = 0x9
OPCODE_PONG = 0xA
DATA_OPCODES = frozenset({OPCODE_CONTINUATION, OPCODE_TEXT, OPCODE_BINARY})
CONTROL_OPCODES = frozenset({OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG})
MAX_CONTROL_PAYLOAD = 125
PROTOCOL_ERROR = CloseCode.PROTOCOL_ERROR
NO_STATUS = CloseCode.NO_STATUS  # the close frame had no code: answered with 1000


def encode_frame(payload: bytes, opcode: int = OPCODE_TEXT) -> bytes:
    """One unfragmented, unmasked server frame."""
    length = len(payload)
    first = 0x80 | opcode
    if length < 126:
        header = struct.pack("!BB", first, length)
    elif length < 0x10000:
        header = struct.pack("!BBH", first, 126, length)
    else:
        header = struct.pack("!BBQ", first, 127, length)
    return header + payload


def encode_close(code: int, reason: bytes = b"") -> bytes:
    return encode_frame(struct.pack("!H", code) + reason[: MAX_CONTROL_PAYLOAD - 2], OPCODE_CLOSE)


def valid_close_code(code: int) -> bool:
    """Codes a peer may send in a close frame (RFC 6455 §7.4)."""
    return code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011) or 3000 <= code <= 4999


@dataclass(frozen=True)
class MessageReceived:
    """A complete data message arrived (its content is not kept)."""


@dataclass(frozen=True)
class PingReceived:
    payload: bytes


@dataclass(frozen=True)
class CloseReceived:
    """The peer closed; `code` is its status code (NO_STATUS if it sent none)."""

    code: int


@dataclass(frozen=True)
class MessageTooBig:
    """A message's declared size exceeds the limit; nothing more is read."""


@dataclass(frozen=True)
class ProtocolViolation:
    """The bytes are not a valid client frame stream; nothing more is read."""

    reason: str


ReaderEvent = MessageReceived | PingReceived | CloseReceived | MessageTooBig | ProtocolViolation


class FrameReader:
    """Turns bytes from a client into events; stops for good after a close or an error."""

    def __init__(self, max_message_size: int) -> None:
        self.max_message_size = max_message_size
        self._buffer = bytearray()  # an incomplete header, or a control frame's payload
        self._skip = 0  # data payload bytes still to skip
        self._message_size = 0  # bytes of the current (possibly fragmented) message so far
        self._in_message = False  # a fragmented message awaits its continuation frames
        self.finished = False

    def feed(self, data: bytes) -> list[ReaderEvent]:
        events: list[ReaderEvent] = []
        buffer = self._buffer
        buffer += data
        while buffer and not self.finished:
            if self._skip:
                step = min(self._skip, len(buffer))
                del buffer[:step]
                self._skip -= step
                continue
            consumed = self._parse_one(events)
            if consumed == 0:
                break  # wait for more bytes
            del buffer[:consumed]
        return events

    def _fail(self, events: list[ReaderEvent], event: ReaderEvent) -> int:
        events.append(event)
        self.finished = True
        self._buffer.clear()
        return 0

    def _parse_one(self, events: list[ReaderEvent]) -> int:
        """Handle one frame header (and a control frame's payload) at the buffer's start.
        Returns the bytes consumed, 0 if more are needed."""
        buffer = self._buffer
        if len(buffer) < 2:
            return 0
        fin = buffer[0] & 0x80
        opcode = buffer[0] & 0x0F
        masked = buffer[1] & 0x80
        length = buffer[1] & 0x7F
        offset = 2
        if length == 126:
            if len(buffer) < 4:
                return 0
            length = struct.unpack_from("!H", buffer, 2)[0]
            offset = 4
        elif length == 127:
            if len(buffer) < 10:
                return 0
            length = struct.unpack_from("!Q", buffer, 2)[0]
            offset = 10
        mask = b""
        if masked:
            if len(buffer) < offset + 4:
                return 0
            mask = bytes(buffer[offset : offset + 4])
            offset += 4
        if buffer[0] & 0x70:
            return self._fail(events, ProtocolViolation("reserved bits set"))
        if opcode in CONTROL_OPCODES:
            if not fin or length > MAX_CONTROL_PAYLOAD:
                return self._fail(events, ProtocolViolation("invalid control frame"))
            if len(buffer) < offset + length:
                return 0
            payload = bytes(buffer[offset : offset + length])
            if mask:
                payload = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
            self._control_event(opcode, payload, events)
            return offset + length
        if opcode not in DATA_OPCODES:
            return self._fail(events, ProtocolViolation(f"unknown opcode {opcode}"))
        if (opcode == OPCODE_CONTINUATION) != self._in_message:
            return self._fail(events, ProtocolViolation("unexpected continuation"))
        self._message_size += length
        if self._message_size > self.max_message_size:
            return self._fail(events, MessageTooBig())
        self._in_message = not fin
        if fin:
            self._message_size = 0
            events.append(MessageReceived())
        self._skip = length
        return offset

    def _control_event(self, opcode: int, payload: bytes, events: list[ReaderEvent]) -> None:
        if opcode == OPCODE_PING:
            events.append(PingReceived(payload))
        elif opcode == OPCODE_CLOSE:
            if not payload:
                code = NO_STATUS
            elif len(payload) == 1:
                code = PROTOCOL_ERROR
            else:
                code = struct.unpack("!H", payload[:2])[0]
                if not valid_close_code(code):
                    code = PROTOCOL_ERROR
            events.append(CloseReceived(code))
            self.finished = True
