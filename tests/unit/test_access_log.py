"""Access lines and log formats: one printable line whatever a client sent, no API token."""

import json
import logging
import re
import sys
from datetime import datetime

import pytest
from webob import Request

from channelstream.logs import EscapingLoggerAdapter, JsonFormatter, apply_log_format
from channelstream.server import access_line, redact_secrets, status_code

# Every character some reader takes for a line break, and some a terminal acts on.
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
HOSTILE = LINE_BREAKS + "\x00\x07\x1b\x7f\x9b\u202e"
WHEN = datetime(2024, 1, 2, 3, 4, 5)


def line_of(query: str) -> str:
    return f"GET /info?{query} HTTP/1.1"


# (query, what the access line shows of it)
REDACTIONS = [
    ("secret=TOKEN", "secret=[redacted]"),
    ("%73ecret=TOKEN", "%73ecret=[redacted]"),
    ("%73%65%63%72%65%74=TOKEN", "%73%65%63%72%65%74=[redacted]"),
    ("sec%72e%74=TOKEN", "sec%72e%74=[redacted]"),
    ("a=1&%73%65cret=TOKEN", "a=1&%73%65cret=[redacted]"),
    ("a=1;secret=TOKEN", "a=1;secret=[redacted]"),
    ("secret=ONE&secret=TWO", "secret=[redacted]&secret=[redacted]"),
    ("secret=TOK=EN&b=2", "secret=[redacted]&b=2"),
    ("%73ecret=TO+KEN%26secret%3D", "%73ecret=[redacted]"),
    ("&&secret=TOKEN&", "&&secret=[redacted]&"),
    ("=x&secret=TOKEN", "=x&secret=[redacted]"),
    # names the server does not read as `secret` keep their values
    ("SECRET=x", "SECRET=x"),
    ("Secret=x", "Secret=x"),
    ("secret+=x", "secret+=x"),
    ("s+ecret=x", "s+ecret=x"),
    ("secret%2B=x", "secret%2B=x"),
    ("%2Bsecret=x", "%2Bsecret=x"),
    ("secret%00=x", "secret%00=x"),
    ("secrets=x&my_secret=y", "secrets=x&my_secret=y"),
    ("secret", "secret"),
    ("a=%41&b=c", "a=%41&b=c"),
]


@pytest.mark.parametrize(("query", "shown"), REDACTIONS)
def test_a_secret_parameter_is_redacted_by_its_decoded_name(query, shown):
    assert redact_secrets(line_of(query)) == line_of(shown)


@pytest.mark.parametrize("query", [query for query, _ in REDACTIONS])
def test_every_value_the_server_reads_as_secret_is_redacted(query):
    """WebOb (what `request.params` reads) is the judge of what a `secret` parameter is."""
    request = Request.blank("/info")
    request.environ["QUERY_STRING"] = query
    redacted = redact_secrets(line_of(query))
    for value in request.GET.getall("secret"):
        for word in re.findall(r"[A-Z]{2,}", value):
            assert word not in redacted


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        # gevent splits the request line at any whitespace and refuses these; the token the
        # client meant is still hidden whole
        ("GET /info?secret=TO\rKEN HTTP/1.1", "GET /info?secret=[redacted] HTTP/1.1"),
        ("GET /info?secret=TO\x85KEN HTTP/1.1", "GET /info?secret=[redacted] HTTP/1.1"),
        ("GET /info?a=1\tsecret=TOKEN HTTP/1.1", "GET /info?a=1\tsecret=[redacted] HTTP/1.1"),
        ("GE?T /info?secret=TOKEN HTTP/1.1", "GE?T /info?secret=[redacted] HTTP/1.1"),
        ("GET /info?secret=TOKEN", "GET /info?secret=[redacted]"),
        # after a second "?" too, though the server reads the name `x?secret`: better too much
        ("GET /info?x?secret=TOKEN HTTP/1.1", "GET /info?x?secret=[redacted] HTTP/1.1"),
        # gevent's refusal messages quote the request line
        (
            "Invalid HTTP method: 'GET /info?secret=TO\\rKEN HTTP/1.1\\r\\n'",
            "Invalid HTTP method: 'GET /info?secret=[redacted] HTTP/1.1\\r\\n'",
        ),
    ],
)
def test_a_token_in_a_malformed_request_line_is_redacted(line, shown):
    assert redact_secrets(line) == shown


@pytest.mark.parametrize(
    ("query", "shown"),
    [
        ("token=eyJ.a.b", "token=[redacted]"),
        ("conn_id=x&%74oken=eyJ.a.b&c=1", "conn_id=x&%74oken=[redacted]&c=1"),
        ("tokens=kept&my_token=kept", "tokens=kept&my_token=kept"),
    ],
)
def test_a_connection_token_is_redacted_like_a_secret(query, shown):
    assert redact_secrets(line_of(query)) == line_of(shown)


