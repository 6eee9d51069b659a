"""Signing and verifying webhook requests: the one place that knows the format.

The server signs each webhook request with the header

    X-Channelstream-Signature: t=<unix seconds>,v1=<hex>

where `<hex>` is HMAC-SHA256, keyed by `webhook_secret`, over `"<t>.<raw body>"`. The
timestamp is inside the MAC, so a receiver that refuses an old `t` refuses a replayed request
too; the MAC covers the raw bytes, so a receiver verifies before parsing anything.
A header may carry several `v1` values, any one of which that matches passes (a sender that
rotates its secret can sign with the old and the new one for a while); unknown keys are
ignored, so the scheme can grow (`v2=`) without breaking receivers.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
from typing import Any

from channelstream.exceptions import WebhookSignatureError

__all__ = ["SIGNATURE_HEADER", "WebhookSignatureError", "signature_header", "verify_webhook"]

SIGNATURE_HEADER = "X-Channelstream-Signature"
DEFAULT_TOLERANCE = 300


def _digest(secret: str, timestamp: str, body: bytes) -> str:
    """The hex HMAC-SHA256 over `"<t>.<raw body>"`."""
    signed = timestamp.encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int) -> str:
    """The value of `X-Channelstream-Signature` for `body` sent at `timestamp` (unix seconds)."""
    t = str(int(timestamp))
    return f"t={t},v1={_digest(secret, t, body)}"


def _parse_header(header: str | None) -> tuple[str, list[str]]:
    """`t` (as sent: the signed text) and every `v1` of a signature header."""
    if header is None or not header.strip():
        raise WebhookSignatureError(f"no {SIGNATURE_HEADER} header")
    timestamps: list[str] = []
    signatures: list[str] = []
    for part in header.split(","):
        key, equals, value = part.strip().partition("=")
        if not equals or not key:
            raise WebhookSignatureError(
                f"malformed {SIGNATURE_HEADER} header: expected comma-separated key=value pairs"
            )
        if key == "t":
            timestamps.append(value)
        elif key == "v1":
            signatures.append(value)
    if len(timestamps) != 1:
        which = "no t=" if not timestamps else "more than one t="
        raise WebhookSignatureError(f"malformed {SIGNATURE_HEADER} header: {which}")
    timestamp = timestamps[0]
    # ASCII digits only: int() would also take "+5", " 5", "5_0" or other scripts' digits
    if not (timestamp.isascii() and timestamp.isdigit()):
        raise WebhookSignatureError(
            f"malformed {SIGNATURE_HEADER} header: t is not an integer (unix seconds)"
        )
    if not signatures:
        raise WebhookSignatureError(f"malformed {SIGNATURE_HEADER} header: no v1=")
    return timestamp, signatures


def verify_webhook(
    secret: str,
    body: bytes | str,
    header: str | None,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> list[dict[str, Any]]:
    """The events of a webhook request, once its signature, age and body check out.

    `body` is the raw request body (text is taken as UTF-8), `header` the value of
    `X-Channelstream-Signature` (None when absent). A `t` more than `tolerance` seconds from
    `now` (default: this machine's clock), either way, is refused as stale.

    Raises WebhookSignatureError saying which check failed: missing header, malformed
    header, bad signature, stale timestamp, or a body that is not a webhook batch.
    """
    raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    timestamp, signatures = _parse_header(header)
    expected = _digest(secret, timestamp, raw).encode("ascii")
    # bytes, not text: compare_digest refuses non-ASCII text, and a header may hold anything
    matches = [hmac.compare_digest(expected, given.encode("utf-8")) for given in signatures]
    if not any(matches):
        raise WebhookSignatureError(
            "bad signature: it does not match the body with this webhook_secret (another "
            "secret, or the body was changed: verify the raw body, before any parsing)"
        )
    age = (time.time() if now is None else now) - int(timestamp)
    if abs(age) > tolerance:
        seconds = math.ceil(abs(age))
        when = f"{seconds} s ago" if age > 0 else f"{seconds} s in the future"
        raise WebhookSignatureError(
            f"stale timestamp: signed {when}, more than the tolerance of {tolerance:g} s "
            "(a replayed request, or clocks apart)"
        )
    return _events(raw)


def _events(raw: bytes) -> list[dict[str, Any]]:
    try:
        batch = json.loads(raw.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError and JSONDecodeError both are
        raise WebhookSignatureError("body is not a webhook batch: not UTF-8 JSON") from None
    if not isinstance(batch, dict):
        raise WebhookSignatureError("body is not a webhook batch: not a JSON object")
    events = batch.get("events")
    if not isinstance(events, list):
        raise WebhookSignatureError("body is not a webhook batch: no events list")
    if not all(isinstance(event, dict) for event in events):
        raise WebhookSignatureError("body is not a webhook batch: an event is not an object")
    return events
