"""The settings table: every configuration key, its default, its parser and its documentation.

This table is the single source of truth for configuration. The CLI, `make_config`, the
README's settings section and the app factory all read it. Sources, lowest to highest
precedence: the defaults below, the ini file (or Pyramid app settings), and
`CHANNELSTREAM_<KEY>` environment variables.

Whose keys are ours: a section that is all channelstream's (`[channelstream]`, or the
`[app:main]` of `use = egg:channelstream`) may name a setting bare or `channelstream.`-prefixed
(`section_values`); the settings of a host Pyramid app that includes channelstream hold the
host's own `secret`, `port` or `debug`, so there only prefixed keys count (`host_app_values`).
"""

from __future__ import annotations

import ipaddress
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlsplit

from channelstream.exceptions import ChannelstreamException

ENV_PREFIX = "CHANNELSTREAM_"

APP_SETTINGS_PREFIX = "channelstream."

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class SettingsError(ChannelstreamException, ValueError):
    """A configuration value is invalid; the message names the key."""


def parse_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"true", "yes", "on", "1", "t", "y"}:
        return True
    if text in {"false", "no", "off", "0", "f", "n", ""}:
        return False
    raise ValueError(f"expected a boolean (true/false), got {raw!r}")


def parse_list(raw: Any) -> tuple[str, ...]:
    """A comma- or newline-separated list; a list value passes through."""
    if isinstance(raw, (list, tuple)):
        items: Iterable[Any] = raw
    else:
        items = str(raw).replace("\n", ",").split(",")
    return tuple(str(item).strip() for item in items if str(item).strip())


