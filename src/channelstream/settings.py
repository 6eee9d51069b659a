"""The settings table: every configuration key, its default, its parser and its documentation.

This table is the single source of truth for configuration. The CLI, `make_config`, the
README's settings section and the app factory all read it. Sources, lowest to highest
precedence: the defaults below, the ini file (or Pyramid app settings), and
`CHANNELSTREAM_<KEY>` environment variables.

Whose keys are ours: a section that is all channelstream's (`[channelstream]`, or the
`[app:main]` of `use = egg:channelstream`) may name a setting bare or `channelstream.`-prefixed
(`section_values`); the settings of a host Pyramid app that includes channelstream hold the
host's own `secret`, `port` or `debug`, so there only prefixed keys count (`host_app_values`).

Each source is a `SettingsSource`: its values and where each came from, so that a refusal says
which file key or environment variable to fix. The three secrets may also come from a file
named by `CHANNELSTREAM_<KEY>_FILE` (Docker and Kubernetes secrets).
"""

from __future__ import annotations

import importlib
import ipaddress
import json
import logging
import math
import secrets
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from marshmallow import RAISE, ValidationError

from channelstream.core.model import ChannelConfigChanges
from channelstream.core.webhooks import EVENT_NAMES
from channelstream.exceptions import ChannelstreamException

ENV_PREFIX = "CHANNELSTREAM_"
# `CHANNELSTREAM_<KEY>_FILE`: a secret's value is that file's content (stripped).
FILE_ENV_SUFFIX = "_FILE"
# What production.ini ships in place of secrets: refused at start, whatever the case.
PLACEHOLDER_PREFIX = "CHANGE-ME"
BUILT_IN_DEFAULT = "the built-in default"

APP_SETTINGS_PREFIX = "channelstream."
MAX_WEBHOOK_BATCH = 10_000

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
            networks.extend(ANY_ADDRESS)
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"expected IP addresses or CIDR ranges, got {item!r}") from None
    return tuple(networks)


ANY_ADDRESS: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("0.0.0.0/0"),
    ipaddress.ip_network("::/0"),
)


def parse_posting_networks(raw: Any) -> tuple[IPNetwork, ...]:
    """`allow_posting_from`: like `parse_networks`, and empty means any address (API.md §4.4:
    a container reached through its published port sees callers from anywhere; signatures
    are still required)."""
    return parse_networks(raw) or ANY_ADDRESS


def _whole_number(raw: Any, minimum: int, expected: str) -> int:
    """`raw` as an int >= `minimum`; the error says what was expected, never Python's words."""
    try:
        value = int(str(raw).strip())
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise ValueError(f"expected {expected}, got {raw!r}")
    return value


def _finite_number(raw: Any, minimum: float, inclusive: bool, expected: str) -> float:
    try:
        value = float(str(raw).strip())
    except ValueError:
        value = math.nan
    low_enough = value < minimum if inclusive else value <= minimum
    if not math.isfinite(value) or low_enough:
        raise ValueError(f"expected {expected}, got {raw!r}")
    return value


def parse_positive_int(raw: Any) -> int:
    return _whole_number(raw, 1, "a whole number >= 1")


def parse_channel_namespaces(raw: Any) -> dict[str, ChannelConfigChanges]:
    """A JSON object: channel-name prefix (the part before the first `:`) -> channel config
    defaults, checked as `/channel_config` checks a config, and unknown keys refused."""
    from channelstream.schemas import ChannelConfigSchema  # marshmallow: only when parsing

    if isinstance(raw, Mapping):
        value: Any = raw
    else:
        text = str(raw).strip()
        try:
            value = json.loads(text) if text else {}
        except json.JSONDecodeError as error:
            raise ValueError(f"expected a JSON object, got {text[:80]!r} ({error})") from None
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    namespaces: dict[str, ChannelConfigChanges] = {}
    for prefix, config in value.items():
        if not isinstance(prefix, str) or not prefix or ":" in prefix:
            raise ValueError(f"a namespace is a channel-name prefix without ':', got {prefix!r}")
        try:
            namespaces[prefix] = ChannelConfigSchema(unknown=RAISE).load(config)
        except ValidationError as error:
            raise ValueError(
                f"namespace {prefix!r}: {json.dumps(error.messages, sort_keys=True)}"
            ) from None
    return namespaces


