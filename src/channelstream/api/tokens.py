"""Connection tokens: a JWT the web app signs lets a browser open `/ws`, `/sse` or `/listen`
itself, with no `/connect` round trip.

The token is HS256, signed with the server's `secret`; `sub` (the username) and `exp` are
required, and the claims `channels`, `state`, `state_public_keys`, `channel_configs` and
`recover` are `/connect`'s body, validated by the same schema (so bad claims get the same
422 or 413 answers). Only HS256 is accepted: `alg: none`, other HMAC sizes and public-key
algorithms are refused, so nobody can choose how a token is checked.

The connection's conn_id is derived from the token: an HMAC keyed by `secret` over `sub` and
`jti` (without a `jti`, over the whole token). The same token, or another with the same `sub`
and `jti`, lands on the same connection: a reconnect re-attaches and catches up, and a token
used after its connection ended creates it anew. Keyed, because a conn_id is a credential of
its own (`/ws?conn_id=`): nobody can compute one from a username and a `jti`.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from marshmallow import ValidationError

from channelstream.api.body import check_json_depth, check_json_items
from channelstream.core.commands import Connect
from channelstream.exceptions import TokenRefused
from channelstream.node import Node
from channelstream.schemas import ConnectBodySchema
from channelstream.settings import Settings

ALGORITHMS = ["HS256"]
REQUIRED_CLAIMS = ["sub", "exp"]
# PyJWT's claim checks, all of them, without checking the signature a second time: the
# payload's text was read from a verified token first (`_payload_text`).
CLAIM_CHECKS: jwt.types.Options = {
    "verify_signature": False,
    "verify_exp": True,
    "verify_nbf": True,
    "verify_iat": True,
    "verify_aud": True,
    "verify_iss": True,
    "verify_sub": True,
    "verify_jti": True,
    "require": REQUIRED_CLAIMS,
}
# claim -> the /connect body field it stands for
CLAIM_FIELDS = {
    "sub": "username",
    "channels": "channels",
    "state": "user_state",
    "state_public_keys": "state_public_keys",
    "channel_configs": "channel_configs",
    "recover": "recover",
}
FIELD_CLAIMS = {field: claim for claim, field in CLAIM_FIELDS.items()}
CONN_ID_CONTEXT = b"channelstream connection token\x00"
# Where the websocket pre-start hook leaves what it did with a token, for the /ws view.
TOKEN_CONN_ID_KEY = "channelstream.token_conn_id"
TOKEN_REFUSAL_KEY = "channelstream.token_refusal"


@dataclass(frozen=True)
class TokenConnection:
    """What a valid token asks for: the Connect to submit on first use, and when it ends."""

    conn_id: str
    expires_at: float  # `exp`, Unix time
    connect: Connect


def token_conn_id(secret: str, username: str, jti: str | None, token: str) -> str:
    """The connection of a token: one per (`sub`, `jti`), or per token without a `jti`."""
    subject = f"jti\x00{username}\x00{jti}" if jti is not None else f"token\x00{token}"
    digest = hmac.new(
        secret.encode("utf-8"), CONN_ID_CONTEXT + subject.encode("utf-8"), hashlib.sha256
    ).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def _why(error: Exception) -> str:
    """A short reason for the log line and the answer."""
    if isinstance(error, jwt.ExpiredSignatureError):
        return "expired"
    if isinstance(error, jwt.ImmatureSignatureError):
        return "not yet valid"
    if isinstance(error, jwt.InvalidAlgorithmError):
        return "algorithm not allowed (HS256 only)"
    if isinstance(error, jwt.InvalidSignatureError):
        return "bad signature"
    if isinstance(error, jwt.MissingRequiredClaimError):
        return f"missing claim {error.claim}"
    if isinstance(error, jwt.DecodeError | RecursionError | ValueError):
        return "malformed"
    return f"invalid ({error})"


def _payload_text(token: str, secret: str) -> str:
    """The payload of a token whose signature checks out, as text (not yet parsed)."""
    try:
        payload = jwt.api_jws.decode_complete(token, secret, algorithms=ALGORITHMS)["payload"]
        return bytes(payload).decode("utf-8")
    except (jwt.PyJWTError, RecursionError, ValueError, binascii.Error) as error:
        raise TokenRefused(_why(error)) from None


def read_token(token: str, settings: Settings) -> TokenConnection:
    """Verify a token and validate its claims as /connect's body. Raises TokenRefused (401),
    PayloadTooLarge (413) or ValidationError (422, keyed by claim names)."""
    text = _payload_text(token, settings.secret)
    # The signature is the server's: limits as for a request body, before parsing it again.
    check_json_depth(text, settings.max_json_depth)
    try:
        claims: dict[str, Any] = jwt.decode(token, options=CLAIM_CHECKS)
    except (jwt.PyJWTError, RecursionError, ValueError) as error:
        raise TokenRefused(_why(error)) from None
    check_json_items(text, claims, settings.max_json_items)
    jti = claims.get("jti")
    body = {field: claims[claim] for claim, field in CLAIM_FIELDS.items() if claim in claims}
    try:
        data = ConnectBodySchema.lean_load(body)
    except ValidationError as error:
        messages = error.messages
        if isinstance(messages, dict):
            messages = {
                FIELD_CLAIMS.get(str(key), str(key)): value for key, value in messages.items()
            }
        raise ValidationError(messages) from None
    conn_id = token_conn_id(settings.secret, data["username"], jti, token)
    connect = Connect(
        username=data["username"],
        conn_id=conn_id,
        channels=tuple(data["channels"]),
        state_public_keys=tuple(data["state_public_keys"]),
        user_state=data["user_state"],
        channel_configs=data["channel_configs"],
        recover=data.get("recover"),
    )
    return TokenConnection(conn_id, float(claims["exp"]), connect)


def open_connection(node: Node, token: str) -> tuple[str, bool]:
    """The conn_id of a token's connection, and whether this call created it (as /connect
    would: on first use), set to end at the token's `exp`. Raises what `read_token` and
    `Node.submit` raise."""
    ticket = read_token(token, node.settings)
    created = not node.touch(ticket.conn_id)
    if created:
        node.submit(ticket.connect)
        node.epoch()  # started if none yet: the listener's `position` frame names it
    node.expire_at(ticket.conn_id, ticket.expires_at)
    return ticket.conn_id, created


def prepare_upgrade(node: Node, environ: dict[str, Any], token: str) -> bool:
    """For the websocket pre-start hook: open the token's connection before the upgrade.
    True to upgrade; False serves the request as plain HTTP, and the /ws view raises the
    refusal it left in `environ` (a 401, 422, 413, 429 or 503 in JSON, with its log line)."""
    try:
        environ[TOKEN_CONN_ID_KEY] = open_connection(node, token)[0]
    except Exception as error:  # every refusal has its exception view; the rest a 500
        environ[TOKEN_REFUSAL_KEY] = error
        return False
    return True
