"""Attacks on the admin panel and /static, each with the answer it gets now.

Cross-origin admin actions (CSRF and login CSRF), sign-in throttling that refuses at once
instead of queueing, odd form charsets, a forged Host, the cookie over https and after
sign-out, and what /static serves. The same attacks against a real server process are in
tests/e2e/test_admin_hardening.py. webtest's host is `localhost:80`.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import webtest
from pyramid.config import Configurator

from tests.functional.conftest import (
    ADMIN_SECRET,
    ADMIN_USER,
    LOCALHOST,
    ApiClient,
    ClientFactory,
    sign_in,
)
from tests.functional.test_admin import SAME_ORIGIN, call, frozen_throttle
from tests.redis_server import free_port

FORM = "application/x-www-form-urlencoded"
ERRORS_LOGGER = "channelstream.api.errors"


def disconnect(client: ApiClient, conn_id: str, **kwargs: Any) -> webtest.TestResponse:
    """`POST /admin/disconnect` with the session cookie only (no signature)."""
    kwargs.setdefault("signed", False)
    return call(client, "POST", "/admin/disconnect", {"conn_id": conn_id}, **kwargs)


def session_cookie(client: ApiClient) -> dict[str, str]:
    """The session cookie as a header (webtest's jar keeps it for http://localhost only)."""
    return {"Cookie": f"auth_tkt={client.testapp.cookies['auth_tkt']}"}


def refusals(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == ERRORS_LOGGER and "refused" in r.message]


def form_post(client: ApiClient, body: bytes, content_type: str, **kwargs: Any) -> Any:
    return client.testapp.post(
        "/admin/sign_in", body, content_type=content_type, expect_errors=True, **kwargs
    )


# ----------------------------------------------------------------- CSRF on admin actions


@pytest.mark.parametrize(
    ("content_type", "headers"),
    [
        pytest.param("text/plain", SAME_ORIGIN, id="text-plain-form-same-origin"),
        pytest.param("text/plain", {"Origin": "http://localhost:8081"}, id="text-plain-no-cors"),
        pytest.param(FORM, SAME_ORIGIN, id="urlencoded-form"),
        pytest.param("application/json", {"Origin": "http://localhost:8081"}, id="other-port"),
        pytest.param("application/json", {"Origin": "https://localhost"}, id="other-scheme"),
        pytest.param("application/json", {"Origin": "http://sub.localhost"}, id="other-host"),
        pytest.param("application/json", {"Origin": "null"}, id="origin-null"),
        pytest.param("application/json", {"Sec-Fetch-Site": "same-site"}, id="fetch-same-site"),
        pytest.param("application/json", {"Sec-Fetch-Site": "cross-site"}, id="fetch-cross"),
        pytest.param("application/json", {"Referer": "http://localhost:8081/x"}, id="referer"),
        pytest.param("application/json", {}, id="no-origin-at-all"),
    ],
)
def test_an_admin_action_not_json_or_not_from_the_panels_origin_is_refused(
    admin_client: ApiClient,
    caplog: pytest.LogCaptureFixture,
    content_type: str,
    headers: dict[str, str],
) -> None:
    conn_id = admin_client.connect("victim")["conn_id"]
    caplog.set_level(logging.INFO, logger=ERRORS_LOGGER)

    response = admin_client.testapp.post(
        "/admin/disconnect",
        f'{{"conn_id": "{conn_id}"}}'.encode(),
        content_type=content_type,
        headers=headers,
        expect_errors=True,
    )

    assert response.status_int == 403
    assert response.json["error"] == "forbidden"
    assert conn_id in admin_client.node.state.connections, "the connection is still there"
    [record] = refusals(caplog)
    assert record.levelno == logging.WARNING and "403" in record.message


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(SAME_ORIGIN, id="origin"),
        pytest.param({"Origin": "http://LOCALHOST:80"}, id="origin-explicit-default-port"),
        pytest.param({"Sec-Fetch-Site": "same-origin"}, id="sec-fetch-site"),
        pytest.param({"Referer": "http://localhost/admin"}, id="referer"),
    ],
)
def test_a_json_admin_action_from_the_panels_own_origin_is_done(
    admin_client: ApiClient, headers: dict[str, str]
) -> None:
    conn_id = admin_client.connect("victim")["conn_id"]

    response = disconnect(admin_client, conn_id, headers=headers)

    assert response.json == {"conn_id": conn_id, "disconnected": True}