def parse_webhook_url(raw: Any) -> str:
    """Empty (off), or an http(s) URL with a host."""
    text = str(raw).strip()
    if not text:
        return text
    parts = urlsplit(text)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL with a host, got {raw!r}")
    return text


def parse_webhook_events(raw: Any) -> tuple[str, ...]:
    """Event names (empty: every event), each one of `EVENT_NAMES`."""
    names = parse_list(raw)
    unknown = [name for name in names if name not in EVENT_NAMES]
    if unknown:
        raise ValueError(
            f"expected webhook event names ({', '.join(EVENT_NAMES)}), got {raw!r} "
            f"(unknown: {', '.join(unknown)})"
        )
    return names or EVENT_NAMES


def parse_webhook_batch_max(raw: Any) -> int:
    value = parse_positive_int(raw)
    if value > MAX_WEBHOOK_BATCH:
        raise ValueError(f"expected at most {MAX_WEBHOOK_BATCH}, got {raw!r}")
    return value


def parse_non_negative_int(raw: Any) -> int:
    return _whole_number(raw, 0, "a whole number >= 0")


def parse_positive_float(raw: Any) -> float:
    return _finite_number(raw, 0.0, False, "a number of seconds > 0")


def parse_non_negative_float(raw: Any) -> float:
    return _finite_number(raw, 0.0, True, "a number of seconds >= 0")


def parse_port(raw: Any) -> int:
    value = _whole_number(raw, 0, "a port number 0..65535")
    if value > 65535:
        raise ValueError(f"expected a port number 0..65535, got {raw!r}")
    return value


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def parse_log_level(raw: Any) -> str:
    text = str(raw).strip().upper() or "INFO"
    if not isinstance(logging.getLevelName(text), int):
        raise ValueError(f"expected a log level ({', '.join(LOG_LEVELS)}), got {raw!r}")
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


def parse_class_path(raw: Any) -> str:
    """`module.Class`, imported now so that a typo is a setting error at start (empty: none)."""
    text = str(raw).strip()
    if not text:
        return text
    module_name, _, class_name = text.rpartition(".")
    found: Any = None
    reason = ""
    if module_name:
        try:
            found = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError, ValueError) as error:
            reason = f" ({error})"
    if not callable(found):
        raise ValueError(f"expected an importable module.Class, got {raw!r}{reason}")
    return text


@dataclass(frozen=True)
class Setting:
    """One configuration key: its default (as written in an ini file), parser and help text.

    `default` None: there is no safe default, so a random value is made at each start and
    logged (`secret`, `admin_secret`). `secret`: the value may also come from the file named by
    `CHANNELSTREAM_<KEY>_FILE`, and a `CHANGE-ME` placeholder is refused."""

    name: str
    default: str | None
    parse: Callable[[Any], Any]
    help: str
    example: str = ""
    secret: bool = False

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def file_env_var(self) -> str:
        return self.env_var + FILE_ENV_SUFFIX


