"""One view class per API area."""

from __future__ import annotations

from typing import Any

from pyramid.request import Request

from channelstream.api.body import read_json
from channelstream.node import Node


class NodeView:
    """Base of the view classes: looks the Node up once per request."""

    def __init__(self, context: Any, request: Request) -> None:
        self.request = request
        self.node: Node = request.registry.channelstream_node

    def json_body(self, **kwargs: Any) -> Any:
        return read_json(self.request, self.node.settings.max_message_size, **kwargs)

    def channels_info(self, names: Any, info: dict[str, Any]) -> dict[str, Any]:
        """The `channels_info` block shaped by an InfoResolution."""
        return self.node.channels_info(
            names,
            include_history=info["include_history"],
            include_users=info["include_users"],
            exclude_channels=info["exclude_channels"],
            return_public_state=info["return_public_state"],
        )
