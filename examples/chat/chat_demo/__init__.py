"""A small chat web app on channelstream: the part of the picture that is *your* web app.

It signs users in by name (a signed session cookie, no password: it is a demo), and relays
what the page asks for to channelstream with `channelstream.client`, deciding who may do what:
the user name always comes from the session, a conn_id must be one this session was given, and
only a message's author may edit or delete it. The page listens to channelstream directly
with the browser client served by channelstream (`/static/channelstream.js`). When the page
connects anew it sends its position (`recover`), passed on to channelstream; on a gap it
reloads the channel from `/demo/history` (channelstream's `/history` for the signed-in user).

Run it with `make demo` (channelstream and this app on 127.0.0.1), or by hand:

    channelstream -i development.ini
    PYTHONPATH=examples/chat pserve examples/chat/development.ini
"""

from __future__ import annotations

from gevent import monkey

# The demo is served by gevent (`use = egg:channelstream` in its ini): patch before anything
# (urllib3 under channelstream.client) imports the socket and ssl modules.
if not monkey.is_module_patched("socket"):
    monkey.patch_all()

import json  # noqa: E402
import random
import re
from importlib import resources
from typing import Any

from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPBadRequest, HTTPForbidden, HTTPSeeOther
from pyramid.request import Request
from pyramid.response import Response
from pyramid.session import SignedCookieSessionFactory
from pyramid.view import view_config

from channelstream.client import ChannelstreamError, ChannelstreamHTTPError

USERNAME = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
CHANNEL = re.compile(r"^[a-z0-9_-]{1,32}$")
STATUSES = ("available", "away", "busy")
COLORS = ("#d1495b", "#00798c", "#edae49", "#66a182", "#2e4057", "#8d6a9f")
PUBLIC_STATE_KEYS = ("status", "color")
CHANNEL_CONFIG = {
    "notify_presence": True,
    "notify_state": True,
    "store_history": True,
    "history_size": 50,
    "broadcast_presence_with_user_lists": True,
}
INFO = {"include_history": True, "include_users": True, "return_public_state": True}
# A recovering page gets what it missed as catchup, or a gap (and reloads through /demo/history)
RECOVER_INFO = {**INFO, "include_history": False}
HISTORY_LIMIT = 50  # the channels' history_size: a reload shows all they keep
MAX_TEXT = 2000
CONN_IDS_KEPT = 20


def page(name: str) -> str:
    return (resources.files("chat_demo") / "templates" / name).read_text(encoding="utf-8")


