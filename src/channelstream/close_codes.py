"""Every websocket close code the server sends or reads: one table, mirrored in the README."""

from enum import IntEnum


class CloseCode(IntEnum):
    NORMAL = 1000  # /disconnect was called: the connection is gone for good
    GOING_AWAY = 1001  # the server is shutting down: reconnect (to another node)
    PROTOCOL_ERROR = 1002  # the client broke RFC 6455 (its close is answered with this)
    NO_STATUS = 1005  # read only: a client close frame without a code (answered with 1000)
    ORIGIN_NOT_ALLOWED = 1008  # the page's Origin is not in allow_cors
    MESSAGE_TOO_BIG = 1009  # a client frame exceeded max_message_size
    TRY_AGAIN_LATER = 1013  # the cluster broker (Redis) is unreachable: reconnect later
    UNKNOWN_CONNECTION = 4001  # no such conn_id: ask the web app for a new one via /connect
    TOO_SLOW = 4002  # the outbound buffer overflowed: reconnect and catch up
    USER_DISCONNECTED = 4003  # /user_disconnect ended the user's connections: do not reconnect
    TOKEN_EXPIRED = 4004  # the connection token expired: get a fresh one, reconnect with recover