def test_the_origin_is_judged_with_the_scheme_the_proxy_headers_give(
    make_client: ClientFactory,
) -> None:
    client = make_client(trusted_proxies="127.0.0.1")
    sign_in(client)
    https = {"Host": "admin.example", "X-Forwarded-Proto": "https", **session_cookie(client)}
    conn_id = client.connect("victim")["conn_id"]

    disconnect(client, conn_id, headers={**https, "Origin": "http://admin.example"}, status=403)
    response = disconnect(client, conn_id, headers={**https, "Origin": "https://admin.example"})
    assert response.json["disconnected"] is True


def test_a_signed_call_needs_no_origin_and_no_json_type(client: ApiClient) -> None:
    conn_id = client.connect("victim")["conn_id"]

    response = call(
        client,
        "POST",
        "/admin/disconnect",
        raw_body=f'{{"conn_id": "{conn_id}"}}'.encode(),
        headers={"Content-Type": "text/plain"},
    )

    assert response.json == {"conn_id": conn_id, "disconnected": True}


def test_a_junk_secret_parameter_does_not_pass_a_cross_origin_form_for_a_signed_call(
    admin_client: ApiClient,
) -> None:
    conn_id = admin_client.connect("victim")["conn_id"]

    admin_client.testapp.post(
        "/admin/disconnect?secret=junk.junk.junk",
        f'{{"conn_id": "{conn_id}"}}'.encode(),
        content_type="text/plain",
        headers={"Origin": "http://localhost:8081"},
        status=403,
    )

    assert conn_id in admin_client.node.state.connections


# ----------------------------------------------------------------- sign-out


def test_a_get_of_sign_out_does_not_sign_out(admin_client: ApiClient) -> None:
    response = call(admin_client, "GET", "/admin/sign_out", signed=False, status=404)

    assert response.json["error"] == "not_found"
    assert "Set-Cookie" not in response.headers
    call(admin_client, "GET", "/admin", signed=False)  # still signed in


@pytest.mark.parametrize(
    ("content_type", "headers"),
    [
        pytest.param("text/plain", SAME_ORIGIN, id="text-plain"),
        pytest.param("application/json", {"Origin": "http://localhost:8081"}, id="other-origin"),
        pytest.param("application/json", {}, id="no-origin"),
    ],
)
def test_a_cross_origin_or_non_json_sign_out_is_refused(
    admin_client: ApiClient, content_type: str, headers: dict[str, str]
) -> None:
    response = admin_client.testapp.post(
        "/admin/sign_out", b"{}", content_type=content_type, headers=headers, status=403
    )

    assert response.json["error"] == "forbidden"
    assert "Set-Cookie" not in response.headers
    call(admin_client, "GET", "/admin", signed=False)


def test_a_cookie_copied_before_sign_out_is_worthless_after_it(admin_client: ApiClient) -> None:
    cookie = session_cookie(admin_client)
    call(admin_client, "GET", "/admin", signed=False, headers=cookie)

    call(admin_client, "POST", "/admin/sign_out", {}, signed=False, headers=SAME_ORIGIN)

    admin_client.testapp.reset()
    call(admin_client, "GET", "/admin", signed=False, headers=cookie, status=302)
    disconnect(
        admin_client,
        admin_client.connect("x")["conn_id"],
        headers={**cookie, **SAME_ORIGIN},
        status=302,
    )


