"""The root of every exception channelstream defines, and `BadSignature` (0.7.1's import path
for custom signature checkers). Each part keeps its own subtree: `core.errors.CoreError`,
`broker.BrokerUnavailable`, `settings.SettingsError`, the HTTP edge's refusals in
`api.errors`, the Python client's `client.ChannelstreamError`, and
`gevent_edge.GeventEdgeError` (a gevent that moved what the server relies on). Defined here
as well: `WebhookSignatureError`, which a webhook receiver gets from `verify_webhook`."""

# The exit status of every entry point (console script, pserve, the container) when the
# server cannot start as configured: a bad setting, an address it cannot listen on.
EXIT_BAD_CONFIG = 2


class ChannelstreamException(Exception):
    """Base of every exception channelstream defines."""


class BadSignature(ChannelstreamException):
    """An API signature is missing its value, forged, expired or bound to another path."""


class TokenRefused(ChannelstreamException):
    """A connection token that cannot be trusted (401): malformed, expired, not yet valid,
    or not signed with HS256 and the server's secret."""


class WebhookSignatureError(ChannelstreamException):
    """A webhook request a receiver must refuse: no or a malformed `X-Channelstream-Signature`
    header, a signature that does not match the body, a timestamp outside the tolerance (a
    replay, or clocks apart), or a body that is not a webhook batch. Answer it with a 4xx."""
