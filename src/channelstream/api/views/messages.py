"""/message: POST publishes, PATCH edits, DELETE deletes; each body is a JSON list.

A batch is validated whole before anything is applied (one 422 lists every bad item), but in
chunks with pauses between them, as it is then applied (see `node.BATCH_CHUNK`): a caller
posting 10,000 messages does not stall everyone else's deliveries for the whole batch.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError
from pyramid.view import view_config, view_defaults

from channelstream.api.security import API_PERMISSION
from channelstream.api.views import NodeView
from channelstream.node import BATCH_CHUNK, pause
from channelstream.schemas import (
    MessageBodySchema,
    MessageDeleteBodySchema,
    MessageEditBodySchema,
)


def load_batch(schema: Schema, body: Any) -> list[dict[str, Any]]:
    """`schema.load(body)` for a `many=True` schema, BATCH_CHUNK items at a time with a pause
    between chunks; the same result and the same errors (keyed by item index) as one load."""
    if not isinstance(body, list) or len(body) <= BATCH_CHUNK:
        loaded: list[dict[str, Any]] = schema.load(body)
        return loaded
    items: list[dict[str, Any]] = []
    errors: dict[int, Any] = {}
    for start in range(0, len(body), BATCH_CHUNK):
        if start:
            pause()
        try:
            items += schema.load(body[start : start + BATCH_CHUNK])
        except ValidationError as error:
            if not isinstance(error.messages, dict):
                raise
            errors.update({start + int(index): item for index, item in error.messages.items()})
    if errors:
        raise ValidationError(errors)
    return items


@view_defaults(renderer="json", permission=API_PERMISSION, route_name="message")
class MessageViews(NodeView):
    @view_config(request_method="POST")
    def publish(self) -> list[dict[str, Any]]:
        messages = load_batch(MessageBodySchema.shared(many=True), self.json_body())
        return self.node.publish(messages).accepted

    @view_config(request_method="PATCH")
    def edit(self) -> list[dict[str, Any]]:
        edits = load_batch(MessageEditBodySchema.shared(many=True), self.json_body())
        return self.node.edit(edits).accepted

    @view_config(request_method="DELETE")
    def delete(self) -> list[dict[str, Any]]:
        deletes = load_batch(MessageDeleteBodySchema.shared(many=True), self.json_body())
        return self.node.delete(deletes).accepted
