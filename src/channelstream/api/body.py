"""Reading and validating request bodies: size, framing, JSON syntax, nesting and breadth.

Two steps. `buffer_body` (called by the HTTP edge tween for every request) reads the body
into memory before any view runs, at most `max_message_size` bytes whatever the framing
(Content-Length or chunked), and refuses a body that ends before its Content-Length.
`read_json` (called by the views) parses it as strict JSON within `max_json_depth` and
`max_json_items`. Every refusal is an exception the error views answer and log once.
"""

from __future__ import annotations

import codecs
import json
import math
import re
from collections.abc import Callable
from itertools import accumulate
from typing import Any

from pyramid.request import Request

from channelstream.api.errors import BadRequestBody, PayloadTooLarge, UnsupportedCharset
from channelstream.gevent_edge import INVALID_CLIENT_INPUT
from channelstream.node import pause
from channelstream.settings import Settings

_NO_BODY = object()
# codec names (after `codecs.lookup`) of the charsets a JSON body may declare
JSON_CHARSETS = frozenset({"utf-8", "ascii"})
# a \u escape of a UTF-16 surrogate: the only way JSON text can smuggle in a lone surrogate
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# A JSON string, or an unterminated one up to the end of the text. It cannot fail once it has
# seen the opening quote, so removing every string takes one linear pass (no backtracking).
_STRING = re.compile(r'"[^"\\]*(?:\\[\s\S][^"\\]*)*(?:"|\\?\Z)')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_READ_CHUNK = 65536
PAUSE_EVERY = 2000  # containers walked between pauses (about 2 ms)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"Request body exceeds max_message_size ({limit} bytes)", limit="max_message_size"
    )


def _is_framing_error(error: OSError) -> bool:
    """gevent's `_InvalidClientInput`: the chunked encoding itself is broken. gevent must see
    it (it answers 400 and closes the connection, whose stream is then in an unknown state).
    Matched by name, a private one: `gevent_edge` checks it before the server starts."""
    return type(error).__name__ == INVALID_CLIENT_INPUT


def _ended_early(length: int | None) -> BadRequestBody:
    if length is None:
        return BadRequestBody("Request body ended before its last chunk")
    return BadRequestBody(f"Request body ended before its Content-Length ({length} bytes)")


def buffer_body(request: Request, limit: int) -> None:
    """Read the whole body now (at most `limit` bytes) and keep it in the request.

    A declared Content-Length over `limit` is refused before anything is read; a chunked
    body is read up to `limit + 1` bytes, never further. PayloadTooLarge for either;
    BadRequestBody when the body ends (or the peer goes) before its Content-Length.
    """
    length = request.content_length
    if length is not None and length > limit:
        raise too_large(limit)
    chunked = "chunked" in request.environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    if not length and not chunked:
        return
    wanted = length if length is not None else limit + 1
    stream = request.environ["wsgi.input"]
    parts: list[bytes] = []
    received = 0
    try:
        while received < wanted:
            part = stream.read(min(wanted - received, _READ_CHUNK))
            if not part:
                break
            parts.append(part)
            received += len(part)
    except OSError as error:  # the peer went away, or stopped before the end
        if _is_framing_error(error):
            raise
        raise _ended_early(length) from None
    if length is not None and received < length:
        raise _ended_early(length)
    if received > limit:
        raise too_large(limit)
    request.body = b"".join(parts)


def nesting_depth(text: str) -> int:
    """How deep arrays and objects nest in JSON `text`: the running count of the brackets
    outside strings, at its highest. Regular expressions and C iteration; nothing recursive."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0)


def has_container_over(
    value: Any, max_items: int, pause: Callable[[], object] | None = None
) -> bool:
    """Whether a parsed JSON value holds an array of more than `max_items` elements, or an
    object of more than `max_items` members, at any depth (walked with a stack, not
    recursion; stops at the first one). `pause` is called every PAUSE_EVERY containers: a
    body of 10,000 objects takes tens of milliseconds to walk."""
    if not isinstance(value, dict | list):
        return False
    stack: list[dict[str, Any] | list[Any]] = [value]
    walked = 0
    while stack:
        item = stack.pop()
        if len(item) > max_items:
            return True
        members = item.values() if isinstance(item, dict) else item
        stack.extend(member for member in members if isinstance(member, dict | list))
        walked += 1
        if pause is not None and walked % PAUSE_EVERY == 0:
            pause()
    return False


def check_json_depth(text: str, max_depth: int) -> None:
    """Refuse JSON text nested deeper than `max_depth` before it is parsed (PayloadTooLarge).

    Cheap for ordinary bodies: with at most `max_depth` opening brackets in all, nothing can
    nest deeper, so the text is not scanned."""
    if text.count("[") + text.count("{") > max_depth and nesting_depth(text) > max_depth:
        raise PayloadTooLarge(
            f"Request body nests arrays and objects more than max_json_depth "
            f"({max_depth}) levels deep",
            limit="max_json_depth",
        )


def check_json_items(
    text: str, value: Any, max_items: int, pause: Callable[[], object] | None = None
) -> None:
    """Refuse a parsed body with an array or object of more than `max_items` entries.

    Such a container needs at least `max_items` commas in the text: with fewer, nothing is
    walked."""
    if text.count(",") >= max_items and has_container_over(value, max_items, pause):
        raise PayloadTooLarge(
            f"Request body has an array or object of more than max_json_items "
            f"({max_items}) entries",
            limit="max_json_items",
        )


def check_json_charset(charset: str | None) -> None:
    """Refuse a body declared in anything but UTF-8 (UnsupportedCharset, 415).

    RFC 8259 has JSON exchanged in UTF-8 only. Decoding by a declared charset let text in
    that strict UTF-8 never yields: `charset=utf-7` turns `+2AA-` into a lone surrogate,
    which is stored, then fails every answer that has to encode it. ASCII is a subset."""
    if charset is None:
        return
    try:
        name = codecs.lookup(charset).name
    except LookupError:
        name = ""
    if name not in JSON_CHARSETS:
        raise UnsupportedCharset(
            f"Request body must be JSON in UTF-8; charset {charset!r} is not accepted"
        )


def read_json(request: Request, settings: Settings, default: Any = _NO_BODY) -> Any:
    """The parsed JSON body; `default` (if given) for an empty body.

    415 for a charset other than UTF-8; 400 on malformed JSON. Only strict JSON that can be
    sent back out as JSON is accepted: no NaN/Infinity (nor numbers too large for a float),
    no lone UTF-16 surrogates. 413 over `max_message_size`, `max_json_depth` (checked before
    parsing) or `max_json_items`.
    """
    body = request.body
    if len(body) > settings.max_message_size:
        raise too_large(settings.max_message_size)
    if not body.strip():
        if default is not _NO_BODY:
            return default
        raise BadRequestBody("Request body must be JSON; it is empty")
    check_json_charset(request.charset)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadRequestBody(f"Request body is not valid JSON: {error}") from None
    check_json_depth(text, settings.max_json_depth)
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
        if _SURROGATE_ESCAPE.search(text):
            json.dumps(value, ensure_ascii=False).encode("utf-8")
    except RecursionError:  # only if max_json_depth is set beyond what the parser follows
        raise BadRequestBody("Request body is not valid JSON: nested too deeply") from None
    except UnicodeEncodeError:
        raise BadRequestBody("Request body is not valid JSON: lone surrogate escape") from None
    except ValueError as error:
        raise BadRequestBody(f"Request body is not valid JSON: {error}") from None
    check_json_items(text, value, settings.max_json_items, pause)
    return value
