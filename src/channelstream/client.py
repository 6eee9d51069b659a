"""A Python client for channelstream's signed server API, and its Pyramid `includeme`.

    client = ChannelstreamClient("http://127.0.0.1:8000", secret="dev-secret", timeout=5)
    conn = client.connect("alice", channels=["lobby"], state_public_keys=["status"])
    token = client.connection_token("alice", channels=["lobby"], ttl=600)  # or: /ws?token=
    client.message("alice", {"text": "hello"}, channel="lobby")

Each call is signed for the path it calls (`sign(secret, "/connect")`). Connections are pooled
(one urllib3 pool, safe to share between threads and greenlets). Errors are typed:

    ChannelstreamError
    ├── ChannelstreamConnectionError     the server could not be reached or did not answer
    │   └── ChannelstreamTimeout         ... within `timeout` seconds
    └── ChannelstreamHTTPError           the server answered with an error (`status`, `body`)
        ├── BadRequestError (400)        ├── SignatureError (401)   ├── ForbiddenError (403)
        ├── NotFoundError (404)          ├── PayloadTooLargeError (413)
        ├── ValidationError (422)        └── UnavailableError (503)

Webhooks go the other way: the server POSTs signed event batches to the web app, which checks
them with the client, no request made (`webhook_secret` defaults to `secret`, as on the server):

    events = client.verify_webhook(request.body, request.headers.get("X-Channelstream-Signature"))

It raises `WebhookSignatureError` (a `ChannelstreamException`, not a `ChannelstreamError`:
no server answered) for a missing, malformed or forged signature, a stale timestamp or a body
that is not a batch; answer that with a 4xx.

In a Pyramid app, `config.include("channelstream.client")` builds one client from the settings
`channelstream.url`, `channelstream.secret` and optionally `channelstream.timeout` (seconds)
and `channelstream.webhook_secret`, and adds `request.channelstream` and
`request.verify_channelstream_webhook(tolerance=300)`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import jwt
import urllib3

from channelstream import encoding, webhook_signature
from channelstream.exceptions import ChannelstreamException, WebhookSignatureError
from channelstream.signature import sign
from channelstream.webhook_signature import SIGNATURE_HEADER

__all__ = [
    "BadRequestError",
    "ChannelstreamClient",
    "ChannelstreamConnectionError",
    "ChannelstreamError",
    "ChannelstreamHTTPError",
    "ChannelstreamTimeout",
    "ForbiddenError",
    "NotFoundError",
    "PayloadTooLargeError",
    "SignatureError",
    "UnavailableError",
    "ValidationError",
    "WebhookSignatureError",
    "includeme",
]

SECRET_HEADER = "x-channelstream-secret"
DEFAULT_TIMEOUT = 10.0


class ChannelstreamError(ChannelstreamException):
    """Base of every error a call to the server raises (`verify_webhook`, which calls
    nothing, raises `WebhookSignatureError`)."""


class ChannelstreamConnectionError(ChannelstreamError):
    """The server could not be reached, or the connection broke before an answer."""


class ChannelstreamTimeout(ChannelstreamConnectionError):
    """The server did not answer within the client's timeout."""


class ChannelstreamHTTPError(ChannelstreamError):
    """The server answered with an error status.

    `status` is the HTTP status, `body` the server's JSON error (a dict or list), or its text
    when the body is not JSON. 422 bodies are field errors (`{"username": ["..."]}`), others
    `{"error": "<code>", "message": "..."}`.
    """

    def __init__(self, status: int, body: Any, method: str = "", path: str = "") -> None:
        self.status = status
        self.body = body
        self.method = method
        self.path = path
        super().__init__(f"{method} {path} -> {status}: {body!r}".strip())

    @property
    def message(self) -> str:
        """The server's error message (`body["message"]`), or the body as text."""
        if isinstance(self.body, dict) and isinstance(self.body.get("message"), str):
            return str(self.body["message"])
        return self.body if isinstance(self.body, str) else encoding.dumps(self.body)


class BadRequestError(ChannelstreamHTTPError):
    """400: the request body was not valid JSON."""


