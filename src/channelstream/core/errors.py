"""The core's exception tree. Views turn each into one documented HTTP answer."""

from channelstream.exceptions import ChannelstreamException


class CoreError(ChannelstreamException):
    """Base of every error the core raises on a request it cannot honour."""


class UnknownConnection(CoreError):
    """The conn_id names no live connection (422 on the API, close 4001 on /ws)."""


class UnknownUser(CoreError):
    """The username names no known user."""


class ConnectionOwnedByOther(CoreError):
    """/connect reused a conn_id that belongs to another user (fix F3)."""


class TooManyChannels(CoreError):
    """A connection would exceed max_channels_per_connection."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"A connection may join at most {limit} channels")
        self.limit = limit


class TooManyConnections(CoreError):
    """The server already holds max_connections connections."""


class TooManyUserConnections(CoreError):
    """The user already holds max_connections_per_user connections (cluster-wide)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"A user may hold at most {limit} connections")
        self.limit = limit
