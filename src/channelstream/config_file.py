"""Reading an ini file into raw setting values.

Two layouts are understood:

- a 0.7-style file with a ``[channelstream]`` section (what ``channelstream_utils make_config``
  writes); keys that are not settings are reported in a logged warning;
- a PasteDeploy file (``development.ini``, ``production.ini``): the ``[app:main]`` keys, with or
  without the ``channelstream.`` prefix (``pyramid.*``, ``use`` and other keys are ignored),
  plus ``host``/``port`` from ``[server:main]``. When ``[app:main]`` is another app
  (``use = egg:myapp``, which includes channelstream), only its prefixed keys are read: its
  bare ``secret`` or ``port`` are the host app's.

Values are interpolated the way PasteDeploy does it: ``%(here)s`` is the file's folder and
``%(__file__)s`` its path. Parsing into typed values is `Settings.from_sources`' job; the
file's `sources` say where each value was written, for its error messages.
"""

from __future__ import annotations

import configparser
import logging
from dataclasses import dataclass, field
from pathlib import Path

from channelstream.settings import (
    APP_SETTINGS_PREFIX,
    SettingsError,
    SettingsSource,
    host_app_keys,
    section_keys,
    unknown_keys,
)

log = logging.getLogger(__name__)

CHANNELSTREAM_SECTION = "channelstream"
APP_SECTION = "app:main"
SERVER_SECTION = "server:main"
SERVER_KEYS = ("host", "port")
# `use` values of an [app:main] that is channelstream itself (no `use`: taken as ours too).
OWN_APP_USES = frozenset(
    {"", "egg:channelstream", "egg:channelstream#main", "call:channelstream:main"}
)


@dataclass(frozen=True)
class ConfigFile:
    """Raw (unparsed) values read from one ini file, by setting name.

    `app_keys`: where each of `app_settings` was written, as `[app:main] channelstream.port`.
    """

    path: str
    app_settings: dict[str, str] = field(default_factory=dict)
    server: dict[str, str] = field(default_factory=dict)
    app_keys: dict[str, str] = field(default_factory=dict)

    @property
    def sources(self) -> tuple[SettingsSource, SettingsSource]:
        """[server:main]'s host and port, then the app's settings, which win over them."""
        name = f"config file {self.path}"
        server_origins = {key: f"{name} ([{SERVER_SECTION}] {key})" for key in self.server}
        app_origins = {setting: f"{name} ({key})" for setting, key in self.app_keys.items()}
        return (
            SettingsSource(name, self.server, server_origins),
            SettingsSource(name, self.app_settings, app_origins),
        )


def _own_items(parser: configparser.ConfigParser, section: str, path: Path) -> dict[str, str]:
    """The section's own keys, interpolated; like PasteDeploy, [DEFAULT] keys are skipped."""
    defaults = parser.defaults()
    items: dict[str, str] = {}
    for key in parser.options(section):
        if key in defaults:
            continue
        try:
            items[key] = parser.get(section, key)
        except configparser.Error as error:
            raise SettingsError(
                f"config file {str(path)!r}: cannot read [{section}] {key}: {error}"
            ) from None
    return items


def read_config_file(path: str | Path) -> ConfigFile:
    """Read `path`; raises SettingsError naming the file if it can't be used."""
    path = Path(path)
    if not path.is_file():
        raise SettingsError(f"config file {str(path)!r} does not exist")
    absolute = path.resolve()
    parser = configparser.ConfigParser(
        defaults={"here": str(absolute.parent), "__file__": str(absolute)}
    )
    try:
        with open(absolute, encoding="utf-8") as handle:
            parser.read_file(handle)
    except (configparser.Error, UnicodeDecodeError, OSError) as error:
        raise SettingsError(f"config file {str(path)!r} cannot be parsed: {error}") from None

    has_own = parser.has_section(CHANNELSTREAM_SECTION)
    has_app = parser.has_section(APP_SECTION)
    if not has_own and not has_app:
        raise SettingsError(
            f"config file {str(path)!r} has neither a [{CHANNELSTREAM_SECTION}] nor an "
            f"[{APP_SECTION}] section"
        )

    app_keys: dict[str, str] = {}  # setting name -> "[section] key as written"
    app_settings: dict[str, str] = {}

    def take(section: str, items: dict[str, str], keys: dict[str, str]) -> None:
        for setting, key in keys.items():
            app_settings[setting] = items[key]
            app_keys[setting] = f"[{section}] {key}"

    if has_app:
        items = _own_items(parser, APP_SECTION, path)
        own_app = items.get("use", "").strip().lower() in OWN_APP_USES
        take(APP_SECTION, items, section_keys(items) if own_app else host_app_keys(items))
        # A prefixed key that is no setting is almost certainly a typo.
        prefixed = [key for key in items if key.startswith(APP_SETTINGS_PREFIX)]
        for key in unknown_keys(dict.fromkeys(prefixed)):
            log.warning("config file %s: [%s] unknown setting %s", path, APP_SECTION, key)
    if has_own:
        own = _own_items(parser, CHANNELSTREAM_SECTION, path)
        unknown = unknown_keys(own)
        if unknown:
            log.warning(
                "config file %s: [%s] ignores unknown keys: %s",
                path,
                CHANNELSTREAM_SECTION,
                ", ".join(sorted(unknown)),
            )
        take(CHANNELSTREAM_SECTION, own, section_keys(own))

    server: dict[str, str] = {}
    if parser.has_section(SERVER_SECTION):
        items = _own_items(parser, SERVER_SECTION, path)
        server = {key: items[key] for key in SERVER_KEYS if key in items}

    return ConfigFile(path=str(path), app_settings=app_settings, server=server, app_keys=app_keys)
