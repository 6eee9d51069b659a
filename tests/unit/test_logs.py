"""Log line formats: the JSON formatter and switching the root handlers' format."""

import json
import logging

from channelstream.logs import JsonFormatter, apply_log_format


def _record(**extra):
    logger = logging.getLogger("channelstream.test")
    record = logger.makeRecord(
        "channelstream.test", logging.INFO, __file__, 1, "opened %s", ("c1",), None, extra=extra
    )
    return record


def test_json_line_has_time_level_logger_and_message():
    line = JsonFormatter().format(_record())
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "INFO"
    assert entry["logger"] == "channelstream.test"
    assert entry["message"] == "opened c1"
    assert entry["time"].endswith("+00:00")
    assert "conn_id" not in entry


def test_json_line_carries_conn_id_when_given():
    entry = json.loads(JsonFormatter().format(_record(conn_id="abc")))
    assert entry["conn_id"] == "abc"


def test_json_line_includes_the_exception():
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        import sys

        record = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exc_info"]


def test_apply_log_format_switches_handlers():
    logger = logging.getLogger("channelstream.test.apply")
    handler = logging.StreamHandler()
    logger.addHandler(handler)
    try:
        apply_log_format("json", logger)
        assert isinstance(handler.formatter, JsonFormatter)
        apply_log_format("text", logger)
        assert not isinstance(handler.formatter, JsonFormatter)
    finally:
        logger.removeHandler(handler)
