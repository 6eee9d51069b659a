"""/channel_config and /info: channel settings and what the server knows."""

from __future__ import annotations

from typing import Any

from pyramid.view import view_config, view_defaults

from channelstream.api.security import API_PERMISSION
from channelstream.api.views import NodeView
from channelstream.schemas import InfoBodySchema, default_info, load_channel_configs


@view_defaults(renderer="json", permission=API_PERMISSION)
class ChannelViews(NodeView):
    @view_config(route_name="channel_config", request_method="POST")
    def channel_config(self) -> dict[str, Any]:
        configs = load_channel_configs(self.json_body())
        names = self.node.set_channel_configs(configs)
        return self.node.state.channels_info(names, include_history=False, include_users=False)

    @view_config(route_name="info")
    def info(self) -> dict[str, Any]:
        """Any method (0.7.1); no body means everything, with history and users."""
        body = self.json_body(default=None)
        info = default_info() if body is None else InfoBodySchema.shared().load(body)["info"]
        return self.channels_info(info.get("channels"), info)
