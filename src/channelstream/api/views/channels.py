"""/channel_config, /info and /history: channel settings and what the server knows."""

from __future__ import annotations

from typing import Any

from pyramid.view import view_config, view_defaults

from channelstream.api.documented import API_TAG, answer, documented, request_body
from channelstream.api.openapi import (
    CHANNELS_INFO_EXAMPLE,
    EPOCH_EXAMPLE,
    HISTORY_ENTRY_EXAMPLE,
    channel_example,
)
from channelstream.api.security import API_PERMISSION
from channelstream.api.views import NodeView, dumped
from channelstream.core.commands import SetChannelConfigs
from channelstream.schemas import (
    ChannelsInfoSchema,
    HistoryBodySchema,
    HistoryResponseSchema,
    InfoBodySchema,
    channel_config_map,
    default_info,
    load_channel_configs,
)


@view_defaults(renderer="json", permission=API_PERMISSION)
class ChannelViews(NodeView):
    @view_config(route_name="channel_config", request_method="POST")
    @documented(
        "Create channels or change their settings",
        tag=API_TAG,
        description="The body maps channel names to settings. Only the keys given change an "
        "existing channel. Every entry is checked before any is applied; the first invalid "
        "entry's errors are the 422 body.",
        request=request_body(channel_config_map(), {"lobby": {"store_history": True}}),
        responses={
            "200": answer(
                ChannelsInfoSchema,
                {"channels": {"lobby": channel_example(history=False, users=False)}, "users": []},
            )
        },
    )
    def channel_config(self) -> dict[str, Any]:
        configs = load_channel_configs(self.json_body())
        names = self.node.submit(SetChannelConfigs(configs=configs))
        info = self.node.channels_info(names, include_history=False, include_users=False)
        return dumped(ChannelsInfoSchema, info)

    @view_config(route_name="info")
    @documented(
        "Every channel, with history and users",
        tag=API_TAG,
        method="GET",
        operation_id="info_get",
        description="`/info` answers any method; without a body it reports every channel in full.",
        responses={"200": answer(ChannelsInfoSchema, CHANNELS_INFO_EXAMPLE)},
    )
    @documented(
        "Channels, shaped by an InfoResolution",
        tag=API_TAG,
        method="POST",
        operation_id="info",
        description="With a body, `info` is required; `info.channels` picks channels (unknown "
        "names are skipped), the other flags shape the answer. An empty body reports "
        "everything.",
        request=request_body(
            InfoBodySchema,
            {"info": {"channels": ["lobby"], "include_history": True, "include_users": True}},
            required=False,
        ),
        responses={"200": answer(ChannelsInfoSchema, CHANNELS_INFO_EXAMPLE)},
    )
    def info(self) -> dict[str, Any]:
        """Any method (0.7.1); no body means everything, with history and users."""
        body = self.json_body(default=None)
        info = default_info() if body is None else InfoBodySchema.shared().load(body)["info"]
        return dumped(ChannelsInfoSchema, self.channels_info(info.get("channels"), info))

    @view_config(route_name="history", request_method="POST")
    @documented(
        "A channel's stored messages, by position",
        tag=API_TAG,
        description="What the channel keeps as history (`store_history`, `history_size`, "
        "`history_ttl`), each entry with its `seq`: entries after `since_seq`, oldest first "
        "(`reverse`: newest first), at most `limit`; `has_more` when the range holds more. "
        "Edits show in the entries, deleted messages are gone. Without `user`, every entry "
        "(the web app is trusted); with it, only what that user may see. An unknown channel "
        "answers no messages. After a `gap` frame, `since_seq` = the gap's `seq` returns what "
        "history kept of what the client lost.",
        request=request_body(HistoryBodySchema, {"channel": "lobby", "since_seq": 6}),
        responses={
            "200": answer(
                HistoryResponseSchema,
                {"epoch": EPOCH_EXAMPLE, "messages": [HISTORY_ENTRY_EXAMPLE], "has_more": False},
            )
        },
    )
    def history(self) -> dict[str, Any]:
        data = HistoryBodySchema.shared().load(self.json_body())
        page = self.node.history(
            data["channel"],
            since_seq=data["since_seq"],
            limit=data["limit"],
            reverse=data["reverse"],
            username=data.get("user"),
        )
        answer = {"epoch": self.node.epoch(), "messages": page.entries, "has_more": page.has_more}
        return dumped(HistoryResponseSchema, answer)