def test_signing_out_ends_only_its_own_session(make_client: ClientFactory) -> None:
    first = make_client()
    sign_in(first)
    other_cookie = session_cookie(first)
    first.testapp.reset()
    sign_in(first)  # a second session, e.g. another browser

    call(first, "POST", "/admin/sign_out", {}, signed=False, headers=SAME_ORIGIN)

    first.testapp.reset()
    call(first, "GET", "/admin", signed=False, headers=other_cookie)


def test_a_signed_out_visitor_signing_out_again_is_told_so(client: ApiClient) -> None:
    response = call(client, "POST", "/admin/sign_out", {}, signed=False, headers=SAME_ORIGIN)

    assert response.json == {"signed_out": False}


def test_with_the_memory_broker_a_session_is_known_only_to_its_own_process(
    make_client: ClientFactory,
) -> None:
    """Two apps on memory brokers are two single-node clusters: they share no sessions even
    with one cookie_secret (with Redis they would: tests/multinode/test_admin_sessions.py)."""
    first = make_client(cookie_secret="shared")
    sign_in(first)
    second = make_client(cookie_secret="shared")
    cookie = session_cookie(first)

    call(first, "GET", "/admin", signed=False, headers=cookie)
    call(second, "GET", "/admin", signed=False, headers=cookie, status=302)


def test_while_the_broker_is_unreachable_the_cookie_gets_503_not_a_session(
    make_client: ClientFactory,
) -> None:
    """With the session store down, whether a cookie's session is open cannot be known: the
    admin endpoints answer the broker's 503 JSON (the panel shows it and retries), sign-in
    and sign-out too. A visitor without a cookie is still sent to the sign-in page."""
    minted = make_client(cookie_secret="shared")
    sign_in(minted)
    cookie = session_cookie(minted)  # validly signed, for a cluster that cannot check it
    down = make_client(cookie_secret="shared", broker=f"redis://127.0.0.1:{free_port()}/0")

    for path in ("/admin", "/admin/admin.json"):
        response = call(down, "GET", path, signed=False, headers=cookie, status=503)
        assert response.json["error"] == "unavailable"
    signed_out = call(
        down,
        "POST",
        "/admin/sign_out",
        {},
        signed=False,
        headers={**cookie, **SAME_ORIGIN},
        status=503,
    )
    assert "Set-Cookie" not in signed_out.headers
    signed_in = sign_in(down)
    assert (signed_in.status_int, signed_in.json["error"]) == (503, "unavailable")
    assert "Set-Cookie" not in signed_in.headers
    call(down, "GET", "/admin", signed=False, status=302)


# ----------------------------------------------------------------- login CSRF


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Origin": "http://localhost:8081"}, id="origin"),
        pytest.param({"Sec-Fetch-Site": "cross-site"}, id="sec-fetch-site"),
        pytest.param({"Referer": "http://evil.example/"}, id="referer"),
    ],
)
def test_a_sign_in_form_posted_from_another_origin_is_refused(
    client: ApiClient, headers: dict[str, str]
) -> None:
    response = client.testapp.post(
        "/admin/sign_in",
        {"username": ADMIN_USER, "password": ADMIN_SECRET},
        headers=headers,
        status=403,
    )

    assert response.json["error"] == "forbidden"
    assert "Set-Cookie" not in response.headers


def test_a_sign_in_form_from_the_own_origin_signs_in(client: ApiClient) -> None:
    response = client.testapp.post(
        "/admin/sign_in",
        {"username": ADMIN_USER, "password": ADMIN_SECRET},
        headers={**SAME_ORIGIN, "Sec-Fetch-Site": "same-origin"},
        status=302,
    )

    assert response.headers["Location"] == "/admin"


# ----------------------------------------------------------------- throttle: 429 at once


