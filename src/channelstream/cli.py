"""Console scripts: `channelstream` (the server) and `channelstream_utils` (config helpers).

`main` parses its arguments with the standard library only, then patches gevent before
anything that imports sockets (pyramid, the app, the server) is imported.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import channelstream
from channelstream.exceptions import EXIT_BAD_CONFIG

if TYPE_CHECKING:  # imported for real once gevent is patched
    from channelstream.settings import Settings

INI_ENV_VAR = "CHANNELSTREAM_INI"
LOG_FORMAT = "%(asctime)s %(levelname)-7s [%(name)s] %(message)s"
SETTINGS_DOC_START = "<!-- settings:start -->"
SETTINGS_DOC_END = "<!-- settings:end -->"

log = logging.getLogger("channelstream")


# --- channelstream -----------------------------------------------------------------------------


def _server_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="channelstream",
        description="Serve channelstream. Settings: built-in defaults, then the ini file, "
        "then CHANNELSTREAM_<KEY> environment variables.",
    )
    parser.add_argument(
        "-i",
        "--ini",
        metavar="FILE",
        default=os.environ.get(INI_ENV_VAR) or None,
        help=f"ini file: a [channelstream] section or a PasteDeploy [app:main] "
        f"(default: ${INI_ENV_VAR}; none: built-in defaults)",
    )
    parser.add_argument(
        "-w",
        "--workers",
        metavar="N",
        type=_worker_count,
        default=None,
        help="worker processes serving the port together; more than 1 needs a Redis broker "
        "(default: the workers setting, 1)",
    )
    parser.add_argument("-v", "--version", action="version", version=channelstream.__version__)
    return parser


def _worker_count(text: str) -> int:
    from channelstream.settings import parse_positive_int

    try:
        return parse_positive_int(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `channelstream` console script."""
    args = _server_parser().parse_args(argv)

    from gevent import monkey

    monkey.patch_all()

    settings = load_settings(args.ini)
    workers = args.workers or settings.workers
    if workers > 1:
        from channelstream.server import ListenError
        from channelstream.workers import WorkersError, supervise

        try:
            status = supervise(settings, args.ini, workers, log_startup=_log_startup)
        except (WorkersError, ListenError) as error:
            _refuse(error)
        raise SystemExit(status)

    _log_startup(settings, args.ini)

    from channelstream.app import make_app
    from channelstream.server import ListenError, serve

    try:
        serve(
            make_app(settings),
            settings.host,
            settings.port,
            shutdown_timeout=settings.shutdown_timeout,
            request_timeout=settings.request_timeout,
            drain_grace=settings.drain_grace,
        )
    except ListenError as error:
        _refuse(error)


def load_settings(ini: str | None) -> Settings:
    """The checks and settings every serving process starts with (after patching gevent):
    the gevent edge, logging set up, the settings of `ini` and the environment; a refusal
    ends the process with one line and exit status 2."""
    from channelstream.config_file import read_config_file
    from channelstream.gevent_edge import GeventEdgeError, check_gevent_edge
    from channelstream.settings import Settings, SettingsError, SettingsSource

    try:
        check_gevent_edge()  # before anything is built: one line and exit 2, as for settings
    except GeventEdgeError as error:
        _refuse(error)

    # Formatting now, the level once the settings are known: reading the file may warn.
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    try:
        sources: tuple[SettingsSource, ...] = ()
        if ini:
            sources = read_config_file(ini).sources
        settings = Settings.from_sources(*sources, environ=os.environ)
    except SettingsError as error:
        _refuse(error)
    logging.getLogger().setLevel(settings.log_level)
    from channelstream.logs import apply_process_logging

    apply_process_logging(settings.log_level, settings.log_format)
    return settings


