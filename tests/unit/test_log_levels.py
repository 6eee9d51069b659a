"""`apply_log_level`: channelstream's own loggers only, gevent-websocket's DEBUG lines kept out
unless `log_level` is DEBUG."""

import logging

import pytest

from channelstream.logs import CHANNELSTREAM_LOGGER, WEBSOCKET_LOGGER, apply_log_level


@pytest.fixture(autouse=True)
def _restore_levels():
    names = ("", CHANNELSTREAM_LOGGER, WEBSOCKET_LOGGER)
    levels = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.parametrize(
    ("log_level", "websocket_level"),
    [
        ("DEBUG", logging.DEBUG),
        ("INFO", logging.WARNING),
        ("WARNING", logging.WARNING),
        ("ERROR", logging.ERROR),
    ],
)
def test_channelstream_gets_log_level_and_the_websocket_logger_at_least_warning(
    log_level, websocket_level
):
    root_level = logging.getLogger().level

    apply_log_level(log_level)

    assert logging.getLogger(CHANNELSTREAM_LOGGER).level == logging.getLevelName(log_level)
    assert logging.getLogger(WEBSOCKET_LOGGER).level == websocket_level
    assert logging.getLogger().level == root_level


def test_no_log_level_keeps_the_configured_level_and_quiets_the_websocket_logger():
    logging.getLogger(CHANNELSTREAM_LOGGER).setLevel(logging.DEBUG)

    apply_log_level(None)

    assert logging.getLogger(CHANNELSTREAM_LOGGER).level == logging.DEBUG
    assert not logging.getLogger(WEBSOCKET_LOGGER).isEnabledFor(logging.INFO)
