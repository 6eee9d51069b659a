"""The console scripts and pserve start a real server that answers HTTP and websockets."""

import configparser
import http.client
import json
import os
import re
import signal
import socket
import uuid

import pytest
import websocket

import channelstream
from channelstream.signature import sign
from tests.e2e.apiclient import ApiClient, WsListener, has_text, wait_for_log
from tests.e2e.conftest import REPO_ROOT, http_get


def http_status(server, path="/"):
    """Status code of a GET; raises if the server did not answer with an HTTP status line."""
    return http_get(server.port, path)[0]


def ini_secret(ini_text):
    """`channelstream.secret` of a PasteDeploy file's [app:main] section."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(ini_text)
    return parser["app:main"]["channelstream.secret"]


def assert_signed_connect_works(server, secret):
    """A signed `POST /connect` answers 200 with a new conn_id (a UUID); unsigned: 403, signed
    with another secret: 401."""
    result = ApiClient(server.base_url, secret).call("/connect", {"username": "e2e-user"})
    assert result.status == 200, result.body[:500]
    assert result.content_type.startswith("application/json")
    assert result.json["username"] == "e2e-user"
    assert str(uuid.UUID(result.json["conn_id"])) == result.json["conn_id"]
    unsigned = ApiClient(server.base_url, secret).call("/connect", {"username": "x"}, signed=False)
    assert unsigned.status == 403
    wrong = ApiClient(server.base_url, secret + "-not").call("/connect", {"username": "x"})
    assert wrong.status == 401
    assert wrong.json == {"request": "Bad Signature"}


def test_channelstream_serves_a_channelstream_section(start_server):
    server = start_server(settings={"secret": "e2e-secret"})
    assert_signed_connect_works(server, "e2e-secret")
    log = server.log_text()
    assert f"Serving on http://127.0.0.1:{server.port}" in log
    assert channelstream.__version__ in log
    # admin_secret was not given: made at random, and said so once; secret was given
    assert log.count("admin_secret is not set: made a random one for this run: ") == 1
    assert "\nsecret is not set" not in log and "] secret is not set" not in log


def with_port_placeholder(ini_text):
    """The ini with every `port = N` / `channelstream.port = N` replaced by `{port}`."""
    return re.sub(r"(?m)^((?:channelstream\.)?port) = \d+$", r"\1 = {port}", ini_text)


@pytest.mark.parametrize("command", ["channelstream", "pserve"])
def test_development_ini_serves(start_server, command):
    ini = with_port_placeholder((REPO_ROOT / "development.ini").read_text())
    server = start_server(ini_text=ini, command=command)
    assert_signed_connect_works(server, ini_secret(ini))
    assert f"Serving on http://127.0.0.1:{server.port}" in server.log_text()


def test_pserve_serves_production_ini_on_redis(start_server, redis_url, redis_prefix):
    ini = (REPO_ROOT / "production.ini").read_text()
    assert "channelstream.broker = redis://" in ini
    ini = re.sub(r"(?m)^host = .*$", "host = 127.0.0.1", ini)
    ini = re.sub(r"(?m)^channelstream.broker = .*$", f"channelstream.broker = {redis_url}", ini)
    ini = re.sub(
        r"(?m)^channelstream.redis_prefix = .*$",
        f"channelstream.redis_prefix = {redis_prefix}",
        ini,
    )
    ini = with_port_placeholder(ini)
    # its CHANGE-ME placeholders are refused (test_first_run.py): production sets its own
    secrets = {"CHANNELSTREAM_SECRET": "prod-secret", "CHANNELSTREAM_ADMIN_SECRET": "prod-admin"}
    server = start_server(ini_text=ini, command="pserve", env=secrets)
    assert_signed_connect_works(server, "prod-secret")
    assert "Redis broker at" in server.log_text()


@pytest.mark.parametrize("command", ["channelstream", "pserve"])
def test_sigterm_stops_the_server_with_status_0(start_server, command):
    server = start_server(command=command)
    assert 100 <= http_status(server) <= 599
    assert server.stop() == 0
    assert "SIGTERM received" in server.log_text()


def test_websocket_without_valid_conn_id_is_not_upgraded(start_server):
    server = start_server()
    for query in ("", "?conn_id=not-a-uuid"):
        with pytest.raises(websocket.WebSocketBadStatusException) as error:
            websocket.create_connection(server.ws_url + query, timeout=10)
        assert error.value.status_code == 422


def test_websocket_with_a_uuid_conn_id_is_upgraded(start_server):
    server = start_server()
    ws = websocket.create_connection(f"{server.ws_url}?conn_id={uuid.uuid4()}", timeout=10)
    try:
        assert ws.getstatus() == 101
    finally:
        ws.close()


def test_bad_setting_exits_2_naming_the_key(tmp_path, run_console_script):
    ini = tmp_path / "bad.ini"
    ini.write_text("[channelstream]\nport = 8000\nheartbeat_interval = soon\n")
    result = run_console_script("channelstream", "-i", str(ini))
    assert result.returncode == 2
    assert "'heartbeat_interval'" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_environment_value_exits_2_naming_the_key(run_console_script):
    result = run_console_script("channelstream", env={"CHANNELSTREAM_PORT": "eighty"})
    assert result.returncode == 2
    assert "'port'" in result.stderr


def test_missing_ini_exits_2_naming_the_file(run_console_script):
    result = run_console_script("channelstream", "-i", "no-such.ini")
    assert result.returncode == 2
    assert "no-such.ini" in result.stderr


def test_version(run_console_script):
    result = run_console_script("channelstream", "--version")
    assert result.returncode == 0
    assert result.stdout.strip() == channelstream.__version__


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_closes_websockets_with_1001_and_exits_0(start_server, listeners, signum):
    server = start_server(settings={"secret": "drain-secret"})
    api = ApiClient(server.base_url, "drain-secret")
    listener = WsListener.open(server.ws_url, api.connect("drained", channels=["c"]))
    listeners.append(listener)
    os.kill(server.pid, signum)
    assert listener.wait_closed(timeout=5) == 1001
    assert server.process.wait(timeout=10) == 0
    assert f"{signal.Signals(signum).name} received" in server.log_text()


def send_stalled_message_request(server, secret):
    """A signed `POST /message` whose body is still on its way: returns the socket once the
    server has asked for the body (`100 Continue`), i.e. once the request is in flight."""
    body = json.dumps([{"channel": "drained", "user": "bob", "message": {"text": "late"}}])
    body = body.encode()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(
        b"POST /message HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n".encode()
        + f"X-Channelstream-Secret: {sign(secret, '/message')}\r\n\r\n".encode()
    )
    assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
    return sock, body


def test_sigterm_lets_an_in_flight_request_finish(start_server):
    server = start_server(settings={"secret": "drain-secret", "shutdown_timeout": "20"})
    sock, body = send_stalled_message_request(server, "drain-secret")
    with sock:
        os.kill(server.pid, signal.SIGTERM)
        wait_for_log(server.log_text, "waiting up to", timeout=10)
        sock.sendall(body)
        response = sock.makefile("rb").readline()
    assert response.startswith(b"HTTP/1.1 200"), response
    assert server.process.wait(timeout=20) == 0
    assert "cut off" not in server.log_text()


def test_sigterm_cuts_requests_off_at_shutdown_timeout_and_exits_0(start_server):
    server = start_server(
        settings={"secret": "drain-secret", "shutdown_timeout": "2"},
        env={"CHANNELSTREAM_DRAIN_GRACE": "0.5"},
    )
    sock, _ = send_stalled_message_request(server, "drain-secret")
    with sock:
        os.kill(server.pid, signal.SIGTERM)
        # the deadline is the server's; the margin here only covers process start-up noise
        assert server.process.wait(timeout=10) == 0
        assert sock.recv(100) == b""  # the stalled request was closed, not answered
    assert "1 requests were cut off at shutdown_timeout" in server.log_text()


def test_sigterm_closes_many_websockets_in_batches(start_server, listeners):
    server = start_server(settings={"secret": "drain-secret"})
    api = ApiClient(server.base_url, "drain-secret")
    for index in range(3):
        listener = WsListener.open(server.ws_url, api.connect(f"user{index}", channels=["c"]))
        listeners.append(listener)
    os.kill(server.pid, signal.SIGTERM)
    assert [listener.wait_closed(timeout=5) for listener in listeners] == [1001] * 3
    assert server.process.wait(timeout=10) == 0
    assert "closed 3 listeners with 1001 in 1 batches" in server.log_text()


def test_access_log_does_not_show_a_token_passed_in_the_query(start_server):
    server = start_server(settings={"secret": "log-secret"})
    token = sign("log-secret", "/info")
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", f"/info?secret={token}")
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    assert response.status == 200
    wait_for_log(server.log_text, "GET /info?secret=[redacted]")
    assert token not in server.log_text()


@pytest.mark.parametrize(
    ("trusted_proxies", "shown"),
    [("127.0.0.1", "203.0.113.9"), ("", "127.0.0.1")],
    ids=["behind-a-trusted-proxy", "header-from-anyone-else"],
)
def test_the_access_line_names_the_client_a_trusted_proxy_forwards(
    start_server, trusted_proxies, shown
):
    """Behind nginx the access line names the client from X-Forwarded-For, as the allow-list
    sees it; from a peer that is not a trusted proxy the header is not believed."""
    server = start_server(settings={"trusted_proxies": trusted_proxies})
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", "/health", headers={"X-Forwarded-For": "203.0.113.9"})
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    assert response.status == 200
    wait_for_log(server.log_text, '"GET /health HTTP/1.1" 200')
    [line] = [line for line in server.log_text().splitlines() if '"GET /health HTTP' in line]
    assert f"[channelstream.access] {shown} - - [" in line, line


# ---------------------------------------------------------------- the drain grace


def ready_answer(port):
    """GET /ready on a NEW TCP connection: (status, JSON body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/ready")
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@pytest.mark.parametrize("command", ["channelstream", "pserve"])
def test_during_the_drain_grace_new_connections_see_ready_503_then_websockets_get_1001(
    start_server, listeners, command
):
    """A load balancer polling /ready sees the node leave while it still answers: after
    SIGTERM the listener stays open for drain_grace, new connections are served (/ready 503,
    signed calls 200), and only then the websockets close with 1001. A second SIGTERM ends
    the grace (the grace here is long, so the checks never race it)."""
    server = start_server(
        settings={"secret": "drain-secret", "shutdown_timeout": "60"},
        env={"CHANNELSTREAM_DRAIN_GRACE": "50"},
        command=command,
    )
    api = ApiClient(server.base_url, "drain-secret")
    listener = WsListener.open(server.ws_url, api.connect("drained", channels=["c"]))
    listeners.append(listener)
    assert ready_answer(server.port) == (200, {"status": "ready"})

    os.kill(server.pid, signal.SIGTERM)
    wait_for_log(server.log_text, "draining: still serving for 50.0 s (drain_grace)", timeout=10)
    assert ready_answer(server.port) == (503, {"status": "unavailable", "reason": "draining"})
    assert http_status(server, "/health") == 200
    assert api.call("/connect", {"username": "late"}).status == 200
    api.publish({"channel": "c", "user": "bob", "message": {"text": "still here"}})
    listener.wait_for(has_text("still here"))  # the open websocket is served as before
    listener.sync()  # and not closed

    os.kill(server.pid, signal.SIGTERM)
    assert listener.wait_closed(timeout=10) == 1001
    assert server.process.wait(timeout=20) == 0
    log = server.log_text()
    assert "SIGTERM received again: ending the drain grace" in log
    steps = [
        "SIGTERM received, shutting down",
        "draining: /ready answers 503",
        "draining: still serving for 50.0 s (drain_grace) before closing",
        "draining: no longer accepting connections",
        "closed 1 listeners with 1001 in 1 batches",
        "Server stopped",
    ]
    positions = [log.index(step) for step in steps]
    assert positions == sorted(positions)


def test_the_drain_grace_ends_by_itself_and_the_process_exits_0(start_server, listeners):
    server = start_server(
        settings={"secret": "drain-secret"}, env={"CHANNELSTREAM_DRAIN_GRACE": "1"}
    )
    api = ApiClient(server.base_url, "drain-secret")
    listener = WsListener.open(server.ws_url, api.connect("drained", channels=["c"]))
    listeners.append(listener)
    os.kill(server.pid, signal.SIGTERM)
    assert listener.wait_closed(timeout=15) == 1001
    assert server.process.wait(timeout=15) == 0
    assert "received again" not in server.log_text()
    assert "draining: no longer accepting connections" in server.log_text()
