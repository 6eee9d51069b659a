"""Log line formats: plain text (the default) or one JSON object per line (`log_format = json`).

Connection events pass `extra={"conn_id": ...}`; the JSON formatter emits it as a field.

A log line is one line for every reader and drives no terminal, whatever a client sent: code
that logs a value from a request escapes it with `escaped` (request lines, paths, header
values, addresses from X-Forwarded-For); both formats escape whatever slips through, and
`EscapingLoggerAdapter` does it for gevent-websocket, whose messages quote handshake headers.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)-7s [%(name)s] %(message)s"

CHANNELSTREAM_LOGGER = "channelstream"
# WSGI environ key: the caller's address as `trusted_proxies` resolve it (the app sets it, the
# server's access line shows it), so that behind nginx the line names the client, not nginx.
CLIENT_ADDRESS_KEY = "channelstream.client_address"
# gevent-websocket writes several DEBUG lines per websocket request here (`server.logger`).
WEBSOCKET_LOGGER = "channelstream.websocket"

# The longest escaped value in a line (a header line may be 64 KiB of a client's choosing).
THIRD_PARTY_MESSAGE_LENGTH = 500


def escaped(text: str, limit: int | None = None) -> str:
    """`text` from a client, for a log line: printable ASCII only, controls and non-ASCII as
    Python escapes (\\x1b, \\x85, \\u2028) and backslashes doubled, so an escape in the log is
    always ours; cut to `limit` characters ("..." marks the cut)."""
    result = text.encode("unicode_escape").decode("ascii")
    if limit is not None and len(result) > limit:
        result = result[:limit] + "..."
    return result


def escaped_unprintable(text: str) -> str:
    """`text` with only its unprintable characters escaped: line breaks of any reader (CR, VT,
    FF, NEL, U+2028...), C0 and C1 controls, bidirectional overrides. The formats' safety net
    for values nobody escaped; printable Unicode and backslashes stay as they are."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else escaped(char) for char in text)


class TextFormatter(logging.Formatter):
    """`TEXT_FORMAT`, the message kept on one printable line (tracebacks follow as usual)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        if not record.message.isprintable():
            safe = escaped_unprintable(record.message)
            record = logging.makeLogRecord({**record.__dict__, "message": safe})
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, and conn_id
    when the record carries one; exc_info as a formatted `exc_info` string.

    ASCII-only JSON: JSON leaves NEL, U+2028 and U+2029 unescaped, and readers that split on
    them would cut the object in two."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        conn_id = getattr(record, "conn_id", None)
        if conn_id is not None:
            entry["conn_id"] = conn_id
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=True, default=str)


class EscapingLoggerAdapter(logging.LoggerAdapter[logging.Logger]):
    """A logger for third-party code that puts request data into its messages verbatim: each
    message is escaped whole and cut. Whatever the log format, pserve's own included."""

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            try:
                text = str(msg) % args if args else str(msg)
            except (TypeError, ValueError):
                text = f"{msg} {args!r}"
            message = escaped(text, THIRD_PARTY_MESSAGE_LENGTH)
            self.logger.log(level, "%s", message, **kwargs)


def apply_log_format(log_format: str, logger: logging.Logger | None = None) -> None:
    """Give every handler of `logger` (default: the root logger) the chosen formatter."""
    target = logger if logger is not None else logging.getLogger()
    formatter = JsonFormatter() if log_format == "json" else TextFormatter()
    for handler in target.handlers:
        handler.setFormatter(formatter)


def apply_log_level(log_level: str | None) -> None:
    """Set the levels of channelstream's own loggers and no others: the root logger, and a
    host app's loggers, belong to whoever configured logging.

    `channelstream` gets `log_level`; None leaves its level to the logging configuration (a
    host app that set no `channelstream.log_level`). `channelstream.websocket` stays at
    WARNING or above unless `log_level` is DEBUG, so that a host logging everything at DEBUG
    does not get gevent-websocket's lines for every websocket request."""
    if log_level is not None:
        logging.getLogger(CHANNELSTREAM_LOGGER).setLevel(log_level)
    level = logging.getLevelNamesMapping()[log_level or "INFO"]
    websocket_level = level if level == logging.DEBUG else max(level, logging.WARNING)
    logging.getLogger(WEBSOCKET_LOGGER).setLevel(websocket_level)


def apply_process_logging(log_level: str, log_format: str) -> None:
    """Logging of a process that serves channelstream's own app (the console script, or pserve
    and other PasteDeploy servers of `use = egg:channelstream`): channelstream's levels, and
    `log_format` on every root handler, whoever installed it (under pserve: the ini's)."""
    apply_log_level(log_level)
    apply_log_format(log_format)
