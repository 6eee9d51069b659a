"""channelstream: a websocket server that web applications drive through a signed JSON API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyramid.config import Configurator
    from pyramid.router import Router

__version__ = "0.8.0.dev0"


def main(global_config: dict[str, Any], **app_settings: str) -> Router:
    """PasteDeploy app factory (`use = egg:channelstream`): settings come from [app:main].

    That section is all channelstream's, so its keys may be bare or `channelstream.`-prefixed.
    Under pserve this is the first code of ours to run, so gevent patches here, before the
    node starts its loops; pserve has set up the ini's logging by now, so `log_level` and
    `log_format` apply to it here, as the console script applies them to its own. A bad
    setting ends the process as under the console script: one line, exit status 2.
    """
    import os
    import sys

    from gevent import monkey

    if not monkey.is_module_patched("socket"):
        monkey.patch_all()

    from channelstream.app import make_app
    from channelstream.exceptions import EXIT_BAD_CONFIG
    from channelstream.logs import apply_process_logging
    from channelstream.settings import (
        Settings,
        SettingsError,
        SettingsSource,
        log_start_warnings,
    )

    where = global_config.get("__file__")
    source = SettingsSource.section(
        f"config file {where}" if where else "app settings", app_settings
    )
    try:
        settings = Settings.from_sources(source, environ=os.environ)
    except SettingsError as error:
        print(f"channelstream: {error}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_CONFIG) from None
    apply_process_logging(settings.log_level, settings.log_format)
    log_start_warnings(settings)
    return make_app(settings)


def includeme(config: Configurator) -> None:
    """`config.include("channelstream")`: mount the server's views in a host Pyramid app.

    Settings come from the host's `channelstream.`-prefixed keys only (its own `secret` or
    `port` are the host's) and `CHANNELSTREAM_*` environment variables; routes honour the
    include's `route_prefix`. Logging stays the host's: only the levels of channelstream's own
    loggers are set, `channelstream` only when `log_level` was given. A bad setting raises
    SettingsError: the host app decides what to do with it.
    """
    import logging
    import os

    from channelstream.app import configure
    from channelstream.logs import apply_log_level
    from channelstream.settings import (
        SETTINGS_BY_NAME,
        Settings,
        SettingsSource,
        log_start_warnings,
    )

    source = SettingsSource.host_app("the host app's settings", config.get_settings())
    settings = Settings.from_sources(source, environ=os.environ)
    level_given = (
        "log_level" in source.values or SETTINGS_BY_NAME["log_level"].env_var in os.environ
    )
    apply_log_level(settings.log_level if level_given else None)
    log_start_warnings(settings)
    if settings.log_format != SETTINGS_BY_NAME["log_format"].default:
        logging.getLogger(__name__).warning(
            "log_format = %s is not applied under config.include: the host app's logging "
            "handlers format every line",
            settings.log_format,
        )
    configure(config, settings).start()