class ChatViews:
    def __init__(self, request: Request) -> None:
        self.request = request
        self.session = request.session
        self.username: str | None = self.session.get("username")
        self.settings = request.registry.settings

    # ------------------------------------------------------------------ pages

    @view_config(route_name="home", request_method="GET")
    def home(self) -> Response:
        if not self.username:
            return Response(page("sign_in.html"), content_type="text/html")
        config = {
            "username": self.username,
            "channels": self.settings["chat.channels"],
            "statuses": list(STATUSES),
            "channelstreamUrl": self.settings["chat.channelstream_public_url"],
        }
        html = page("chat.html").replace("{{config}}", json.dumps(config).replace("<", "\\u003c"))
        return Response(html, content_type="text/html")

    @view_config(route_name="sign_in", request_method="POST")
    def sign_in(self) -> Response:
        username = (self.request.POST.get("username") or "").strip()
        if not USERNAME.match(username):
            return Response(
                page("sign_in.html").replace(
                    "<!--error-->",
                    '<p class="error">A name of 1 to 32 letters, digits, ".", "_" or "-".</p>',
                ),
                content_type="text/html",
                status=400,
            )
        self.session.invalidate()
        self.request.session["username"] = username
        return HTTPSeeOther(self.request.route_url("home"))

    @view_config(route_name="sign_out", request_method="POST")
    def sign_out(self) -> Response:
        self.session.invalidate()
        return HTTPSeeOther(self.request.route_url("home"))

    # ------------------------------------------------------------------ the page's calls

    def _user(self) -> str:
        if not self.username:
            raise HTTPForbidden("sign in first")
        return self.username

    def _body(self) -> dict[str, Any]:
        try:
            body = self.request.json_body
        except ValueError:
            raise HTTPBadRequest("a JSON object is expected") from None
        if not isinstance(body, dict):
            raise HTTPBadRequest("a JSON object is expected")
        return body

    def _channels(self, value: Any) -> list[str]:
        if not isinstance(value, list) or not all(
            isinstance(name, str) and CHANNEL.match(name) for name in value
        ):
            raise HTTPBadRequest("channels: a list of names of 1 to 32 of a-z, 0-9, _ and -")
        return value

    def _own_conn_id(self, body: dict[str, Any]) -> str:
        conn_id = body.get("conn_id")
        if conn_id not in self.session.get("conn_ids", []):
            raise HTTPForbidden("not a connection of this session")
        return str(conn_id)

    def _text(self, body: dict[str, Any]) -> str:
        message = body.get("message")
        text = message.get("text") if isinstance(message, dict) else None
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
            raise HTTPBadRequest(f"message.text: 1 to {MAX_TEXT} characters")
        return text

    @property
    def client(self) -> Any:
        return self.request.channelstream

    def _recover(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The page's position (`{"epoch", "seq"}`) when it connects anew, passed on to
        channelstream so that the new connection catches up from there."""
        recover = body.get("recover")
        if recover is None:
            return None
        if (
            not isinstance(recover, dict)
            or not isinstance(recover.get("epoch"), str)
            or not isinstance(recover.get("seq"), int)
            or isinstance(recover.get("seq"), bool)
            or recover["seq"] < 0
        ):
            raise HTTPBadRequest("recover: {epoch: a string, seq: an integer >= 0}")
        return {"epoch": recover["epoch"], "seq": recover["seq"]}

    @view_config(route_name="connect", request_method="POST", renderer="json")
    def connect(self) -> Any:
        user = self._user()
        body = self._body()
        channels = self._channels(body.get("channels", []))
        recover = self._recover(body)
        result = self.client.connect(
            user,
            channels,
            fresh_user_state={"status": STATUSES[0], "color": random.choice(COLORS)},
            state_public_keys=PUBLIC_STATE_KEYS,
            channel_configs={name: CHANNEL_CONFIG for name in channels},
            info=INFO if recover is None else RECOVER_INFO,
            recover=recover,
        )
        kept = self.session.get("conn_ids", [])[-(CONN_IDS_KEPT - 1) :]
        self.session["conn_ids"] = [*kept, result["conn_id"]]
        return result

    @view_config(route_name="history", request_method="POST", renderer="json")
    def history(self) -> Any:
        """A channel's latest messages, oldest first, as the signed-in user may see them:
        what the page shows after a gap instead of the channel's list it had."""
        user = self._user()
        channel = self._body().get("channel")
        if not isinstance(channel, str) or not CHANNEL.match(channel):
            raise HTTPBadRequest("channel: a channel name")
        found = self.client.history(channel, limit=HISTORY_LIMIT, reverse=True, user=user)
        return {
            "channel": channel,
            "epoch": found.get("epoch"),
            "messages": list(reversed(found.get("messages", []))),
            "has_more": found.get("has_more", False),
        }

    @view_config(route_name="subscribe", request_method="POST", renderer="json")
    def subscribe(self) -> Any:
        self._user()
        body = self._body()
        channels = self._channels(body.get("channels"))
        return self.client.subscribe(
            self._own_conn_id(body),
            channels,
            channel_configs={name: CHANNEL_CONFIG for name in channels},
            info=INFO,
        )

    @view_config(route_name="unsubscribe", request_method="POST", renderer="json")
    def unsubscribe(self) -> Any:
        self._user()
        body = self._body()
        return self.client.unsubscribe(
            self._own_conn_id(body), self._channels(body.get("channels")), info=INFO
        )

    @view_config(route_name="user_state", request_method="POST", renderer="json")
    def user_state(self) -> Any:
        user = self._user()
        update = self._body().get("update_state")
        if not isinstance(update, dict):
            raise HTTPBadRequest("update_state: an object")
        state: dict[str, Any] = {}
        if update.get("status") in STATUSES:
            state["status"] = update["status"]
        if update.get("color") in COLORS:
            state["color"] = update["color"]
        if not state:
            raise HTTPBadRequest(f"update_state.status: one of {', '.join(STATUSES)}")
        return self.client.user_state(user, state)

    @view_config(route_name="message", request_method="POST", renderer="json")
    def message(self) -> Any:
        user = self._user()
        body = self._body()
        text = self._text(body)
        to = body.get("to")
        if to is not None:  # a direct message: only the recipient (and the sender's pages)
            if not isinstance(to, str) or not USERNAME.match(to):
                raise HTTPBadRequest("to: a user name")
            sent = self.client.message(user, {"text": text}, pm_users=sorted({to, user}))
            # in no channel's history: this session is where its author is remembered
            self.session["direct_messages"] = [
                *self.session.get("direct_messages", [])[-99:],
                sent["uuid"],
            ]
            return sent
        channel = body.get("channel")
        if not isinstance(channel, str) or not CHANNEL.match(channel):
            raise HTTPBadRequest("channel: a channel name")
        return self.client.message(user, {"text": text}, channel=channel)

    def _authored(self, body: dict[str, Any]) -> dict[str, Any]:
        """The routing of a message the signed-in user wrote (`uuid`, `channel`, `pm_users`
        as the page got them with the message); 403 for anyone else's."""
        uuid, channel, pm_users = body.get("uuid"), body.get("channel"), body.get("pm_users")
        if not isinstance(uuid, str):
            raise HTTPBadRequest("uuid: the message's uuid")
        if isinstance(channel, str) and CHANNEL.match(channel):
            history = self.client.info([channel], include_history=True, include_users=False)
            entries = history["channels"].get(channel, {}).get("history", [])
            if any(e["uuid"] == uuid and e.get("user") == self.username for e in entries):
                return {"uuid": uuid, "channel": channel}
        elif (
            isinstance(pm_users, list)
            and self.username in pm_users
            and uuid in (self.session.get("direct_messages", []))
        ):
            return {"uuid": uuid, "pm_users": [u for u in pm_users if isinstance(u, str)]}
        raise HTTPForbidden("only its author may change a message")

    @view_config(route_name="message", request_method="PATCH", renderer="json")
    def edit(self) -> Any:
        self._user()
        body = self._body()
        routing = self._authored(body)
        return self.client.edit_messages([{**routing, "message": {"text": self._text(body)}}])

    @view_config(route_name="message", request_method="DELETE", renderer="json")
    def delete(self) -> Any:
        self._user()
        return self.client.delete_messages([self._authored(self._body())])


@view_config(context=ChannelstreamHTTPError, renderer="json")
def channelstream_refused(exc: ChannelstreamHTTPError, request: Request) -> Any:
    request.response.status = 422 if exc.status == 422 else 502
    return {"error": "channelstream refused the call", "detail": exc.body}


@view_config(context=ChannelstreamError, renderer="json")
def channelstream_unreachable(exc: ChannelstreamError, request: Request) -> Any:
    request.response.status = 503
    return {"error": "channelstream is unreachable", "detail": str(exc)}


def main(global_config: dict[str, Any], **settings: Any) -> Any:
    """PasteDeploy app factory (`use = call:chat_demo:main`)."""
    channels = settings.get("chat.channels", "lobby, random")
    settings["chat.channels"] = [c.strip() for c in str(channels).split(",") if c.strip()]
    settings.setdefault("chat.channelstream_public_url", settings.get("channelstream.url"))
    with Configurator(settings=settings) as config:
        config.set_session_factory(
            SignedCookieSessionFactory(
                settings["chat.session_secret"], httponly=True, samesite="Lax"
            )
        )
        config.include("channelstream.client")
        config.add_static_view("static", "chat_demo:static", cache_max_age=0)
        config.add_route("home", "/")
        config.add_route("sign_in", "/sign_in")
        config.add_route("sign_out", "/sign_out")
        config.add_route("connect", "/demo/connect")
        config.add_route("subscribe", "/demo/subscribe")
        config.add_route("unsubscribe", "/demo/unsubscribe")
        config.add_route("user_state", "/demo/user_state")
        config.add_route("message", "/demo/message")
        config.add_route("history", "/demo/history")
        config.scan()
        return config.make_wsgi_app()