def test_within_the_back_off_the_form_answers_429_with_retry_after(
    client: ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    clock = frozen_throttle(client)
    sign_in(client, "admin", "guess")
    sign_in(client, "admin", "guess")
    caplog.set_level(logging.INFO, logger=ERRORS_LOGGER)

    response = sign_in(client)  # the right password, not even compared

    assert response.status_int == 429
    assert response.headers["Retry-After"] == "1"
    assert response.content_type == "text/html"
    assert "Too many failed sign-ins; try again in 1 s" in response.text
    assert 'value="admin"' in response.text
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert "Set-Cookie" not in response.headers
    [record] = refusals(caplog)
    assert record.levelno == logging.WARNING and "429" in record.message
    clock.now += 0.5
    assert sign_in(client).status_int == 302


def test_a_client_that_prefers_json_gets_the_error_envelope(client: ApiClient) -> None:
    frozen_throttle(client)
    for _ in range(3):
        sign_in(client, "admin", "guess")

    response = client.testapp.post(
        "/admin/sign_in",
        {"username": ADMIN_USER, "password": "guess"},
        headers={"Accept": "application/json"},
        status=429,
    )

    assert response.headers["Retry-After"] == "1"
    assert response.json == {
        "error": "too_many_requests",
        "message": "Too many failed sign-ins; try again in 1 s",
        "code": "429 Too Many Requests",
        "title": "Too Many Requests",
    }


def test_refused_attempts_are_not_counted_as_failures(client: ApiClient) -> None:
    frozen_throttle(client)
    throttle = client.testapp.app.registry.channelstream_sign_in_throttle
    sign_in(client, "admin", "guess")
    sign_in(client, "admin", "guess")

    for _ in range(5):
        assert sign_in(client, "admin", "guess").status_int == 429

    assert throttle.failures(LOCALHOST) == 2


# ----------------------------------------------------------------- form charsets


@pytest.mark.parametrize(
    "content_type",
    [
        f"{FORM}; charset=utf-7",
        f"{FORM}; charset=utf-16",
        f"{FORM}; charset=latin-1",
        f'{FORM}; charset="bogus"',
        "application/json",
        "text/plain",
        "multipart/form-data; boundary=x",
    ],
)
def test_a_sign_in_that_is_not_a_utf8_form_is_a_json_400_not_a_500(
    client: ApiClient, content_type: str
) -> None:
    throttle = client.testapp.app.registry.channelstream_sign_in_throttle

    response = form_post(client, b"username=admin&password=x", content_type)

    assert response.status_int == 400
    assert response.json["error"] == "bad_request"
    assert "UTF-8" in response.json["message"]
    assert throttle.failures(LOCALHOST) == 0, "no credentials were compared"


@pytest.mark.parametrize("content_type", [FORM, f"{FORM}; charset=UTF-8", f"{FORM};charset=utf8"])
def test_a_utf8_form_is_read(client: ApiClient, content_type: str) -> None:
    body = f"username={ADMIN_USER}&password={ADMIN_SECRET}".encode()

    assert form_post(client, body, content_type).status_int == 302


# ----------------------------------------------------------------- Host and redirects


@pytest.mark.parametrize("path", ["/admin", "/admin/admin.json", "/api-explorer"])
def test_a_forged_host_is_not_reflected_in_the_redirect_to_sign_in(
    client: ApiClient, path: str
) -> None:
    response = call(client, "GET", path, signed=False, headers={"Host": "evil.example"}, status=302)

    assert response.headers["Location"].split("?came_from=")[0] == "/admin/sign_in"
    assert "evil" not in str(response.headers)


def test_a_forged_host_is_not_reflected_after_signing_in(client: ApiClient) -> None:
    response = client.testapp.post(
        "/admin/sign_in",
        {"username": ADMIN_USER, "password": ADMIN_SECRET},
        headers={"Host": "evil.example"},
        status=302,
    )

    assert response.headers["Location"] == "/admin"
    assert "evil" not in str(response.headers)


@pytest.mark.parametrize(
    ("script_name", "location"),
    [
        ("/cs", "/cs/admin/sign_in"),
        ("\\evil.example", "/evil.example/admin/sign_in"),
        ("/\t/evil.example", "/evil.example/admin/sign_in"),
    ],
)
def test_the_redirect_keeps_the_script_name_but_never_leaves_the_server(
    client: ApiClient, script_name: str, location: str
) -> None:
    response = call(
        client, "GET", "/admin", signed=False, headers={"X-Script-Name": script_name}, status=302
    )

    assert response.headers["Location"] == location


def test_the_redirect_keeps_a_host_apps_route_prefix() -> None:
    config = Configurator(settings={"channelstream.secret": "s"})
    config.include("channelstream", route_prefix="/cs")
    app = config.make_wsgi_app()
    try:
        testapp = webtest.TestApp(app, extra_environ={"REMOTE_ADDR": LOCALHOST})
        response = testapp.get("/cs/admin", status=302)
        assert response.headers["Location"] == "/cs/admin/sign_in"
    finally:
        app.registry.channelstream_node.stop()


# ----------------------------------------------------------------- the cookie over https


def test_over_https_the_cookie_is_secure_and_works(client: ApiClient) -> None:
    https = {"X-Scheme": "https"}
    response = client.testapp.post(
        "/admin/sign_in",
        {"username": ADMIN_USER, "password": ADMIN_SECRET},
        headers=https,
        status=302,
    )

    cookie = response.headers["Set-Cookie"]
    assert "; secure" in cookie.lower() and "HttpOnly" in cookie and "Domain=" not in cookie
    https["Cookie"] = cookie.split(";")[0]  # webtest's jar keeps Secure cookies from http
    call(client, "GET", "/admin", signed=False, headers=https)
    signed_out = call(
        client,
        "POST",
        "/admin/sign_out",
        {},
        signed=False,
        headers={**https, "Origin": "https://localhost:80"},
    )
    assert signed_out.json == {"signed_out": True}
    assert "; secure" in signed_out.headers["Set-Cookie"].lower()


# ----------------------------------------------------------------- /static


@pytest.mark.parametrize(
    "path",
    [
        "/static/swagger-ui/index.html",  # Swagger UI's demo page (loads petstore.swagger.io)
        "/static/swagger-ui/",
        "/static/swagger-ui/swagger-initializer.js",
        "/static/swagger-ui/oauth2-redirect.html",
        "/static/swagger-ui/index.j2",
        "/static/apiexplorer/__init__.py",
        "/static/apiexplorer/index.html",  # the page is /api-explorer, with its CSP
        "/static/apiexplorer/",
        "/static/admin/index.html",  # the page is /admin, with its CSP
        "/static/admin/sign_in.html",
        "/static/admin/",
        "/static/",
        "/static/admin/../admin/index.html",
        "/static/nothing.js",
    ],
)
def test_static_serves_no_page_no_python_and_nothing_unlisted(client: ApiClient, path: str) -> None:
    response = call(client, "GET", path, signed=False, status=404)

    assert response.json["error"] == "not_found"


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/static/channelstream.js", "text/javascript"),
        ("/static/admin/admin.js", "text/javascript"),
        ("/static/admin/admin.css", "text/css"),
        ("/static/apiexplorer/explorer.js", "text/javascript"),
        ("/static/apiexplorer/signer.js", "text/javascript"),
        ("/static/apiexplorer/explorer.css", "text/css"),
        ("/static/swagger-ui/swagger-ui-bundle.js", "text/javascript"),
        ("/static/swagger-ui/swagger-ui.css", "text/css"),
        ("/static/swagger-ui/favicon-32x32.png", "image/png"),
    ],
)
def test_the_files_pages_load_are_served_with_nosniff(
    client: ApiClient, path: str, content_type: str
) -> None:
    response = client.get(path)

    assert response.content_type in (content_type, "application/javascript")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "max-age=3600" in response.headers["Cache-Control"]
    client.testapp.head(path, status=200)


def test_static_files_take_get_and_head_only(client: ApiClient) -> None:
    call(client, "POST", "/static/channelstream.js", signed=False, status=404)
