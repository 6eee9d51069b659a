"""/connect, /subscribe and /unsubscribe: a user's connections and their channels."""

from __future__ import annotations

from typing import Any

from pyramid.view import view_config, view_defaults

from channelstream.api.security import API_PERMISSION
from channelstream.api.views import NodeView
from channelstream.schemas import (
    ConnectBodySchema,
    SubscribeBodySchema,
    UnsubscribeBodySchema,
)


@view_defaults(renderer="json", permission=API_PERMISSION, request_method="POST")
class ConnectionViews(NodeView):
    @view_config(route_name="connect")
    def connect(self) -> dict[str, Any]:
        data = ConnectBodySchema.shared().load(self.json_body())
        outcome = self.node.connect(
            data["username"],
            data["conn_id"],
            data["channels"],
            state_public_keys=data["state_public_keys"],
            fresh_user_state=data["fresh_user_state"],
            user_state=data["user_state"],
            channel_configs=data["channel_configs"],
        )
        assert outcome.user is not None and outcome.connection is not None
        channels = sorted(set(data["channels"]))
        return {
            "conn_id": outcome.connection.conn_id,
            "state": outcome.user.state,
            "username": outcome.user.username,
            "public_state": outcome.user.public_state,
            "channels": channels,
            "channels_info": self.channels_info(channels, data["info"]),
        }

    def _membership_body(self) -> dict[str, Any]:
        body = self.json_body()
        if isinstance(body, dict) and "conn_id" not in body and "conn_id" in self.request.GET:
            body = {**body, "conn_id": self.request.GET["conn_id"]}  # 0.7.1 took it from the query
        return body

    @view_config(route_name="subscribe")
    def subscribe(self) -> dict[str, Any]:
        data = SubscribeBodySchema.shared().load(self._membership_body())
        outcome = self.node.subscribe(data["conn_id"], data["channels"], data["channel_configs"])
        assert outcome.connection is not None
        channels = sorted(outcome.connection.channels)
        return {
            "channels": channels,
            "channels_info": self.channels_info(channels, data["info"]),
            "subscribed_to": outcome.changed_channels,
        }

    @view_config(route_name="unsubscribe")
    def unsubscribe(self) -> dict[str, Any]:
        data = UnsubscribeBodySchema.shared().load(self._membership_body())
        outcome = self.node.unsubscribe(data["conn_id"], data["channels"])
        assert outcome.connection is not None
        channels = sorted(outcome.connection.channels)
        return {
            "channels": channels,
            "channels_info": self.channels_info(channels, data["info"]),
            "unsubscribed_from": outcome.changed_channels,
        }
