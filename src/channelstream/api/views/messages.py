"""/message: POST publishes, PATCH edits, DELETE deletes; each body is a JSON list."""

from __future__ import annotations

from typing import Any

from pyramid.view import view_config, view_defaults

from channelstream.api.security import API_PERMISSION
from channelstream.api.views import NodeView
from channelstream.schemas import (
    MessageBodySchema,
    MessageDeleteBodySchema,
    MessageEditBodySchema,
)


@view_defaults(renderer="json", permission=API_PERMISSION, route_name="message")
class MessageViews(NodeView):
    @view_config(request_method="POST")
    def publish(self) -> list[dict[str, Any]]:
        messages = MessageBodySchema.shared(many=True).load(self.json_body())
        return self.node.publish(messages).accepted

    @view_config(request_method="PATCH")
    def edit(self) -> list[dict[str, Any]]:
        edits = MessageEditBodySchema.shared(many=True).load(self.json_body())
        return self.node.edit(edits).accepted

    @view_config(request_method="DELETE")
    def delete(self) -> list[dict[str, Any]]:
        deletes = MessageDeleteBodySchema.shared(many=True).load(self.json_body())
        return self.node.delete(deletes).accepted
