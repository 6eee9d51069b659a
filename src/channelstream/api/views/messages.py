"""/message: POST publishes, PATCH edits, DELETE deletes; each body is a JSON list.

A batch is validated whole before anything is applied (one 422 lists every bad item), but in
chunks with pauses between them, as it is then applied (see `node.BATCH_CHUNK`): a caller
posting 10,000 messages does not stall everyone else's deliveries for the whole batch.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError
from pyramid.view import view_config, view_defaults

from channelstream.api.documented import API_TAG, answer, documented, request_body
from channelstream.api.openapi import LATER, MESSAGE_EXAMPLE, MESSAGE_UUID
from channelstream.api.security import API_PERMISSION
from channelstream.api.views import NodeView, dumped_batch
from channelstream.core.model import DeleteItem, EditItem, MessageRouting, PublishItem
from channelstream.node import BATCH_CHUNK, paced_chunks
from channelstream.schemas import (
    MessageAcceptedSchema,
    MessageBodySchema,
    MessageDeleteAcceptedSchema,
    MessageDeleteBodySchema,
    MessageEditAcceptedSchema,
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
    for start, chunk in paced_chunks(body):
        try:
            items += schema.load(chunk)
        except ValidationError as error:
            if not isinstance(error.messages, dict):
                raise
            errors.update({start + int(index): item for index, item in error.messages.items()})
    if errors:
        raise ValidationError(errors)
    return items


def routing_of(data: dict[str, Any]) -> MessageRouting:
    return MessageRouting(
        channel=data["channel"],
        pm_users=data["pm_users"],
        exclude_users=data["exclude_users"],
        no_history=data["no_history"],
    )


def publish_item(data: dict[str, Any]) -> PublishItem:
    """A loaded `MessageBodySchema` item as the core's typed item (times as ISO text)."""
    item = PublishItem(
        **routing_of(data),
        user=data["user"],
        uuid=data["uuid"],
        timestamp=data["timestamp"].isoformat(),
    )
    if "message" in data:
        item["message"] = data["message"]
    if "idempotency_key" in data:
        item["idempotency_key"] = data["idempotency_key"]
    return item


def edit_item(data: dict[str, Any]) -> EditItem:
    """A loaded `MessageEditBodySchema` item: only the keys given are edited."""
    item = EditItem(**routing_of(data), uuid=data["uuid"], edited=data["edited"].isoformat())
    if "user" in data:
        item["user"] = data["user"]
    if "message" in data:
        item["message"] = data["message"]
    if "timestamp" in data:
        item["timestamp"] = data["timestamp"].isoformat()
    return item


def delete_item(data: dict[str, Any]) -> DeleteItem:
    return DeleteItem(**routing_of(data), uuid=data["uuid"])


@view_defaults(renderer="json", permission=API_PERMISSION, route_name="message")
class MessageViews(NodeView):
    @view_config(request_method="POST")
    @documented(
        "Send messages to channels or users",
        tag=API_TAG,
        operation_id="message",
        description="The body is a list. Items with neither `channel` nor `pm_users` are "
        "dropped; a message to a channel that does not exist is accepted and goes nowhere. "
        "An item repeating an `idempotency_key` within `idempotency_window` is answered with "
        "the first message and not sent again.",
        request=request_body(
            MessageBodySchema(many=True),
            [{"channel": "lobby", "user": "bob", "message": {"text": "hello"}}],
        ),
        responses={"200": answer(MessageAcceptedSchema(many=True), [MESSAGE_EXAMPLE])},
    )
    def publish(self) -> list[dict[str, Any]]:
        messages = load_batch(MessageBodySchema.shared(many=True), self.json_body())
        accepted = self.node.publish(map(publish_item, messages)).accepted
        return dumped_batch(MessageAcceptedSchema, accepted)

    @view_config(request_method="PATCH")
    @documented(
        "Edit sent messages",
        tag=API_TAG,
        operation_id="edit_messages",
        description="Changes the stored message (history, catchup) and sends a `message:edit` "
        "frame with the edit's own routing.",
        request=request_body(
            MessageEditBodySchema(many=True),
            [{"uuid": MESSAGE_UUID, "channel": "lobby", "message": {"text": "hi!"}}],
        ),
        responses={
            "200": answer(
                MessageEditAcceptedSchema(many=True),
                [
                    {
                        "uuid": MESSAGE_UUID,
                        "channel": "lobby",
                        "message": {"text": "hi!"},
                        "pm_users": [],
                        "exclude_users": [],
                        "no_history": False,
                        "edited": LATER,
                    }
                ],
            )
        },
    )
    def edit(self) -> list[dict[str, Any]]:
        edits = load_batch(MessageEditBodySchema.shared(many=True), self.json_body())
        accepted = self.node.edit(map(edit_item, edits)).accepted
        return dumped_batch(MessageEditAcceptedSchema, accepted)

    @view_config(request_method="DELETE")
    @documented(
        "Delete sent messages",
        tag=API_TAG,
        operation_id="messages_delete",
        description="Removes the message from history and catchup and sends `message:delete`.",
        request=request_body(
            MessageDeleteBodySchema(many=True), [{"uuid": MESSAGE_UUID, "channel": "lobby"}]
        ),
        responses={
            "200": answer(
                MessageDeleteAcceptedSchema(many=True),
                [
                    {
                        "uuid": MESSAGE_UUID,
                        "channel": "lobby",
                        "pm_users": [],
                        "exclude_users": [],
                        "no_history": False,
                    }
                ],
            )
        },
    )
    def delete(self) -> list[dict[str, Any]]:
        deletes = load_batch(MessageDeleteBodySchema.shared(many=True), self.json_body())
        accepted = self.node.delete(map(delete_item, deletes)).accepted
        return dumped_batch(MessageDeleteAcceptedSchema, accepted)
