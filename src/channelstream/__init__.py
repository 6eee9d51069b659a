"""channelstream: a websocket server that web applications drive through a signed JSON API."""

__version__ = "0.8.0.dev0"


def main(global_config: dict, **app_settings: str):  # type: ignore[no-untyped-def]
    """PasteDeploy app factory (`use = egg:channelstream`): settings come from [app:main].

    Under pserve this is the first code of ours to run, so gevent patches here, before the
    node starts its loops.
    """
    import os

    from gevent import monkey

    if not monkey.is_module_patched("socket"):
        monkey.patch_all()

    from channelstream.app import make_app
    from channelstream.settings import Settings

    settings = Settings.from_sources(app_settings, environ=os.environ)
    return make_app(settings)


def includeme(config):  # type: ignore[no-untyped-def]
    """`config.include("channelstream")`: mount the server's views in a host Pyramid app.

    Settings come from the host's settings (keys prefixed `channelstream.`) and
    `CHANNELSTREAM_*` environment variables; routes honour the include's `route_prefix`.
    """
    import os

    from channelstream.app import configure
    from channelstream.settings import Settings

    settings = Settings.from_sources(config.get_settings(), environ=os.environ)
    configure(config, settings).start()
