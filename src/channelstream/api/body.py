"""Reading and validating JSON request bodies."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from pyramid.request import Request

from channelstream.api.errors import BadRequestBody, PayloadTooLarge

_NO_BODY = object()
# a \u escape of a UTF-16 surrogate: the only way JSON text can smuggle in a lone surrogate
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def read_json(request: Request, limit: int, default: Any = _NO_BODY) -> Any:
    """The parsed JSON body; `default` (if given) for an empty body. 400 on malformed JSON.

    Only strict JSON that can be sent back out as JSON is accepted: no NaN/Infinity (nor
    numbers too large for a float), no lone UTF-16 surrogates, no nesting deeper than the
    parser can follow. Anything else would come back as invalid JSON or a 500.
    """
    body = request.body
    if len(body) > limit:
        raise PayloadTooLarge(f"Request body exceeds max_message_size ({limit} bytes)")
    if not body.strip():
        if default is not _NO_BODY:
            return default
        raise BadRequestBody("Request body must be JSON; it is empty")
    try:
        text = body.decode(request.charset or "utf-8")
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
        if _SURROGATE_ESCAPE.search(text):
            json.dumps(value, ensure_ascii=False).encode("utf-8")
    except RecursionError:
        raise BadRequestBody("Request body is not valid JSON: nested too deeply") from None
    except UnicodeEncodeError:
        raise BadRequestBody("Request body is not valid JSON: lone surrogate escape") from None
    except LookupError:
        raise BadRequestBody(f"Unknown charset {request.charset!r}") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequestBody(f"Request body is not valid JSON: {error}") from None
    return value
