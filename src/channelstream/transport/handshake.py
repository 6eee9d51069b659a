"""Checking a websocket upgrade request before gevent-websocket sees it.

gevent-websocket answers some broken handshakes with a 500 and a stack trace (a
`Sec-WebSocket-Key` that is not base64, an HTTP/1.0 upgrade) or a body it cannot write. The
server refuses those upgrades beforehand, so they reach the `/ws` view as plain HTTP, which
answers with the JSON error envelope (see `server.websocket_upgrade_refused`).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# RFC 6455 is version 13; 8 and 7 are the drafts gevent-websocket also speaks.
SUPPORTED_VERSIONS = ("13", "8", "7")
KEY_BYTES = 16


@dataclass(frozen=True)
class HandshakeProblem:
    status: int  # 400, or 426 for an unsupported version (with Sec-WebSocket-Version)
    message: str


def upgrade_requested(environ: Mapping[str, Any]) -> bool:
    """Whether the request asks for a websocket (`Upgrade: websocket`, `Connection: upgrade`)."""
    upgrade = str(environ.get("HTTP_UPGRADE", "")).strip().lower()
    connection = str(environ.get("HTTP_CONNECTION", "")).lower()
    return upgrade == "websocket" and "upgrade" in connection


def handshake_problem(environ: Mapping[str, Any]) -> HandshakeProblem | None:
    """What is wrong with an upgrade request's handshake, or None if it can be upgraded."""
    if environ.get("REQUEST_METHOD") != "GET" or environ.get("SERVER_PROTOCOL") != "HTTP/1.1":
        return HandshakeProblem(400, "A websocket upgrade is a GET request in HTTP/1.1")
    if environ.get("HTTP_SEC_WEBSOCKET_VERSION", "") not in SUPPORTED_VERSIONS:
        return HandshakeProblem(426, "Sec-WebSocket-Version must be 13")
    key = str(environ.get("HTTP_SEC_WEBSOCKET_KEY", "")).strip()
    try:
        decoded = base64.b64decode(key.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        decoded = b""
    if len(decoded) != KEY_BYTES:
        return HandshakeProblem(400, "Sec-WebSocket-Key must be 16 bytes in base64")
    return None