class SignatureError(ChannelstreamHTTPError):
    """401: the signature was refused (wrong secret, expired, or clocks far apart)."""


class ForbiddenError(ChannelstreamHTTPError):
    """403: this address may not call the API (`allow_posting_from`), or no signature."""


class NotFoundError(ChannelstreamHTTPError):
    """404: no such endpoint on this server."""


class PayloadTooLargeError(ChannelstreamHTTPError):
    """413: the body exceeds the server's `max_message_size`, `max_json_depth` or
    `max_json_items` (`body["limit"]` names which)."""


class ValidationError(ChannelstreamHTTPError):
    """422: the server refused a field; `body` maps field names to messages."""


class UnavailableError(ChannelstreamHTTPError):
    """503: the server is at `max_connections` or its broker (Redis) is unreachable."""


ERRORS_BY_STATUS: dict[int, type[ChannelstreamHTTPError]] = {
    400: BadRequestError,
    401: SignatureError,
    403: ForbiddenError,
    404: NotFoundError,
    413: PayloadTooLargeError,
    422: ValidationError,
    503: UnavailableError,
}


def _without_none(**fields: Any) -> dict[str, Any]:
    """Keyword arguments left at None are not sent: the server's defaults apply."""
    return {key: value for key, value in fields.items() if value is not None}


def _listed(values: Iterable[str] | None) -> list[str] | None:
    return None if values is None else list(values)


