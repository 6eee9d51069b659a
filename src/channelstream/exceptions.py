"""Public exceptions. `BadSignature` keeps 0.7.1's import path for custom signature checkers."""


class ChannelstreamException(Exception):
    """Base of the exceptions channelstream raises to its users."""


class BadSignature(ChannelstreamException):
    """An API signature is missing its value, forged, expired or bound to another path."""
