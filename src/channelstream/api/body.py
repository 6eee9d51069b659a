"""Reading and validating JSON request bodies."""

from __future__ import annotations

import json
from typing import Any

from pyramid.request import Request

from channelstream.api.errors import BadRequestBody, PayloadTooLarge

_NO_BODY = object()


def read_json(request: Request, limit: int, default: Any = _NO_BODY) -> Any:
    """The parsed JSON body; `default` (if given) for an empty body. 400 on malformed JSON."""
    body = request.body
    if len(body) > limit:
        raise PayloadTooLarge(f"Request body exceeds max_message_size ({limit} bytes)")
    if not body.strip():
        if default is not _NO_BODY:
            return default
        raise BadRequestBody("Request body must be JSON; it is empty")
    try:
        return json.loads(body.decode(request.charset or "utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequestBody(f"Request body is not valid JSON: {error}") from None