def _refuse(error: Exception) -> NoReturn:
    """One line on stderr, no traceback, exit status 2: what the user must change."""
    print(f"channelstream: {error}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_CONFIG) from None


def _log_startup(settings: Any, ini: str | None) -> None:
    from channelstream.settings import log_start_warnings

    log.info("Starting channelstream %s", channelstream.__version__)
    log.info("Settings from %s", ini if ini else "built-in defaults and the environment")
    log_start_warnings(settings)
    allowed = ", ".join(str(network) for network in settings.allow_posting_from)
    log.info("Server API calls allowed from: %s", allowed)


# --- channelstream_utils -----------------------------------------------------------------------


def _ini_value(name: str, raw: Any) -> str:
    """Render a raw value (string, number, boolean or list) as it is written in an ini file."""
    from channelstream.settings import SETTINGS_BY_NAME, parse_list, parse_networks

    if SETTINGS_BY_NAME[name].parse in (parse_list, parse_networks):
        text = ", ".join(parse_list(raw))
    elif isinstance(raw, bool):
        text = "true" if raw else "false"
    elif isinstance(raw, (list, tuple)):
        text = ", ".join(str(item) for item in raw)
    else:
        text = str(raw)
    # configparser interpolation: a literal % is written %%; continuation lines are indented.
    return text.replace("%", "%%").replace("\n", "\n    ")


def _comment(text: str) -> list[str]:
    return ["# " + line for line in textwrap.wrap(text, width=88)]


def make_config(
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """An ini text with a [channelstream] section holding every setting, each with comments.

    Values: table defaults < `CHANNELSTREAM_<KEY>` variables in `environ` < `overrides`. The
    secrets not given get random values written into the file. Raises SettingsError naming
    the key of an unknown setting or a bad value.
    """
    from channelstream.settings import (
        SETTINGS_BY_NAME,
        SETTINGS_TABLE,
        Settings,
        SettingsError,
        SettingsSource,
    )

    overrides = dict(overrides or {})
    unknown = sorted(key for key in overrides if key not in SETTINGS_BY_NAME)
    if unknown:
        raise SettingsError(f"unknown setting {unknown[0]!r}")
    given = SettingsSource("the -j JSON", {k: v for k, v in overrides.items() if v is not None})
    from_environ = SettingsSource.environment(environ or {})
    Settings.from_sources(from_environ, given)  # validates; raises SettingsError naming the key
    raw: dict[str, Any] = {}
    for setting in SETTINGS_TABLE:
        value = given.values.get(setting.name, from_environ.values.get(setting.name))
        if value is None:
            value = setting.default
        if setting.secret and not str(value or "").strip():
            value = secrets.token_hex(32)
        raw[setting.name] = value

    lines = [
        "# channelstream configuration, written by `channelstream_utils make_config`.",
        "# Serve with: channelstream -i THIS_FILE",
        "# An environment variable CHANNELSTREAM_<KEY> overrides the value of <key> here.",
        "",
        "[channelstream]",
    ]
    for setting in SETTINGS_TABLE:
        lines.extend(_comment(setting.help))
        if setting.example:
            lines.append(f"# Example: {setting.example}")
        lines.append(f"# Environment variable: {setting.env_var}")
        lines.append(f"{setting.name} = {_ini_value(setting.name, raw[setting.name])}".rstrip())
        lines.append("")
    return "\n".join(lines)


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def settings_doc() -> str:
    """A Markdown table of every setting: name, default, environment variable, description."""
    from channelstream.settings import SETTINGS_TABLE

    rows = [
        "| Setting | Default | Environment variable | Description |",
        "|---|---|---|---|",
    ]
    for setting in SETTINGS_TABLE:
        if setting.default is None:
            default = "(random per start)"
        else:
            default = f"`{setting.default}`" if setting.default else "(empty)"
        description = setting.help
        if setting.example:
            description += f" Example: `{setting.example}`."
        variables = f"`{setting.env_var}`"
        if setting.secret:
            variables += f" or `{setting.file_env_var}`"
        rows.append(
            f"| `{setting.name}` | {_markdown_cell(default)} | {variables} | "
            f"{_markdown_cell(description)} |"
        )
    return "\n".join(rows) + "\n"


def readme_settings_section(readme_text: str) -> str:
    """The text between the settings markers of the README (without the marker lines)."""
    try:
        start = readme_text.index(SETTINGS_DOC_START) + len(SETTINGS_DOC_START)
        end = readme_text.index(SETTINGS_DOC_END, start)
    except ValueError:
        raise ValueError(
            f"README has no {SETTINGS_DOC_START} ... {SETTINGS_DOC_END} section"
        ) from None
    return readme_text[start:end].strip("\n") + "\n"


def replace_readme_settings_section(readme_text: str, table: str) -> str:
    """`readme_text` with the section between the settings markers replaced by `table`."""
    readme_settings_section(readme_text)  # raises if the markers are missing
    start = readme_text.index(SETTINGS_DOC_START) + len(SETTINGS_DOC_START)
    end = readme_text.index(SETTINGS_DOC_END, start)
    return readme_text[:start] + "\n" + table.strip("\n") + "\n" + readme_text[end:]


def _utils_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="channelstream_utils", description="channelstream configuration helpers."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    make = commands.add_parser(
        "make_config",
        help="write an ini file holding every setting",
        description="Write an ini file with a [channelstream] section holding every setting. "
        "Values: defaults < CHANNELSTREAM_<KEY> environment variables < -j.",
    )
    make.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")
    make.add_argument(
        "-j",
        "--json",
        metavar="JSON",
        help='a JSON object of settings, e.g. \'{"secret": "s", "allow_posting_from": '
        '["127.0.0.1", "10.0.0.0/8"]}\'',
    )
    doc = commands.add_parser(
        "settings_doc",
        help="print a Markdown table of every setting",
        description="Print a Markdown table of every setting (the README embeds it).",
    )
    doc.add_argument(
        "--readme",
        metavar="FILE",
        help=f"instead of printing, replace the table between {SETTINGS_DOC_START} and "
        f"{SETTINGS_DOC_END} in FILE",
    )
    return parser


def _fail(message: str) -> NoReturn:
    print(f"channelstream_utils: {message}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_CONFIG)


def utils_main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `channelstream_utils` console script."""
    from channelstream.settings import SettingsError

    args = _utils_parser().parse_args(argv)
    if args.command == "make_config":
        overrides: Any = {}
        if args.json:
            try:
                overrides = json.loads(args.json)
            except json.JSONDecodeError as error:
                _fail(f"-j is not valid JSON: {error}")
            if not isinstance(overrides, dict):
                _fail("-j must be a JSON object of settings")
        try:
            text = make_config(overrides, environ=os.environ)
        except SettingsError as error:
            _fail(str(error))
        if args.output:
            Path(args.output).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
    elif args.command == "settings_doc":
        table = settings_doc()
        if args.readme:
            path = Path(args.readme)
            try:
                updated = replace_readme_settings_section(path.read_text(encoding="utf-8"), table)
            except (OSError, ValueError) as error:
                _fail(str(error))
            path.write_text(updated, encoding="utf-8")
        else:
            sys.stdout.write(table)
