"""/connect, /subscribe and /unsubscribe: a user's connections and their channels."""

from __future__ import annotations

from typing import Any

from pyramid.response import Response
from pyramid.view import view_config, view_defaults

from channelstream.api.documented import API_TAG, answer, documented, request_body
from channelstream.api.errors import json_response
from channelstream.api.openapi import (
    CHANNELS_INFO_EXAMPLE,
    CONN_ID,
    EPOCH_EXAMPLE,
    error_example,
)
from channelstream.api.security import API_PERMISSION
from channelstream.api.views import NodeView, dumped
from channelstream.core.commands import Connect, Subscribe, Unsubscribe
from channelstream.schemas import (
    ConnectBodySchema,
    ConnectResponseSchema,
    ErrorSchema,
    SubscribeBodySchema,
    SubscribeResponseSchema,
    UnsubscribeBodySchema,
    UnsubscribeResponseSchema,
)


@view_defaults(renderer="json", permission=API_PERMISSION, request_method="POST")
class ConnectionViews(NodeView):
    @view_config(route_name="connect")
    @documented(
        "Connect a user: get a conn_id for the browser",
        tag=API_TAG,
        description="Creates the user if needed (applying `fresh_user_state`), merges "
        "`user_state`, sets `state_public_keys` and subscribes the connection to `channels` "
        "(created with `channel_configs` if new). Reusing a live conn_id of the same user "
        "updates that connection in place; another user's conn_id is a 422. The answer's `epoch` "
        "and the frames' `seq` make the position a client gives back in `recover` when it "
        "must connect anew (its old connection ended).",
        request=request_body(
            ConnectBodySchema,
            {
                "username": "alice",
                "channels": ["lobby"],
                "user_state": {"status": "online"},
                "state_public_keys": ["status"],
                "channel_configs": {"lobby": {"notify_presence": True}},
            },
        ),
        responses={
            "200": answer(
                ConnectResponseSchema,
                {
                    "conn_id": CONN_ID,
                    "username": "alice",
                    "state": {"status": "online"},
                    "public_state": {"status": "online"},
                    "channels": ["lobby"],
                    "channels_info": CHANNELS_INFO_EXAMPLE,
                    "epoch": EPOCH_EXAMPLE,
                    "seq": 41,
                },
            ),
            "429": answer(
                ErrorSchema,
                {
                    **error_example(
                        429,
                        "too_many_requests",
                        "Too Many Requests",
                        "A user may hold at most 5 connections",
                    ),
                    "limit": "max_connections_per_user",
                },
                "The user holds max_connections_per_user connections (cluster-wide)",
            ),
        },
    )
    def connect(self) -> Response:
        """The answer is made here, not by the `json` renderer (the same bytes and headers):
        on the path every connection takes, the renderer's machinery cost more than the
        encoding itself."""
        data = ConnectBodySchema.lean_load(self.json_body())
        outcome = self.node.submit(
            Connect(
                username=data["username"],
                conn_id=data["conn_id"],
                channels=tuple(data["channels"]),
                state_public_keys=tuple(data["state_public_keys"]),
                fresh_user_state=data["fresh_user_state"],
                user_state=data["user_state"],
                channel_configs=data["channel_configs"],
                recover=data.get("recover"),
            )
        )
        assert outcome.user is not None and outcome.connection is not None
        channels = sorted(set(data["channels"]))
        answer: dict[str, Any] = {
            "conn_id": outcome.connection.conn_id,
            "state": outcome.user.state,
            "username": outcome.user.username,
            "public_state": outcome.user.public_state,
            "channels": channels,
            "channels_info": self.channels_info(channels, data["info"]),
            "epoch": self.node.epoch(),
            "seq": outcome.connection.cursor,
        }
        if outcome.recovered is not None:
            answer["recovered"] = outcome.recovered
        return json_response(200, dumped(ConnectResponseSchema, answer))

    def _membership_body(self) -> dict[str, Any]:
        body = self.json_body()
        if isinstance(body, dict) and "conn_id" not in body and "conn_id" in self.request.GET:
            body = {**body, "conn_id": self.request.GET["conn_id"]}  # 0.7.1 took it from the query
        return body

    @view_config(route_name="subscribe")
    @documented(
        "Subscribe a connection to more channels",
        tag=API_TAG,
        description="New channels are created with `channel_configs`; `subscribed_to` lists "
        "the channels newly joined. `conn_id` may also come from the query string.",
        request=request_body(SubscribeBodySchema, {"conn_id": CONN_ID, "channels": ["news"]}),
        responses={
            "200": answer(
                SubscribeResponseSchema,
                {
                    "channels": ["lobby", "news"],
                    "channels_info": CHANNELS_INFO_EXAMPLE,
                    "subscribed_to": ["news"],
                },
            )
        },
    )
    def subscribe(self) -> dict[str, Any]:
        data = SubscribeBodySchema.shared().load(self._membership_body())
        outcome = self.node.submit(
            Subscribe(
                conn_id=data["conn_id"],
                channels=tuple(data["channels"]),
                channel_configs=data["channel_configs"],
            )
        )
        assert outcome.connection is not None
        channels = sorted(outcome.connection.channels)
        answer = {
            "channels": channels,
            "channels_info": self.channels_info(channels, data["info"]),
            "subscribed_to": outcome.changed_channels,
        }
        return dumped(SubscribeResponseSchema, answer)

    @view_config(route_name="unsubscribe")
    @documented(
        "Unsubscribe a connection from channels",
        tag=API_TAG,
        description="Channels the connection is not in are ignored.",
        request=request_body(UnsubscribeBodySchema, {"conn_id": CONN_ID, "channels": ["news"]}),
        responses={
            "200": answer(
                UnsubscribeResponseSchema,
                {
                    "channels": ["lobby"],
                    "channels_info": CHANNELS_INFO_EXAMPLE,
                    "unsubscribed_from": ["news"],
                },
            )
        },
    )
    def unsubscribe(self) -> dict[str, Any]:
        data = UnsubscribeBodySchema.shared().load(self._membership_body())
        outcome = self.node.submit(
            Unsubscribe(conn_id=data["conn_id"], channels=tuple(data["channels"]))
        )
        assert outcome.connection is not None
        channels = sorted(outcome.connection.channels)
        answer = {
            "channels": channels,
            "channels_info": self.channels_info(channels, data["info"]),
            "unsubscribed_from": outcome.changed_channels,
        }
        return dumped(UnsubscribeResponseSchema, answer)