def parse_networks(raw: Any) -> tuple[IPNetwork, ...]:
    """Addresses or CIDR ranges; `0.0.0.0` alone means any IPv4 or IPv6 address."""
    networks: list[IPNetwork] = []
    for item in parse_list(raw):
        if item == "0.0.0.0":
            networks.extend([ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")])
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or CIDR range") from None
    return tuple(networks)


def parse_positive_int(raw: Any) -> int:
    value = int(str(raw).strip())
    if value < 1:
        raise ValueError(f"expected a whole number >= 1, got {raw!r}")
    return value


def parse_non_negative_int(raw: Any) -> int:
    value = int(str(raw).strip())
    if value < 0:
        raise ValueError(f"expected a whole number >= 0, got {raw!r}")
    return value


def parse_positive_float(raw: Any) -> float:
    value = float(str(raw).strip())
    if value <= 0:
        raise ValueError(f"expected a number > 0, got {raw!r}")
    return value


def parse_non_negative_float(raw: Any) -> float:
    value = float(str(raw).strip())
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"expected a number >= 0, got {raw!r}")
    return value


def parse_port(raw: Any) -> int:
    value = int(str(raw).strip())
    if not 0 <= value <= 65535:
        raise ValueError(f"expected a port number 0..65535, got {raw!r}")
    return value


def parse_log_level(raw: Any) -> str:
    text = str(raw).strip().upper() or "INFO"
    if not isinstance(logging.getLevelName(text), int):
        raise ValueError(f"unknown log level {raw!r}")
    return text


def parse_http_scheme(raw: Any) -> str:
    text = str(raw).strip().lower()
    if text not in {"", "http", "https"}:
        raise ValueError(f"expected 'http', 'https' or empty, got {raw!r}")
    return text


def parse_log_format(raw: Any) -> str:
    text = str(raw).strip().lower() or "text"
    if text not in {"text", "json"}:
        raise ValueError(f"expected 'text' or 'json', got {raw!r}")
    return text


def parse_broker(raw: Any) -> str:
    """`memory`, or a Redis URL: redis://[:password@]host[:port][/db], rediss://, unix://."""
    text = str(raw).strip()
    if text == "memory":
        return text
    parts = urlsplit(text)
    if parts.scheme not in {"redis", "rediss", "unix"} or not (parts.hostname or parts.path):
        raise ValueError(f"expected 'memory' or a redis://host:port/db URL, got {raw!r}")
    if parts.scheme != "unix" and parts.path.strip("/") and not parts.path.strip("/").isdigit():
        raise ValueError(f"the database in {raw!r} must be a number")
    return text


def parse_prefix(raw: Any) -> str:
    text = str(raw).strip()
    if not text or any(ch.isspace() for ch in text):
        raise ValueError(f"expected a non-empty key prefix without spaces, got {raw!r}")
    return text


def parse_str(raw: Any) -> str:
    return str(raw).strip()


@dataclass(frozen=True)
class Setting:
    """One configuration key: its default (as written in an ini file), parser and help text."""

    name: str
    default: str
    parse: Callable[[Any], Any]
    help: str
    example: str = ""

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.name.upper()


SETTINGS_TABLE: tuple[Setting, ...] = (
    Setting("host", "0.0.0.0", parse_str, "Address the HTTP/websocket server binds to."),
    Setting("port", "8000", parse_port, "TCP port of the HTTP/websocket server."),
    Setting(
        "secret",
        "secret",
        parse_str,
        "Key that signs server API calls (itsdangerous TimestampSigner). Change it: the "
        "default is logged as a warning.",
    ),
    Setting("admin_user", "admin", parse_str, "User name for the admin panel sign-in."),
    Setting(
        "admin_secret",
        "admin_secret",
        parse_str,
        "Password for the admin panel sign-in. Change it: the default is logged as a warning.",
    ),
    Setting(
        "cookie_secret",
        "",
        parse_str,
        "Secret of the admin session cookie. Empty: a random one per start (admin sessions "
        "end on restart).",
    ),
    Setting(
        "allow_posting_from",
        "127.0.0.1",
        parse_networks,
        "Addresses or CIDR ranges allowed to call the signed server API (comma or newline "
        "separated). 0.0.0.0 allows any address.",
        example="127.0.0.1, 10.0.0.0/8, ::1",
    ),
    Setting(
        "trusted_proxies",
        "",
        parse_networks,
        "Addresses or CIDR ranges of reverse proxies whose X-Forwarded-For and "
        "X-Forwarded-Proto headers are believed. Empty: the socket peer is the client.",
    ),
    Setting(
        "allow_cors",
        "",
        parse_list,
        "Origins allowed by CORS (scheme://host:port, or a bare host), comma separated. "
        "Empty: any origin (Access-Control-Allow-Origin: *). Also checked on /ws.",
    ),
    Setting(
        "validate_requests",
        "true",
        parse_bool,
        "true: API signatures expire after 60 seconds. false: no age limit.",
    ),
    Setting(
        "legacy_signatures",
        "true",
        parse_bool,
        "Also accept signatures of the literal value 'channelstream' (what 0.7 clients "
        "sign) besides signatures of the request path.",
    ),
    Setting(
        "signature_checker",
        "",
        parse_str,
        "Dotted path module.Class of a custom checker built as Class(secret) with "
        "unsign(token, max_age=...). Empty: the built-in itsdangerous checker.",
    ),
    Setting(
        "enforce_https",
        "false",
        parse_bool,
        "Answer 406 to requests that did not arrive over https (X-Forwarded-Proto from a "
        "trusted proxy, X-Scheme and X-Url-Scheme count).",
    ),
    Setting(
        "http_scheme",
        "",
        parse_http_scheme,
        "Force the scheme (http or https) of URLs the server generates. Empty: as requested.",
    ),
    Setting("log_level", "INFO", parse_log_level, "Python logging level."),
    Setting(
        "log_format",
        "text",
        parse_log_format,
        "text: plain log lines. json: one JSON object per line (time, level, logger, "
        "message, and conn_id on connection events).",
    ),
    Setting(
        "metrics_allow_from",
        "",
        parse_networks,
        "Addresses or CIDR ranges allowed to read GET /metrics without a signature or an "
        "admin session (comma or newline separated). Empty: admins and signed calls only.",
        example="10.0.0.0/8",
    ),
    Setting(
        "heartbeat_interval",
        "5",
        parse_positive_float,
        "Seconds between the empty-array [] heartbeats sent to every websocket listener.",
    ),
    Setting(
        "wake_connections_after",
        "5",
        parse_positive_float,
        "Seconds a long poll (/listen) waits for the first message before answering [].",
    ),
    Setting(
        "gc_conns_after",
        "30",
        parse_positive_float,
        "Seconds a connection may stay without any listener before it is collected.",
    ),
    Setting(
        "gc_users_after",
        "86400",
        parse_positive_float,
        "Seconds a user may stay without any connection before it (and its state) is removed.",
    ),
    Setting(
        "gc_channels_after",
        "259200",
        parse_positive_float,
        "Seconds a channel may stay without connections and activity before it is removed.",
    ),
    Setting(
        "max_message_size",
        "1048576",
        parse_positive_int,
        "Largest accepted request body or client websocket frame, in bytes (413 / close 1009).",
    ),
    Setting(
        "max_json_depth",
        "64",
        parse_positive_int,
        "Deepest nesting of arrays and objects accepted in a JSON request body (413 beyond). "
        "Checked before the body is parsed.",
    ),
    Setting(
        "max_json_items",
        "10000",
        parse_positive_int,
        "Most elements one JSON array, or members one JSON object, of a request body may have "
        "(413 beyond).",
    ),
    Setting(
        "max_queued_frames",
        "1000",
        parse_positive_int,
        "Messages a connection's outbound buffer may hold; a listener that falls further "
        "behind is closed with 4002 and catches up when it reconnects.",
    ),
    Setting(
        "max_channels_per_connection",
        "1000",
        parse_positive_int,
        "Most channels one connection may be subscribed to (422 beyond).",
    ),
    Setting(
        "max_connections",
        "0",
        parse_non_negative_int,
        "Most connections the server keeps at once (503 on /connect beyond). 0: no limit.",
    ),
    Setting(
        "request_timeout",
        "60",
        parse_non_negative_float,
        "Seconds an HTTP client may stall: waiting for the rest of its request's headers or "
        "body, for its next request on a keep-alive connection, or to take response bytes; "
        "then its connection is closed. Not applied to attached websockets. 0: no limit.",
    ),
    Setting(
        "shutdown_timeout",
        "10",
        parse_positive_float,
        "Seconds a stop (SIGTERM/SIGINT) may take: /ready answers 503, websockets close with "
        "1001 in batches, in-flight requests get the rest of the time, then the process exits 0.",
    ),
    Setting(
        "broker",
        "memory",
        parse_broker,
        "Where the cluster's state is shared. 'memory': this process only (one node). "
        "redis://host:port/db: any number of nodes on one Redis behave as one server.",
        example="redis://127.0.0.1:6379/0",
    ),
    Setting(
        "redis_prefix",
        "channelstream",
        parse_prefix,
        "Prefix of every Redis key the cluster uses; clusters sharing a Redis need distinct ones.",
    ),
    Setting(
        "presence_ttl",
        "30",
        parse_positive_float,
        "Seconds after which a node that stopped announcing itself (killed, cut off) is taken "
        "for dead: its connections end and their users part.",
    ),
)

SETTINGS_BY_NAME: dict[str, Setting] = {setting.name: setting for setting in SETTINGS_TABLE}

# 0.7.1 keys that no longer mean anything; accepted without a warning so old files load.
RETIRED_KEYS = frozenset({"debug", "demo"})


@dataclass(frozen=True)
class Settings:
    """Parsed, validated configuration. Built once at start and passed explicitly."""

    host: str
    port: int
    secret: str
    admin_user: str
    admin_secret: str
    cookie_secret: str
    allow_posting_from: tuple[IPNetwork, ...]
    trusted_proxies: tuple[IPNetwork, ...]
    allow_cors: tuple[str, ...]
    validate_requests: bool
    legacy_signatures: bool
    signature_checker: str
    enforce_https: bool
    http_scheme: str
    log_level: str
    log_format: str
    metrics_allow_from: tuple[IPNetwork, ...]
    heartbeat_interval: float
    wake_connections_after: float
    gc_conns_after: float
    gc_users_after: float
    gc_channels_after: float
    max_message_size: int
    max_json_depth: int
    max_json_items: int
    max_queued_frames: int
    max_channels_per_connection: int
    max_connections: int
    request_timeout: float
    shutdown_timeout: float
    broker: str
    redis_prefix: str
    presence_ttl: float

    @classmethod
    def from_sources(
        cls,
        *sources: Mapping[str, Any],
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Merge raw values (later sources win; environment variables win over all), then parse.

        Each source is read as a section of channelstream's own (`section_values`); pass a host
        app's settings through `host_app_values` first. Raises SettingsError naming the key of
        the first bad value.
        """
        raw: dict[str, Any] = {setting.name: setting.default for setting in SETTINGS_TABLE}
        for source in sources:
            for name, value in section_values(source).items():
                if value is not None:
                    raw[name] = value
        for setting in SETTINGS_TABLE:
            if environ is not None and setting.env_var in environ:
                raw[setting.name] = environ[setting.env_var]
        parsed: dict[str, Any] = {}
        for setting in SETTINGS_TABLE:
            try:
                parsed[setting.name] = setting.parse(raw[setting.name])
            except (TypeError, ValueError) as error:
                raise SettingsError(
                    f"invalid value for setting {setting.name!r}: {error}"
                ) from None
        if not parsed["cookie_secret"]:
            parsed["cookie_secret"] = uuid.uuid4().hex
        return cls(**parsed)


def section_values(section: Mapping[str, Any]) -> dict[str, Any]:
    """Raw values by setting name from a section that is all channelstream's: keys bare or
    `channelstream.`-prefixed, the prefixed one winning when both are given (so the result
    never depends on the order of the keys)."""
    values = {key: value for key, value in section.items() if key in SETTINGS_BY_NAME}
    values.update(host_app_values(section))
    return values


def host_app_values(app_settings: Mapping[str, Any]) -> dict[str, Any]:
    """Raw values by setting name from `channelstream.<name>` keys only: the settings of a host
    Pyramid app, whose own `secret`, `port` or `debug` are none of channelstream's business."""
    values: dict[str, Any] = {}
    for key, value in app_settings.items():
        name = key[len(APP_SETTINGS_PREFIX) :] if key.startswith(APP_SETTINGS_PREFIX) else ""
        if name in SETTINGS_BY_NAME:
            values[name] = value
    return values


def unknown_keys(source: Mapping[str, Any]) -> list[str]:
    """Keys of an ini section that are neither settings nor retired 0.7.1 keys."""
    unknown = []
    for key in source:
        name = key[len(APP_SETTINGS_PREFIX) :] if key.startswith(APP_SETTINGS_PREFIX) else key
        if name not in SETTINGS_BY_NAME and name not in RETIRED_KEYS:
            unknown.append(key)
    return unknown


assert {f.name for f in fields(Settings)} == set(SETTINGS_BY_NAME), "table and Settings differ"