def test_a_line_without_a_secret_parameter_is_unchanged():
    for line in ["GET / HTTP/1.1", "GET /a%20b?c=d&e HTTP/1.1", "POST /message HTTP/1.1"]:
        assert redact_secrets(line) == line


def test_an_access_line_has_gevents_layout():
    line = access_line("10.0.0.7", "GET /info HTTP/1.1", "200", 123, 0.25, WHEN)
    assert line == '10.0.0.7 - - [2024-01-02 03:04:05] "GET /info HTTP/1.1" 200 123 0.250000'
    refused = access_line("", "GARBAGE", "400", 0, None, WHEN)
    assert refused == '- - - [2024-01-02 03:04:05] "GARBAGE" 400 - -'


@pytest.mark.parametrize("char", HOSTILE)
def test_an_access_line_is_one_printable_ascii_line_whatever_the_request_line(char):
    line = access_line("127.0.0.1", f"GET /a{char}b?q={char} HTTP/1.1", "400", 0, None, WHEN)
    assert line.isascii()
    assert line.isprintable()
    assert line.splitlines() == [line]
    assert repr(char)[1:-1] in line  # shown as its escape, not dropped


def test_an_access_line_escapes_quotes_and_backslashes_and_redacts():
    line = access_line("127.0.0.1", 'GET /"x\\y?%73ecret=TOKEN HTTP/1.1" 200', "200", 0, None, WHEN)
    assert '"GET /\\"x\\\\y?%73ecret=[redacted] HTTP/1.1\\" 200" 200 - -' in line
    assert "TOKEN" not in line


def test_an_access_line_cuts_a_huge_request_line():
    line = access_line("127.0.0.1", "GET /" + "\x00" * 8000, "414", 0, None, WHEN)
    assert len(line) < 8300
    assert "..." in line


@pytest.mark.parametrize(
    ("status", "code"),
    [(b"200 OK", "200"), (b"101 Switching Protocols", "101"), ("400", "400"), (None, "000")],
)
def test_status_code_of_a_gevent_status(status, code):
    assert status_code(status) == code


def _record(message, *args, exc_info=None):
    return logging.getLogger("channelstream.test").makeRecord(
        "channelstream.test", logging.INFO, __file__, 1, message, args, exc_info
    )


@pytest.mark.parametrize("char", HOSTILE)
def test_a_json_log_line_is_one_ascii_line_whatever_the_message(char):
    message = f"refused from 1.2.3.4{char}: {char}x"
    line = JsonFormatter().format(_record("%s", message))
    assert line.isascii()
    assert line.splitlines() == [line]
    assert json.loads(line)["message"] == message


@pytest.mark.parametrize("char", HOSTILE)
def test_a_text_log_line_shows_unprintable_characters_escaped(char):
    logger = logging.getLogger("channelstream.test.text")
    handler = logging.StreamHandler()
    logger.addHandler(handler)
    try:
        apply_log_format("text", logger)
        line = handler.format(_record("user Zoë said %s", f"a{char}b\\c"))
    finally:
        logger.removeHandler(handler)
    assert line.splitlines() == [line]
    assert line.isprintable()
    assert line.endswith(f"user Zoë said a{repr(char)[1:-1]}b\\c")


def test_a_text_log_line_still_carries_its_traceback():
    try:
        raise ValueError("boom")
    except ValueError:
        record = _record("failed \x1b[2J", exc_info=sys.exc_info())
    logger = logging.getLogger("channelstream.test.traceback")
    handler = logging.StreamHandler()
    logger.addHandler(handler)
    try:
        apply_log_format("text", logger)
        text = handler.format(record)
    finally:
        logger.removeHandler(handler)
    first, *rest = text.split("\n")
    assert first.endswith("failed \\x1b[2J")
    assert rest[0] == "Traceback (most recent call last):"
    assert rest[-1] == "ValueError: boom"


def test_the_escaping_adapter_escapes_and_cuts_third_party_messages(caplog):
    adapter = EscapingLoggerAdapter(logging.getLogger("channelstream.test.adapter"))
    with caplog.at_level(logging.DEBUG, logger="channelstream.test.adapter"):
        adapter.warning("Invalid key: \x1b[2J\r\x85\u2028")
        adapter.debug("Protocol allowed: %s", "\x00")
        adapter.warning("Invalid key: " + "A" * 70000)
    messages = [record.getMessage() for record in caplog.records]
    assert messages[:2] == ["Invalid key: \\x1b[2J\\r\\x85\\u2028", "Protocol allowed: \\x00"]
    assert len(messages[2]) < 1000
    assert [record.levelname for record in caplog.records] == ["WARNING", "DEBUG", "WARNING"]
