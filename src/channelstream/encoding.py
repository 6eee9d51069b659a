"""The one JSON encoding of the server: compact, datetimes as naive-UTC ISO-8601 (fix F14)."""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime
from typing import Any


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_default)


def dumps(value: Any) -> str:
    """Encode to compact JSON text."""
    return _encoder.encode(value)