SETTINGS_TABLE: tuple[Setting, ...] = (
    Setting("host", "0.0.0.0", parse_str, "Address the HTTP/websocket server binds to."),
    Setting("port", "8000", parse_port, "TCP port of the HTTP/websocket server."),
    Setting(
        "secret",
        None,
        parse_str,
        "Key that signs server API calls (itsdangerous TimestampSigner). Not set: a random one "
        "is made at each start and logged as a warning. Empty, or a CHANGE-ME placeholder: "
        "refused at start. The _FILE variable names a file holding it (Docker secrets).",
        secret=True,
    ),
    Setting("admin_user", "admin", parse_str, "User name for the admin panel sign-in."),
    Setting(
        "admin_secret",
        None,
        parse_str,
        "Password for the admin panel sign-in. Not set: a random one is made at each start "
        "and logged as a warning. Empty, or a CHANGE-ME placeholder: refused at start. The "
        "_FILE variable names a file holding it.",
        secret=True,
    ),
    Setting(
        "cookie_secret",
        "",
        parse_str,
        "Secret of the admin session cookie. Empty: a random one per start (admin sessions "
        "end on restart). A CHANGE-ME placeholder: refused at start. The _FILE variable names "
        "a file holding it.",
        secret=True,
    ),
    Setting(
        "allow_posting_from",
        "127.0.0.1",
        parse_posting_networks,
        "Addresses or CIDR ranges allowed to call the signed server API (comma or newline "
        "separated). Empty or 0.0.0.0: any address (signatures are still required; empty "
        "is logged as a warning at start).",
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
        parse_class_path,
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
        "presence_grace",
        "3",
        parse_non_negative_float,
        "Seconds a connection may stay without any listener before its user parts from its "
        "channels (presence frames, /info, admin); a later listener joins it again. At most 5 "
        "and at most gc_conns_after (unset: 3, or gc_conns_after if lower). A long-polling "
        "client counts as listening while a poll is open, so it must poll again within this "
        "time (clients do at once).",
    ),
    Setting(
        "idempotency_window",
        "300",
        parse_positive_float,
        "Seconds a /message idempotency_key is remembered: a repeat on the same channel (or "
        "the same direct users) within it is answered with the first message, not sent.",
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
        "max_connections_per_user",
        "0",
        parse_non_negative_int,
        "Most connections one user may hold at once, cluster-wide (429 on /connect beyond, "
        'with `"limit": "max_connections_per_user"`); every node must have the same. '
        "0: no limit.",
    ),
    Setting(
        "channel_namespaces",
        "{}",
        parse_channel_namespaces,
        "Channel settings by channel-name prefix, as a JSON object: a channel created whose "
        "name starts with `prefix:` starts from those settings (the keys of "
        "`/channel_config`), and the configs a request gives win key by key. In an ini: one "
        "line, or indented continuation lines. Every node must have the same.",
        example='{"chat": {"notify_presence": true, "store_history": true, "history_size": 50}}',
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
        "Seconds a stop (SIGTERM/SIGINT) may take: /ready answers 503 for drain_grace "
        "seconds, then the server stops accepting, websockets close with 1001 in batches, "
        "in-flight requests get the rest of the time, and the process exits 0.",
    ),
    Setting(
        "drain_grace",
        "2",
        parse_non_negative_float,
        "Seconds, after SIGTERM/SIGINT, during which the server still accepts and serves "
        "everything but answers /ready with 503, so that a load balancer sees the node leave "
        "before it stops accepting. Counts within shutdown_timeout (must be less). 0: stop "
        "accepting at once. A second signal ends it early.",
    ),
    Setting(
        "workers",
        "1",
        parse_positive_int,
        "Worker processes serving host:port together (SO_REUSEPORT), started and stopped by "
        "one supervisor process; each is a node of the Redis cluster, so more than 1 needs "
        "a Redis broker. 1: one process, no supervisor. `channelstream --workers N` "
        "overrides it.",
        example="4",
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
    Setting(
        "webhook_url",
        "",
        parse_webhook_url,
        "http(s) URL the webhook events are POSTed to (README, Webhooks). Empty: webhooks "
        "are off. Every node of a cluster must have the same webhook settings.",
        example="http://127.0.0.1:6543/channelstream-events",
    ),
    Setting(
        "webhook_secret",
        "",
        parse_str,
        "Key of the X-Channelstream-Signature HMAC of webhook requests. Empty: `secret`. "
        "The _FILE variable names a file holding it.",
        secret=True,
    ),
    Setting(
        "webhook_events",
        "",
        parse_webhook_events,
        "Webhook events sent (comma separated, from: " + ", ".join(EVENT_NAMES) + "). "
        "Empty: all of them.",
    ),
    Setting(
        "webhook_timeout",
        "5",
        parse_positive_float,
        "Seconds a webhook request may take, all of it (connect, send, answer); longer is a "
        "failure, retried.",
    ),
    Setting(
        "webhook_batch_max",
        "100",
        parse_webhook_batch_max,
        "Most events in one webhook request (1-10000).",
    ),
    Setting(
        "webhook_retry_for",
        "3600",
        parse_positive_float,
        "Seconds an event is retried, counted from when it was made (backoff from 1 s "
        "doubling to 60 s, with jitter), before it is dropped, counted and logged.",
    ),
    Setting(
        "webhook_queue_max",
        "100000",
        parse_positive_int,
        "Most webhook events waiting to be sent; beyond it new events are dropped, counted "
        "and logged (message delivery is never slowed).",
    ),
)

MAX_PRESENCE_GRACE = 5.0  # seconds: a closed tab parts about as soon as in 0.7.1

SETTINGS_BY_NAME: dict[str, Setting] = {setting.name: setting for setting in SETTINGS_TABLE}

# 0.7.1 keys that no longer mean anything; accepted without a warning so old files load.
RETIRED_KEYS = frozenset({"debug", "demo"})

# The defaults of channelstream 0.7.1, known to anyone who read its README: warned about.
WELL_KNOWN_SECRETS = {"secret": "secret", "admin_secret": "admin_secret"}
ANY_ADDRESS_WARNING = (
    "Server API calls allowed from any address (allow_posting_from is empty); "
    "signatures are still required"
)


@dataclass(frozen=True)
class SettingsSource:
    """Raw values of one source, by setting name, and where each came from, as a refusal
    names it: `config file x.ini ([app:main] channelstream.port)`."""

    name: str
    values: Mapping[str, Any]
    origins: Mapping[str, str] = field(default_factory=dict)

    def origin(self, setting_name: str) -> str:
        return self.origins.get(setting_name) or f"{self.name} ({setting_name})"

    @classmethod
    def section(cls, name: str, section: Mapping[str, Any], label: str = "") -> SettingsSource:
        """A section that is all channelstream's (bare or prefixed keys, `section_keys`);
        `label` prefixes each key in the origins, e.g. "[app:main] "."""
        return cls._keyed(name, section, section_keys(section), label)

    @classmethod
    def host_app(cls, name: str, app_settings: Mapping[str, Any]) -> SettingsSource:
        """A host Pyramid app's settings: their `channelstream.`-prefixed keys only."""
        return cls._keyed(name, app_settings, host_app_keys(app_settings), "")

    @classmethod
    def _keyed(
        cls, name: str, section: Mapping[str, Any], keys: Mapping[str, str], label: str
    ) -> SettingsSource:
        values = {setting: section[key] for setting, key in keys.items()}
        origins = {setting: f"{name} ({label}{key})" for setting, key in keys.items()}
        return cls(name, values, origins)

    @classmethod
    def environment(cls, environ: Mapping[str, str]) -> SettingsSource:
        """`CHANNELSTREAM_<KEY>` variables, and for the secrets `CHANNELSTREAM_<KEY>_FILE`:
        the named file's content, stripped. Raises SettingsError when both of a pair are set
        or the file cannot be read."""
        values: dict[str, Any] = {}
        origins: dict[str, str] = {}
        for setting in SETTINGS_TABLE:
            if setting.env_var in environ:
                values[setting.name] = environ[setting.env_var]
                origins[setting.name] = f"environment variable {setting.env_var}"
            if setting.secret and setting.file_env_var in environ:
                values[setting.name] = _secret_file(setting, environ)
                origins[setting.name] = (
                    f"file {environ[setting.file_env_var]} ({setting.file_env_var})"
                )
        return cls("the environment", values, origins)


def _secret_file(setting: Setting, environ: Mapping[str, str]) -> str:
    if setting.env_var in environ:
        raise SettingsError(
            f"both {setting.env_var} and {setting.file_env_var} are set: set only one"
        )
    path = environ[setting.file_env_var]
    if not path.strip():
        raise SettingsError(f"{setting.file_env_var} is empty: give the path of a file")
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise SettingsError(f"{setting.file_env_var}: cannot read {path}: {reason}") from None


@dataclass(frozen=True)
class RawValue:
    """A setting's value as written, and where it was written."""

    value: Any
    origin: str


def _given_values(
    sources: Iterable[SettingsSource | Mapping[str, Any]], environ: Mapping[str, str] | None
) -> dict[str, RawValue]:
    """Every setting some source gives (later sources win; the environment wins over all)."""
    ordered = [
        source
        if isinstance(source, SettingsSource)
        else SettingsSource.section("the settings given", source)
        for source in sources
    ]
    if environ is not None:
        ordered.append(SettingsSource.environment(environ))
    given: dict[str, RawValue] = {}
    for source in ordered:
        for name, value in source.values.items():
            if name in SETTINGS_BY_NAME and value is not None:
                given[name] = RawValue(value, source.origin(name))
    return given


def _value_or_default(setting: Setting, given: Mapping[str, RawValue]) -> RawValue | None:
    """What a source gave, else the built-in default (None when the setting has none)."""
    if setting.name in given:
        return given[setting.name]
    return None if setting.default is None else RawValue(setting.default, BUILT_IN_DEFAULT)


def _parsed(setting: Setting, raw: RawValue) -> Any:
    try:
        return setting.parse(raw.value)
    except (TypeError, ValueError) as error:
        raise SettingsError(
            f"invalid value for setting {setting.name!r} from {raw.origin}: {error}"
        ) from None


def _check_secret(setting: Setting, raw: RawValue) -> None:
    """Refuse an empty secret that has no safe default, and production.ini's placeholders."""
    text = str(raw.value).strip()
    if not text and setting.default is None:
        raise SettingsError(
            f"{setting.name} is empty in {raw.origin}: set a long random value, or leave it "
            "out to have a random one made at each start"
        )
    if text.upper().startswith(PLACEHOLDER_PREFIX):
        raise SettingsError(
            f"{setting.name} in {raw.origin} is still the placeholder {text!r}: set a long "
            "random value of your own"
        )


def listen_address(
    *sources: SettingsSource | Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> tuple[str, int]:
    """`host` and `port` from `sources` and the environment, parsed as settings are: what
    the pserve server runner binds (its `[server:main]`, overridden by CHANNELSTREAM_HOST and
    CHANNELSTREAM_PORT)."""
    given = _given_values(sources, environ)
    host, port = (SETTINGS_BY_NAME[name] for name in ("host", "port"))
    host_raw, port_raw = _value_or_default(host, given), _value_or_default(port, given)
    assert host_raw is not None and port_raw is not None  # both have defaults
    return _parsed(host, host_raw), _parsed(port, port_raw)


@dataclass(frozen=True)
class Settings:
    """Parsed, validated configuration. Built once at start and passed explicitly.

    `start_warnings`: lines every entry point logs at start (`log_start_warnings`): secrets
    made at random, well-known secrets, an API open to any address."""

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
    presence_grace: float
    idempotency_window: float
    gc_users_after: float
    gc_channels_after: float
    max_message_size: int
    max_json_depth: int
    max_json_items: int
    max_queued_frames: int
    max_channels_per_connection: int
    max_connections: int
    max_connections_per_user: int
    channel_namespaces: dict[str, ChannelConfigChanges]
    request_timeout: float
    shutdown_timeout: float
    drain_grace: float
    workers: int
    broker: str
    redis_prefix: str
    presence_ttl: float
    webhook_url: str
    webhook_secret: str
    webhook_events: tuple[str, ...]
    webhook_timeout: float
    webhook_batch_max: int
    webhook_retry_for: float
    webhook_queue_max: int
    start_warnings: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def from_sources(
        cls,
        *sources: SettingsSource | Mapping[str, Any],
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Merge raw values (later sources win; environment variables win over all), then parse.

        A plain mapping is read as a section of channelstream's own (`section_values`); pass
        a host app's settings as `SettingsSource.host_app`. Raises SettingsError naming the
        key of the first bad value and where it came from.
        """
        given = _given_values(sources, environ)
        parsed: dict[str, Any] = {}
        warnings: list[str] = []
        for setting in SETTINGS_TABLE:
            raw = _value_or_default(setting, given)
            if raw is None:
                parsed[setting.name] = secrets.token_urlsafe(32)
                warnings.append(
                    f"{setting.name} is not set: made a random one for this run: "
                    f"{parsed[setting.name]} (set {setting.env_var} to choose your own)"
                )
                continue
            if setting.secret:
                _check_secret(setting, raw)
                if str(raw.value).strip() == WELL_KNOWN_SECRETS.get(setting.name):
                    warnings.append(
                        f"{setting.name} is {WELL_KNOWN_SECRETS[setting.name]!r}, the "
                        f"well-known default of channelstream 0.7.1 (from {raw.origin}): set "
                        f"your own ({setting.env_var}) before exposing this server"
                    )
            parsed[setting.name] = _parsed(setting, raw)
        if not parsed["cookie_secret"]:
            parsed["cookie_secret"] = uuid.uuid4().hex
        if not parsed["webhook_secret"]:
            parsed["webhook_secret"] = parsed["secret"]
        if "allow_posting_from" in given and not parse_list(given["allow_posting_from"].value):
            warnings.append(ANY_ADDRESS_WARNING)
        if "presence_grace" not in given:  # the default never outlives the connection
            parsed["presence_grace"] = min(parsed["presence_grace"], parsed["gc_conns_after"])
        if parsed["presence_grace"] > min(MAX_PRESENCE_GRACE, parsed["gc_conns_after"]):
            grace = _value_or_default(SETTINGS_BY_NAME["presence_grace"], given)
            conns = _value_or_default(SETTINGS_BY_NAME["gc_conns_after"], given)
            assert grace is not None and conns is not None  # both have defaults
            raise SettingsError(
                f"presence_grace ({grace.value} from {grace.origin}) must be at most "
                f"{MAX_PRESENCE_GRACE:g} and at most gc_conns_after ({conns.value} from "
                f"{conns.origin}): presence follows the sockets within a few seconds"
            )
        if parsed["drain_grace"] >= parsed["shutdown_timeout"]:
            grace = _value_or_default(SETTINGS_BY_NAME["drain_grace"], given)
            timeout = _value_or_default(SETTINGS_BY_NAME["shutdown_timeout"], given)
            assert grace is not None and timeout is not None  # both have defaults
            raise SettingsError(
                f"drain_grace ({grace.value} from {grace.origin}) must be less than "
                f"shutdown_timeout ({timeout.value} from {timeout.origin}): the grace counts "
                "within the time a stop may take"
            )
        return cls(**parsed, start_warnings=tuple(warnings))


def log_start_warnings(settings: Settings) -> None:
    """Log `settings.start_warnings` on the `channelstream` logger, one WARNING line each."""
    logger = logging.getLogger("channelstream")
    for line in settings.start_warnings:
        logger.warning("%s", line)


def section_keys(section: Mapping[str, Any]) -> dict[str, str]:
    """The key as written of each setting in a section that is all channelstream's: bare or
    `channelstream.`-prefixed, the prefixed one winning when both are given (so the result
    never depends on the order of the keys)."""
    keys = {key: key for key in section if key in SETTINGS_BY_NAME}
    keys.update(host_app_keys(section))
    return keys


def host_app_keys(app_settings: Mapping[str, Any]) -> dict[str, str]:
    """The `channelstream.<name>` key of each setting in a host Pyramid app's settings, whose
    own `secret`, `port` or `debug` are none of channelstream's business."""
    keys: dict[str, str] = {}
    for key in app_settings:
        name = key[len(APP_SETTINGS_PREFIX) :] if key.startswith(APP_SETTINGS_PREFIX) else ""
        if name in SETTINGS_BY_NAME:
            keys[name] = key
    return keys


def section_values(section: Mapping[str, Any]) -> dict[str, Any]:
    """Raw values by setting name from a section that is all channelstream's (`section_keys`)."""
    return {name: section[key] for name, key in section_keys(section).items()}


def host_app_values(app_settings: Mapping[str, Any]) -> dict[str, Any]:
    """Raw values by setting name from a host app's `channelstream.<name>` keys only."""
    return {name: app_settings[key] for name, key in host_app_keys(app_settings).items()}


def unknown_keys(source: Mapping[str, Any]) -> list[str]:
    """Keys of an ini section that are neither settings nor retired 0.7.1 keys."""
    unknown = []
    for key in source:
        name = key[len(APP_SETTINGS_PREFIX) :] if key.startswith(APP_SETTINGS_PREFIX) else key
        if name not in SETTINGS_BY_NAME and name not in RETIRED_KEYS:
            unknown.append(key)
    return unknown


assert set(SETTINGS_BY_NAME) == {f.name for f in fields(Settings)} - {"start_warnings"}, (
    "table and Settings differ"
)
