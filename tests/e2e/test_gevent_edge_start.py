"""On a gevent that moved a private detail the server relies on, `channelstream` refuses to
start, naming the detail, instead of serving and misbehaving later."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.e2e.conftest import HOST, channelstream_ini, clean_environ, free_port

# The console script's start path, on a gevent whose WSGIHandler lost one private method.
MOVED_GEVENT_SERVER = textwrap.dedent(
    """\
    import sys

    from gevent import monkey

    monkey.patch_all()

    from gevent import pywsgi

    del pywsgi.WSGIHandler._send_error_response_if_possible

    from channelstream.cli import main

    main(sys.argv[1:])
    """
)


def test_the_server_refuses_to_start_on_a_gevent_that_moved_a_detail(tmp_path: Path) -> None:
    port = free_port()
    ini = tmp_path / "channelstream.ini"
    ini.write_text(channelstream_ini(port), encoding="utf-8")

    result = subprocess.run(
        [sys.executable, "-c", MOVED_GEVENT_SERVER, "-i", str(ini)],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_environ(),
    )

    output = result.stdout + result.stderr
    assert result.returncode == 2, output  # as for a bad setting
    assert "Traceback" not in output
    assert result.stderr.startswith("channelstream: ")
    assert (
        "gevent.pywsgi.WSGIHandler._send_error_response_if_possible, which channelstream "
        "overrides" in result.stderr
    )
    assert "gevent>=26.9,<27 and gevent-websocket>=0.10.1,<0.11" in result.stderr
    assert "Serving on" not in output
    with socket.socket() as probe:
        assert probe.connect_ex((HOST, port)) != 0  # nothing ever listened there
