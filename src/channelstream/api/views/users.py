"""/user_state: a user's state and which keys of it are public."""

from __future__ import annotations

from typing import Any

from pyramid.view import view_config, view_defaults

from channelstream.api.security import API_PERMISSION
from channelstream.api.views import NodeView
from channelstream.schemas import UserStateBodySchema


@view_defaults(renderer="json", permission=API_PERMISSION)
class UserViews(NodeView):
    @view_config(route_name="user_state", request_method="POST")
    def user_state(self) -> dict[str, Any]:
        data = UserStateBodySchema.shared().load(self.json_body())
        outcome = self.node.set_user_state(
            data["user"], data["user_state"], data["state_public_keys"]
        )
        assert outcome.user is not None
        return {
            "user_state": outcome.user.state,
            "changed_state": outcome.changed,
            "public_keys": outcome.user.public_keys,
        }
