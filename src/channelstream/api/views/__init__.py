"""One view class per API area."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

from pyramid.request import Request
from pyramid.response import Response

from channelstream.api.body import read_json
from channelstream.node import Node, paced_chunks
from channelstream.schemas import BaseSchema

# Pages load nothing but their own files from this server (no CDN, no outside fonts).
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@cache
def package_text(package: str, name: str) -> str:
    """A text file shipped in `package` (e.g. a page of static/admin/)."""
    return (resources.files(package) / name).read_text(encoding="utf-8")


def page_response(html: str, status: int = 200) -> Response:
    """An HTML page for people (admin panel, sign-in, API explorer)."""
    response = Response(body=html.encode("utf-8"), status=status, content_type="text/html")
    response.charset = "utf-8"
    response.headers.update(PAGE_HEADERS)
    return response


def dumped(schema: type[BaseSchema], value: Any) -> Any:
    """An answer through its response schema: the schema, not the view, decides which keys go
    out and how (times as ISO-8601); the OpenAPI document describes the same schema."""
    return schema.lean_dump(value)


def dumped_batch(schema: type[BaseSchema], items: list[Any]) -> list[Any]:
    """A list answer through its item schema, BATCH_CHUNK items at a time with a pause
    between (the answer to a 10,000-item /message batch takes ~80 ms to dump)."""
    answer: list[Any] = []
    for _, chunk in paced_chunks(items):
        answer += [schema.lean_dump(item) for item in chunk]
    return answer


class NodeView:
    """Base of the view classes: looks the Node up once per request."""

    def __init__(self, context: Any, request: Request) -> None:
        self.request = request
        self.node: Node = request.registry.channelstream_node

    def json_body(self, **kwargs: Any) -> Any:
        return read_json(self.request, self.node.settings, **kwargs)

    def channels_info(self, names: Any, info: dict[str, Any]) -> dict[str, Any]:
        """The `channels_info` block shaped by an InfoResolution."""
        return self.node.channels_info(
            names,
            include_history=info["include_history"],
            include_users=info["include_users"],
            exclude_channels=info["exclude_channels"],
            return_public_state=info["return_public_state"],
        )
