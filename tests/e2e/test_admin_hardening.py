"""The attacker's report on the admin panel, replayed against a real server process over raw
HTTP (http.client: no redirects followed, headers sent exactly as written).

Each test is the attack as reported and the answer it gets now; the functional tests in
tests/functional/test_admin_hardening.py cover the variants. docs/security.md lists them.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from tests.e2e.apiclient import (
    ApiClient,
    RawAnswer,
    WsListener,
    admin_cookie,
    admin_sign_in,
    raw_request,
)
from tests.e2e.conftest import HOST, RunningServer

SECRET = "e2e-admin-secret"
ADMIN_USER = "admin"
ADMIN_SECRET = "e2e-admin-password"
SETTINGS = {"secret": SECRET, "admin_user": ADMIN_USER, "admin_secret": ADMIN_SECRET}
FORM = "application/x-www-form-urlencoded"
# Well under the 23 s that six queued failures took: an answer that waited on the others
# times out.
ANSWER_TIMEOUT = 5.0


Answer = RawAnswer


def send(
    server: RunningServer,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = ANSWER_TIMEOUT,
) -> Answer:
    """One request on a new connection; a `Host` in `headers` replaces the real one."""
    return raw_request(server.port, method, path, body, headers, timeout)


def sign_in_form(server: RunningServer, password: str = ADMIN_SECRET, **headers: str) -> Answer:
    return admin_sign_in(server.port, ADMIN_USER, password, **headers)


def session_cookie(server: RunningServer) -> str:
    return admin_cookie(server.port, ADMIN_USER, ADMIN_SECRET)


@pytest.fixture(scope="module")
def server(start_module_server: Any) -> RunningServer:
    server: RunningServer = start_module_server(settings=SETTINGS)
    return server


@pytest.fixture
def api(server: RunningServer) -> ApiClient:
    return ApiClient(server.base_url, SECRET)


def test_a_cross_origin_text_plain_disconnect_is_refused_a_same_origin_json_one_works(
    server: RunningServer, api: ApiClient
) -> None:
    cookie = session_cookie(server)
    conn_id = api.connect("victim", channels=["room"])
    body = json.dumps({"conn_id": conn_id}).encode()
    attacker = f"http://{HOST}:{server.port + 1}"  # another port of the same site
    with WsListener.open(server.ws_url, conn_id) as ws:
        form = send(
            server,
            "POST",
            "/admin/disconnect",
            body,
            {"Cookie": cookie, "Content-Type": "text/plain", "Origin": attacker},
        )
        no_cors = send(
            server,
            "POST",
            "/admin/disconnect",
            body,
            {
                "Cookie": cookie,
                "Content-Type": "text/plain;charset=UTF-8",
                "Origin": attacker,
                "Sec-Fetch-Mode": "no-cors",
                "Sec-Fetch-Site": "same-site",
            },
        )
        assert (form.status, no_cors.status) == (403, 403)
        assert form.json["error"] == no_cors.json["error"] == "forbidden"
        assert conn_id in {c["conn_id"] for c in api.ok("/admin/admin.json")["connections"]}

        own = send(
            server,
            "POST",
            "/admin/disconnect",
            body,
            {"Cookie": cookie, "Content-Type": "application/json", "Origin": server.base_url},
        )

        assert own.status == 200 and own.json == {"conn_id": conn_id, "disconnected": True}
        assert ws.wait_closed(timeout=10) == 1000


def test_a_get_of_sign_out_does_not_sign_out_and_a_post_revokes_the_cookie(
    server: RunningServer,
) -> None:
    cookie = session_cookie(server)

    cross_site_get = send(server, "GET", "/admin/sign_out", headers={"Cookie": cookie})

    assert cross_site_get.status == 404 and "set-cookie" not in cross_site_get.headers
    assert send(server, "GET", "/admin", headers={"Cookie": cookie}).status == 200
    signed_out = send(
        server,
        "POST",
        "/admin/sign_out",
        b"{}",
        {"Cookie": cookie, "Content-Type": "application/json", "Origin": server.base_url},
    )
    assert signed_out.status == 200 and signed_out.json == {"signed_out": True}
    replayed = send(server, "GET", "/admin", headers={"Cookie": cookie})
    assert replayed.status == 302, "the copied cookie no longer opens the panel"


def test_concurrent_wrong_sign_ins_are_answered_at_once_and_do_not_lock_the_admin_out(
    start_server: Any,
) -> None:
    server: RunningServer = start_server(settings=SETTINGS)  # a throttle of its own
    barrier = threading.Barrier(6, timeout=ANSWER_TIMEOUT)
    answers: list[Answer | BaseException] = []

    def guess() -> None:
        try:
            barrier.wait()
            answers.append(sign_in_form(server, password="guess"))
        except BaseException as error:  # a timeout: this one waited on the others
            answers.append(error)

    threads = [threading.Thread(target=guess) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=ANSWER_TIMEOUT * 2)

    assert len(answers) == 6 and all(isinstance(a, Answer) for a in answers), answers
    statuses = sorted(a.status for a in answers if isinstance(a, Answer))
    assert set(statuses) <= {200, 429} and 429 in statuses, statuses
    for answer in answers:
        assert isinstance(answer, Answer)
        if answer.status == 429:
            assert int(answer.headers["retry-after"]) >= 1
            assert b"Too many failed sign-ins; try again in" in answer.body

    # The admin, right after: refused at once (or let in), never queued behind the guesses;
    # then let in once the back-off has passed (polled with a deadline past its Retry-After).
    answer = sign_in_form(server)
    assert answer.status in (302, 429), answer.status
    if answer.status == 429:
        retry_after = int(answer.headers["retry-after"])
        assert 1 <= retry_after <= 8
        answer = ApiClient(server.base_url, SECRET).wait_until(
            lambda: (a := sign_in_form(server)).status == 302 and a,
            timeout=retry_after + 5,
            what="the right sign-in to be let in after the back-off",
            interval=0.2,
        )
    assert answer.headers["location"] == "/admin"


def test_a_forged_host_is_not_reflected(server: RunningServer) -> None:
    anonymous = send(server, "GET", "/admin", headers={"Host": "evil.example"})
    signed_in = sign_in_form(server, Host="evil.example")

    assert anonymous.status == 302 and anonymous.headers["location"] == "/admin/sign_in"
    assert signed_in.status == 302 and signed_in.headers["location"] == "/admin"
    for answer in (anonymous, signed_in):
        assert "evil" not in str(answer.headers)


def test_a_utf7_sign_in_form_is_a_json_400_without_a_traceback(server: RunningServer) -> None:
    answer = send(
        server,
        "POST",
        "/admin/sign_in",
        b"username=admin&password=+ADw-x",
        {"Content-Type": f"{FORM}; charset=utf-7"},
    )

    assert answer.status == 400
    assert answer.json["error"] == "bad_request"
    assert "Traceback" not in server.log_text()


@pytest.mark.parametrize(
    "path",
    [
        "/static/swagger-ui/index.html",
        "/static/swagger-ui/",
        "/static/apiexplorer/__init__.py",
        "/static/admin/index.html",
    ],
)
def test_static_serves_no_demo_page_no_raw_admin_page_and_no_python(
    server: RunningServer, path: str
) -> None:
    answer = send(server, "GET", path)

    assert answer.status == 404
    assert answer.headers["content-type"].startswith("application/json")


def test_static_still_serves_the_browser_client_with_nosniff(server: RunningServer) -> None:
    answer = send(server, "GET", "/static/channelstream.js")

    assert answer.status == 200
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert b"export class ChannelStreamConnection" in answer.body


def test_over_https_the_admin_cookie_is_secure(server: RunningServer) -> None:
    """Behind a TLS-terminating proxy that says so (X-Scheme, as 0.7.1 honoured it)."""
    over_https = sign_in_form(server, **{"X-Scheme": "https"})
    over_http = sign_in_form(server)

    assert over_https.status == 302 and over_http.status == 302
    https_cookie = [part.strip().lower() for part in over_https.headers["set-cookie"].split(";")]
    http_cookie = [part.strip().lower() for part in over_http.headers["set-cookie"].split(";")]
    assert "secure" in https_cookie and "httponly" in https_cookie
    assert "secure" not in http_cookie


@pytest.mark.parametrize("callback", ["cb%0A", "cb%0D%0A", "cb%0Aalert(1)"])
def test_a_jsonp_callback_with_a_line_break_is_refused(
    server: RunningServer, callback: str
) -> None:
    conn_id = ApiClient(server.base_url, SECRET).connect("alice")
    answer = send(server, "GET", f"/listen?conn_id={conn_id}&callback={callback}")

    assert answer.status == 422
    assert list(answer.json) == ["callback"]
