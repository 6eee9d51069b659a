"""/channel_config and /info: channel settings and what the server knows."""

from __future__ import annotations

from typing import Any

from pyramid.view import view_config, view_defaults

from channelstream.api.documented import API_TAG, answer, documented, request_body
from channelstream.api.openapi import CHANNELS_INFO_EXAMPLE, channel_example
from channelstream.api.security import API_PERMISSION
from channelstream.api.views import NodeView, dumped
from channelstream.core.commands import SetChannelConfigs
from channelstream.schemas import (
    ChannelsInfoSchema,
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
