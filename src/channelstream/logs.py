"""Log line formats: plain text (the default) or one JSON object per line (`log_format = json`).

Connection events pass `extra={"conn_id": ...}`; the JSON formatter emits it as a field.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

TEXT_FORMAT = "%(asctime)s %(levelname)-7s [%(name)s] %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, and conn_id
    when the record carries one; exc_info as a formatted `exc_info` string."""

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
        return json.dumps(entry, ensure_ascii=False, default=str)


def apply_log_format(log_format: str, logger: logging.Logger | None = None) -> None:
    """Give every handler of `logger` (default: the root logger) the chosen formatter."""
    target = logger if logger is not None else logging.getLogger()
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    for handler in target.handlers:
        handler.setFormatter(formatter)