class ChannelstreamClient:
    """The signed server API of one channelstream server (or load balancer).

    base_url: e.g. `http://127.0.0.1:8000`; a path (`https://host/channelstream`) is kept.
    secret: the server's `secret` setting.
    timeout: seconds to connect and, separately, to wait for an answer.
    maxsize: connections kept open to the server (more may open under load; the extra ones
        are closed after use).
    webhook_secret: the server's `webhook_secret`, which `verify_webhook` checks webhook
        requests with; None (or empty) means `secret`, as on the server.
    """

    def __init__(
        self,
        base_url: str,
        secret: str,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        maxsize: int = 10,
        webhook_secret: str | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url must be an http(s) URL, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._path_prefix = parts.path.rstrip("/")
        self.secret = secret
        self.webhook_secret = webhook_secret or secret
        self.timeout = timeout
        # No retries after a request was sent (a POST /message must not be posted twice);
        # a refused connection is retried once (e.g. a pooled connection the server closed).
        self._pool = urllib3.PoolManager(
            maxsize=maxsize,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            retries=urllib3.Retry(total=1, connect=1, read=0, redirect=0, status=0, other=0),
        )

    def close(self) -> None:
        """Close the pooled connections (the client stays usable: new ones open as needed)."""
        self._pool.clear()

    def __enter__(self) -> ChannelstreamClient:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ChannelstreamClient({self.base_url!r})"

    # ------------------------------------------------------------------ transport

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Send `method path` with `body` as JSON, signed for the path; the answer's JSON.

        Raises ChannelstreamHTTPError (a subclass per status) for error answers and
        ChannelstreamConnectionError when there is no answer.
        """
        full_path = self._path_prefix + path
        headers = {SECRET_HEADER: sign(self.secret, full_path), "Accept": "application/json"}
        data = None
        if body is not None:
            data = encoding.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        try:
            response = self._pool.request(
                method, self.base_url + path, body=data, headers=headers, preload_content=True
            )
        except (urllib3.exceptions.TimeoutError, urllib3.exceptions.MaxRetryError) as error:
            reason = getattr(error, "reason", None) or error
            # (urllib3 derives NewConnectionError, a refused connection, from its timeouts)
            if isinstance(reason, urllib3.exceptions.TimeoutError) and not isinstance(
                reason, urllib3.exceptions.NewConnectionError
            ):
                raise ChannelstreamTimeout(
                    f"{method} {full_path}: no answer within {self.timeout} s"
                ) from error
            raise ChannelstreamConnectionError(f"{method} {full_path}: {reason}") from error
        except urllib3.exceptions.HTTPError as error:
            raise ChannelstreamConnectionError(f"{method} {full_path}: {error}") from error
        status, text = response.status, response.data.decode("utf-8", "replace")
        # An error raised below keeps this frame alive: it must not keep the pooled socket.
        del response
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = text
        if status >= 400:
            error_class = ERRORS_BY_STATUS.get(status, ChannelstreamHTTPError)
            raise error_class(status, parsed, method, full_path)
        return parsed

    # ------------------------------------------------------------------ connections

    def connect(
        self,
        username: str,
        channels: Iterable[str] = (),
        *,
        conn_id: str | None = None,
        fresh_user_state: Mapping[str, Any] | None = None,
        user_state: Mapping[str, Any] | None = None,
        state_public_keys: Iterable[str] | None = None,
        channel_configs: Mapping[str, Mapping[str, Any]] | None = None,
        info: Mapping[str, Any] | None = None,
        recover: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """`POST /connect`: a connection for `username` in `channels`.

        Returns `{"conn_id", "username", "state", "public_state", "channels",
        "channels_info", "epoch"}`; hand `conn_id` to the browser. Note that the server sets
        the user's `state_public_keys` on every connect (none given: no public keys).
        `recover` (`{"epoch": ..., "seq": ...}`, the last position the browser saw) makes the
        new connection replay what it missed; the answer then says `recovered`.
        """
        body = _without_none(
            username=username,
            channels=list(channels),
            conn_id=conn_id,
            fresh_user_state=fresh_user_state,
            user_state=user_state,
            state_public_keys=_listed(state_public_keys),
            channel_configs=channel_configs,
            info=info,
            recover=dict(recover) if recover is not None else None,
        )
        result: dict[str, Any] = self.request("POST", "/connect", body)
        return result

    def subscribe(
        self,
        conn_id: str,
        channels: Iterable[str],
        *,
        channel_configs: Mapping[str, Mapping[str, Any]] | None = None,
        info: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """`POST /subscribe`: `{"channels", "channels_info", "subscribed_to"}`."""
        body = _without_none(
            conn_id=conn_id, channels=list(channels), channel_configs=channel_configs, info=info
        )
        result: dict[str, Any] = self.request("POST", "/subscribe", body)
        return result

    def unsubscribe(
        self, conn_id: str, channels: Iterable[str], *, info: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """`POST /unsubscribe`: `{"channels", "channels_info", "unsubscribed_from"}`."""
        body = _without_none(conn_id=conn_id, channels=list(channels), info=info)
        result: dict[str, Any] = self.request("POST", "/unsubscribe", body)
        return result

    def disconnect(self, conn_id: str) -> bool:
        """`POST /disconnect`: end the connection now; True if it existed."""
        return bool(self.request("POST", "/disconnect", {"conn_id": conn_id}))

    def connection_token(
        self,
        user: str,
        channels: Iterable[str] = (),
        *,
        ttl: float = 300,
        **claims: Any,
    ) -> str:
        """A connection token for the browser: `/ws?token=...` (or `/sse`, `/listen`) then
        connects `user` to `channels` with no `/connect` call, no request made here.

        HS256, signed with the client's secret, expiring in `ttl` seconds (the connection
        closes with 4004 then). `claims` adds `state`, `state_public_keys`,
        `channel_configs`, `recover` (`{"epoch", "seq"}`) or `jti`: the same token, or the
        same `jti` for the same user, re-attaches to the same connection."""
        # no `iat`: the server refuses one ahead of its own clock, and a skew would do that
        payload = {**claims, "sub": user, "channels": list(channels)}
        payload["exp"] = int(time.time()) + max(1, math.ceil(ttl))
        return jwt.encode(payload, self.secret, algorithm="HS256")

    def user_disconnect(self, users: Iterable[str], *, reason: str = "") -> dict[str, int]:
        """`POST /user_disconnect`: end every connection of `users` on every node (close code
        4003 with `reason`); the connections ended per user (0: none, or unknown user)."""
        body = {"users": list(users), "reason": reason}
        result: dict[str, Any] = self.request("POST", "/user_disconnect", body)
        return dict(result["disconnected"])

    # ------------------------------------------------------------------ users and channels

    def user_state(
        self,
        user: str,
        user_state: Mapping[str, Any] | None = None,
        *,
        state_public_keys: Iterable[str] | None = None,
    ) -> dict[str, Any]:
        """`POST /user_state`: merge `user_state`; `state_public_keys` None leaves them as they
        are. Returns `{"user_state", "changed_state", "public_keys"}`."""
        body = _without_none(
            user=user,
            user_state=dict(user_state or {}),
            state_public_keys=_listed(state_public_keys),
        )
        result: dict[str, Any] = self.request("POST", "/user_state", body)
        return result

    def channel_config(self, configs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """`POST /channel_config` with `{channel: {notify_presence: True, ...}}`; only the
        given keys change. Returns the channels' info."""
        result: dict[str, Any] = self.request(
            "POST", "/channel_config", {name: dict(config) for name, config in configs.items()}
        )
        return result

    def info(
        self,
        channels: Iterable[str] | None = None,
        *,
        exclude_channels: Iterable[str] | None = None,
        include_history: bool | None = None,
        include_users: bool | None = None,
        include_connections: bool | None = None,
        return_public_state: bool | None = None,
    ) -> dict[str, Any]:
        """`POST /info`: `{"channels": {...}, "users": [...]}` for `channels` (None: all)."""
        resolution = _without_none(
            channels=_listed(channels),
            exclude_channels=_listed(exclude_channels),
            include_history=include_history,
            include_users=include_users,
            include_connections=include_connections,
            return_public_state=return_public_state,
        )
        result: dict[str, Any] = self.request("POST", "/info", {"info": resolution})
        return result

    # ------------------------------------------------------------------ messages

    def message(
        self,
        user: str,
        message: Mapping[str, Any] | None = None,
        *,
        channel: str | None = None,
        pm_users: Iterable[str] | None = None,
        exclude_users: Iterable[str] | None = None,
        no_history: bool | None = None,
        uuid: str | None = None,
        timestamp: datetime | str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """`POST /message` with one message from `user` to `channel` and/or `pm_users`.

        Returns the accepted message (with its `uuid` and `timestamp`). A repeated
        `idempotency_key` (within the server's `idempotency_window`) is not delivered again:
        the answer is the first message."""
        item = _without_none(
            user=user,
            message=message,
            channel=channel,
            pm_users=_listed(pm_users),
            exclude_users=_listed(exclude_users),
            no_history=no_history,
            uuid=uuid,
            timestamp=timestamp,
            idempotency_key=idempotency_key,
        )
        accepted = self.messages([item])
        return accepted[0] if accepted else item

    def messages(self, items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """`POST /message` with several messages (dicts with the fields of `message`)."""
        result: list[dict[str, Any]] = self.request(
            "POST", "/message", [dict(item) for item in items]
        )
        return result

    def history(
        self,
        channel: str,
        since_seq: int = 0,
        limit: int = 100,
        reverse: bool = False,
        user: str | None = None,
    ) -> dict[str, Any]:
        """`POST /history`: `{"epoch", "messages", "has_more"}`, the channel's stored messages
        with a `seq` above `since_seq` (at most `limit`, newest first if `reverse`); with
        `user`, only those that user may see."""
        body = _without_none(
            channel=channel, since_seq=since_seq, limit=limit, reverse=reverse, user=user
        )
        result: dict[str, Any] = self.request("POST", "/history", body)
        return result

    def edit_messages(self, edits: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """`PATCH /message`: each edit has `uuid` and the routing of the original (`channel`
        and/or `pm_users`), plus the fields that change (`message`, `user`, `timestamp`)."""
        result: list[dict[str, Any]] = self.request(
            "PATCH", "/message", [dict(edit) for edit in edits]
        )
        return result

    def edit_message(
        self,
        uuid: str,
        message: Mapping[str, Any] | None = None,
        *,
        channel: str | None = None,
        pm_users: Iterable[str] | None = None,
        exclude_users: Iterable[str] | None = None,
        user: str | None = None,
        timestamp: datetime | str | None = None,
        edited: datetime | str | None = None,
    ) -> dict[str, Any]:
        """One edit (see `edit_messages`); returns the accepted edit."""
        edit = _without_none(
            uuid=uuid,
            message=message,
            channel=channel,
            pm_users=_listed(pm_users),
            exclude_users=_listed(exclude_users),
            user=user,
            timestamp=timestamp,
            edited=edited,
        )
        accepted = self.edit_messages([edit])
        return accepted[0] if accepted else edit

    def delete_messages(self, deletes: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """`DELETE /message`: each item has `uuid` and the routing of the original."""
        result: list[dict[str, Any]] = self.request(
            "DELETE", "/message", [dict(item) for item in deletes]
        )
        return result

    def delete_message(
        self,
        uuid: str,
        *,
        channel: str | None = None,
        pm_users: Iterable[str] | None = None,
        exclude_users: Iterable[str] | None = None,
    ) -> dict[str, Any]:
        """One delete (see `delete_messages`); returns the accepted item."""
        item = _without_none(
            uuid=uuid,
            channel=channel,
            pm_users=_listed(pm_users),
            exclude_users=_listed(exclude_users),
        )
        accepted = self.delete_messages([item])
        return accepted[0] if accepted else item

    # ------------------------------------------------------------------ webhooks

    def verify_webhook(
        self,
        body: bytes | str,
        signature_header: str | None,
        tolerance: float = webhook_signature.DEFAULT_TOLERANCE,
    ) -> list[dict[str, Any]]:
        """The events of a webhook request the server sent, once verified; no request made.

        `body` is the raw request body, as received (verify before parsing: the signature
        covers the bytes), `signature_header` the `X-Channelstream-Signature` header's value
        (None when absent). A signature more than `tolerance` seconds from this machine's
        clock is refused as a replay. Raises WebhookSignatureError saying what failed.
        Deduplicate by each event's `id`: delivery is at least once."""
        return webhook_signature.verify_webhook(
            self.webhook_secret, body, signature_header, tolerance=tolerance
        )

    # ------------------------------------------------------------------ admin

    def admin_info(self) -> dict[str, Any]:
        """`GET /admin/admin.json`: server-wide figures, channels and users (admin view)."""
        result: dict[str, Any] = self.request("GET", "/admin/admin.json")
        return result


# ---------------------------------------------------------------------- Pyramid integration


def client_from_settings(settings: Mapping[str, Any]) -> ChannelstreamClient:
    """A client from a Pyramid app's settings: `channelstream.url` (required),
    `channelstream.secret` (required), `channelstream.timeout` (seconds, optional),
    `channelstream.webhook_secret` (optional; default: `channelstream.secret`)."""
    missing = [
        key for key in ("channelstream.url", "channelstream.secret") if not settings.get(key)
    ]
    if missing:
        raise ValueError(f"channelstream.client needs the settings {', '.join(missing)}")
    timeout = float(settings.get("channelstream.timeout") or DEFAULT_TIMEOUT)
    webhook_secret = settings.get("channelstream.webhook_secret")
    return ChannelstreamClient(
        str(settings["channelstream.url"]),
        str(settings["channelstream.secret"]),
        timeout,
        webhook_secret=str(webhook_secret) if webhook_secret else None,
    )


def _verify_channelstream_webhook(
    request: Any, tolerance: float = webhook_signature.DEFAULT_TOLERANCE
) -> list[dict[str, Any]]:
    """`request.verify_channelstream_webhook()`: the events of this request, read from its raw
    body and its `X-Channelstream-Signature` header; raises WebhookSignatureError."""
    client: ChannelstreamClient = request.registry.channelstream_client
    return client.verify_webhook(
        request.body, request.headers.get(SIGNATURE_HEADER), tolerance=tolerance
    )


def includeme(config: Any) -> None:
    """`config.include("channelstream.client")`: one shared client as `request.channelstream`
    (also `config.registry.channelstream_client`), and
    `request.verify_channelstream_webhook(tolerance=300)` for webhook views."""
    client = client_from_settings(config.get_settings())
    config.registry.channelstream_client = client
    config.add_request_method(
        lambda request: request.registry.channelstream_client, "channelstream", reify=True
    )
    config.add_request_method(_verify_channelstream_webhook, "verify_channelstream_webhook")
