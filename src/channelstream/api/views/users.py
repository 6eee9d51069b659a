"""/user_state and /user_disconnect: a user's state, which keys of it are public, and
ending all of a user's connections."""

from __future__ import annotations

from typing import Any

from pyramid.view import view_config, view_defaults

from channelstream.api.documented import API_TAG, answer, documented, request_body
from channelstream.api.security import API_PERMISSION
from channelstream.api.views import NodeView, dumped
from channelstream.core.commands import SetUserState
from channelstream.schemas import (
    UserDisconnectBodySchema,
    UserDisconnectResponseSchema,
    UserStateBodySchema,
    UserStateResponseSchema,
)


@view_defaults(renderer="json", permission=API_PERMISSION)
class UserViews(NodeView):
    @view_config(route_name="user_state", request_method="POST")
    @documented(
        "Change a user's state",
        tag=API_TAG,
        description="Merges `user_state`; `state_public_keys` (when given) replaces the public "
        "keys. Channels with `notify_state` get a `user_state_change` frame.",
        request=request_body(
            UserStateBodySchema, {"user": "alice", "user_state": {"status": "away"}}
        ),
        responses={
            "200": answer(
                UserStateResponseSchema,
                {
                    "user_state": {"status": "away"},
                    "changed_state": [{"key": "status", "value": "away"}],
                    "public_keys": ["status"],
                },
            )
        },
    )
    def user_state(self) -> dict[str, Any]:
        data = UserStateBodySchema.shared().load(self.json_body())
        keys = data["state_public_keys"]
        outcome = self.node.submit(
            SetUserState(
                username=data["user"],
                user_state=data["user_state"],
                state_public_keys=None if keys is None else tuple(keys),
            )
        )
        assert outcome.user is not None
        answer = {
            "user_state": outcome.user.state,
            "changed_state": outcome.changed,
            "public_keys": outcome.user.public_keys,
        }
        return dumped(UserStateResponseSchema, answer)

    @view_config(route_name="user_disconnect", request_method="POST")
    @documented(
        "End every connection of some users, on every node",
        tag=API_TAG,
        description="Log users out everywhere: each connection of theirs ends at once (presence "
        "parts), their websockets close with 4003 and `reason` as the close frame's reason "
        "text, SSE streams end with `event: close` (data `4003`, then the reason on a second "
        "line), a waiting long poll answers and later ones get 401. 4003 means: do not "
        "reconnect. `disconnected` counts the connections ended per user (0 for a user "
        "without connections or unknown).",
        request=request_body(UserDisconnectBodySchema, {"users": ["alice"], "reason": "logout"}),
        responses={"200": answer(UserDisconnectResponseSchema, {"disconnected": {"alice": 2}})},
    )
    def user_disconnect(self) -> dict[str, Any]:
        data = UserDisconnectBodySchema.shared().load(self.json_body())
        counts = self.node.disconnect_users(data["users"], data["reason"])
        return dumped(UserDisconnectResponseSchema, {"disconnected": counts})
