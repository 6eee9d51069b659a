"""The sans-I/O websocket frame reader and writer (RFC 6455)."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from channelstream.transport.frames import (
    OPCODE_BINARY,
    OPCODE_CLOSE,
    OPCODE_CONTINUATION,
    OPCODE_PING,
    OPCODE_PONG,
    OPCODE_TEXT,
    CloseReceived,
    FrameReader,
    MessageReceived,
    MessageTooBig,
    PingReceived,
    ProtocolViolation,
    encode_close,
    encode_frame,
)

LIMIT = 1000


def client_frame(payload: bytes, opcode: int = OPCODE_TEXT, fin: bool = True) -> bytes:
    """A masked frame as a browser sends it."""
    mask = os.urandom(4)
    length = len(payload)
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        header = struct.pack("!BB", first, 0x80 | length)
    elif length < 0x10000:
        header = struct.pack("!BBH", first, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, length)
    masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
    return header + mask + masked


def parse_server_frame(data: bytes) -> tuple[int, bytes]:
    opcode = data[0] & 0x0F
    assert data[0] & 0x80  # fin
    length = data[1] & 0x7F
    offset = 2
    if length == 126:
        length = struct.unpack_from("!H", data, 2)[0]
        offset = 4
    elif length == 127:
        length = struct.unpack_from("!Q", data, 2)[0]
        offset = 10
    assert not data[1] & 0x80  # servers do not mask
    assert len(data) == offset + length
    return opcode, data[offset:]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_encode_frame_uses_the_shortest_length_form(size):
    payload = b"x" * size
    opcode, decoded = parse_server_frame(encode_frame(payload))
    assert opcode == OPCODE_TEXT
    assert decoded == payload


def test_encode_close_carries_the_code_and_a_reason():
    opcode, payload = parse_server_frame(encode_close(4002, b"too_slow"))
    assert opcode == OPCODE_CLOSE
    assert struct.unpack("!H", payload[:2])[0] == 4002
    assert payload[2:] == b"too_slow"


def test_text_and_binary_messages_count_as_activity():
    reader = FrameReader(LIMIT)
    events = reader.feed(client_frame(b"hello") + client_frame(b"\x00\xff", OPCODE_BINARY))
    assert events == [MessageReceived(), MessageReceived()]


def test_fragmented_message_is_one_message():
    reader = FrameReader(LIMIT)
    data = (
        client_frame(b"he", OPCODE_TEXT, fin=False)
        + client_frame(b"ping-inside", OPCODE_PING)
        + client_frame(b"llo", OPCODE_CONTINUATION)
    )
    assert reader.feed(data) == [PingReceived(b"ping-inside"), MessageReceived()]


def test_ping_payload_is_unmasked():
    assert FrameReader(LIMIT).feed(client_frame(b"abc", OPCODE_PING)) == [PingReceived(b"abc")]


def test_pong_is_ignored():
    assert FrameReader(LIMIT).feed(client_frame(b"abc", OPCODE_PONG)) == []


def test_message_at_the_limit_is_fine_one_byte_more_is_too_big():
    assert FrameReader(LIMIT).feed(client_frame(b"x" * LIMIT)) == [MessageReceived()]
    reader = FrameReader(LIMIT)
    assert reader.feed(client_frame(b"x" * (LIMIT + 1))) == [MessageTooBig()]
    assert reader.finished


def test_too_big_is_reported_from_the_header_alone():
    header = struct.pack("!BBQ", 0x81, 0x80 | 127, 10**9) + b"mask"
    reader = FrameReader(LIMIT)
    assert reader.feed(header) == [MessageTooBig()]


def test_fragments_adding_up_over_the_limit_are_too_big():
    reader = FrameReader(LIMIT)
    half = b"x" * (LIMIT // 2 + 1)
    data = client_frame(half, OPCODE_TEXT, fin=False) + client_frame(half, OPCODE_CONTINUATION)
    assert reader.feed(data) == [MessageTooBig()]


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (struct.pack("!H", 1000), 1000),
        (struct.pack("!H", 4000) + b"bye", 4000),
        (b"", 1005),  # no status code
        (struct.pack("!H", 999), 1002),  # not a code a peer may send
        (struct.pack("!H", 1005), 1002),
        (b"\x03", 1002),  # one byte: malformed
    ],
)
def test_close_frame_reports_the_code(payload, code):
    reader = FrameReader(LIMIT)
    assert reader.feed(client_frame(payload, OPCODE_CLOSE) + client_frame(b"after")) == [
        CloseReceived(code)
    ]
    assert reader.finished


@pytest.mark.parametrize(
    "data",
    [
        client_frame(b"x" * 126, OPCODE_PING),  # control frame too long
        client_frame(b"x", OPCODE_PING, fin=False),  # fragmented control frame
        client_frame(b"x", 0x3),  # reserved opcode
        client_frame(b"x", OPCODE_CONTINUATION),  # continuation without a start
        client_frame(b"a", OPCODE_TEXT, fin=False) + client_frame(b"b", OPCODE_TEXT),
        bytes([0xC1]) + client_frame(b"x")[1:],  # RSV1 set
    ],
)
def test_protocol_violations_stop_the_reader(data):
    reader = FrameReader(LIMIT)
    events = reader.feed(data)
    assert isinstance(events[-1], ProtocolViolation)
    assert reader.finished
    assert reader.feed(client_frame(b"more")) == []


@given(
    messages=st.lists(st.binary(max_size=300), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=20),
)
def test_events_do_not_depend_on_how_the_bytes_are_split(messages, cuts):
    stream = b"".join(
        client_frame(message, OPCODE_PING)
        if len(message) <= 125 and index % 3 == 0
        else client_frame(message)
        for index, message in enumerate(messages)
    )
    whole = FrameReader(LIMIT).feed(stream)
    reader = FrameReader(LIMIT)
    split: list[object] = []
    previous = 0
    for cut in sorted({min(cut, len(stream)) for cut in cuts}) + [len(stream)]:
        split.extend(reader.feed(stream[previous:cut]))
        previous = cut
    assert split == whole
    assert len(whole) == len(messages)
