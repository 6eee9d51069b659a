"""The API explorer in a real browser: Swagger UI from local files, "Try it out" signed in the
page, and the page's signer against itsdangerous."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

import itsdangerous
from playwright.sync_api import expect

from channelstream.api.security import TOKEN_HEADER
from tests.browser.conftest import ADMIN_SECRET, ADMIN_USER, SECRET, PageLog
from tests.e2e.apiclient import ApiClient
from tests.e2e.conftest import RunningServer


def open_explorer(page: Any, server: RunningServer) -> None:
    """Open the explorer as a visitor does: sent to sign in, and back to the explorer."""
    page.goto(server.base_url + "/api-explorer")
    expect(page).to_have_url(server.base_url + "/admin/sign_in?came_from=%2Fapi-explorer")
    page.fill("#username", ADMIN_USER)
    page.fill("#password", ADMIN_SECRET)
    page.click("button[type=submit]")
    expect(page).to_have_url(server.base_url + "/api-explorer")
    expect(page.locator("#operations-API-connect")).to_be_visible()


def try_it_out(page: Any, operation: str, body: Any = None) -> tuple[str, Any]:
    """Expand an operation, press "Try it out" and "Execute"; the status and parsed body
    Swagger UI shows."""
    block = page.locator(f"#operations-{operation}")
    block.locator(".opblock-summary").first.click()
    block.locator(".try-out__btn").click()
    if body is not None:
        block.locator("textarea.body-param__text").fill(json.dumps(body))
    block.locator("button.execute").click()
    status = block.locator(".live-responses-table .response .response-col_status").first
    expect(status).to_have_text("200")
    text = block.locator(".live-responses-table .response-col_description pre").first.inner_text()
    return status.inner_text(), json.loads(text)


def test_try_it_out_signs_post_connect_and_message_in_the_page(
    page: Any, server: RunningServer
) -> None:
    sent: list[Any] = []
    page.on("request", lambda request: sent.append(request))
    open_explorer(page, server)
    page.fill("#secret", SECRET)
    expect(page.locator("#secret-status")).to_have_text(
        "Secret set: calls are signed in this page."
    )

    status, connected = try_it_out(
        page, "API-connect", {"username": "explorer-user", "channels": ["lobby"]}
    )
    _, published = try_it_out(page, "API-message")

    assert status == "200"
    assert connected["username"] == "explorer-user" and connected["conn_id"]
    assert published[0]["channel"] == "lobby"
    api = ApiClient(server.base_url, SECRET)
    assert api.info()["channels"]["lobby"]["users"] == ["explorer-user"]
    calls = {r.url.removeprefix(server.base_url): r for r in sent if r.method == "POST"}
    signer = itsdangerous.TimestampSigner(SECRET)
    for path in ("/connect", "/message"):
        token = calls[path].headers[TOKEN_HEADER]
        assert token != SECRET
        assert signer.unsign(token, max_age=60) == path.encode()
    for request in sent:
        sent_text = request.url + json.dumps(request.headers) + (request.post_data or "")
        assert SECRET not in sent_text, f"the secret left the page in {request.url}"


def test_without_the_secret_the_server_api_answers_403(
    page: Any, page_log: PageLog, server: RunningServer
) -> None:
    page_log.expected_errors.append("status of 403 (Forbidden)")
    open_explorer(page, server)
    block = page.locator("#operations-API-info_get")
    block.locator(".opblock-summary").first.click()
    block.locator(".try-out__btn").click()
    block.locator("button.execute").click()

    status = block.locator(".live-responses-table .response .response-col_status").first
    expect(status).to_have_text("403")


def test_the_document_renders_every_tag(page: Any, server: RunningServer) -> None:
    open_explorer(page, server)

    for tag in ("API", "Client API", "Admin API", "Operations", "Pages"):
        expect(page.locator(f".opblock-tag[data-tag='{tag}']")).to_be_visible()
    expect(page.locator("#operations-Client_API-websocket")).to_be_visible()


SIGNING_CASES = [
    (SECRET, "/connect"),
    ("ünïcødé sécret ✓", "/message"),
    ("x" * 200, "/admin/admin.json"),
    ("s", "channelstream"),
]


def test_the_pages_signer_makes_itsdangerous_tokens(page: Any, server: RunningServer) -> None:
    """Web Crypto (127.0.0.1 is a secure context) and the bundled SHA-1 (for pages served
    over plain http to another host) make the very tokens itsdangerous makes."""
    open_explorer(page, server)
    moment = int(time.time())

    class DatedSigner(itsdangerous.TimestampSigner):
        def get_timestamp(self) -> int:
            return moment

    for secret, value in SIGNING_CASES:
        expected = DatedSigner(secret).sign(value).decode()
        for web_crypto in (True, False):
            made = page.evaluate(
                "([secret, value, timestamp, useWebCrypto]) => window.channelstreamExplorer.sign("
                "secret, value, {timestamp, useWebCrypto})",
                [secret, value, moment, web_crypto],
            )
            assert made == expected, f"web_crypto={web_crypto}, secret={secret!r}"
        fresh = page.evaluate(
            "([secret, value]) => window.channelstreamExplorer.sign(secret, value)",
            [secret, value],
        )
        assert itsdangerous.TimestampSigner(secret).unsign(fresh, max_age=60) == value.encode()


def test_signing_in_from_the_explorer_returns_to_it_and_a_wrong_password_too(
    page: Any, server: RunningServer
) -> None:
    page.goto(server.base_url + "/api-explorer")
    page.fill("#username", ADMIN_USER)
    page.fill("#password", "wrong")
    page.click("button[type=submit]")
    expect(page.locator("#sign-in-error")).to_have_text("Wrong user name or password.")

    page.fill("#password", ADMIN_SECRET)
    page.click("button[type=submit]")

    expect(page).to_have_url(server.base_url + "/api-explorer")
    expect(page.locator("#operations-API-connect")).to_be_visible()


def test_signing_in_never_follows_a_return_path_off_the_server(
    page: Any, server: RunningServer
) -> None:
    """A link to the sign-in form with another site as `came_from` lands on the panel."""
    for came_from in ("//evil.example/", "https://evil.example/", "/\\evil.example/"):
        page.context.clear_cookies()
        page.goto(server.base_url + "/admin/sign_in?" + urlencode({"came_from": came_from}))
        page.fill("#username", ADMIN_USER)
        page.fill("#password", ADMIN_SECRET)
        page.click("button[type=submit]")
        expect(page).to_have_url(server.base_url + "/admin")


def test_the_servers_box_is_gone_and_calls_still_go_to_this_server(
    page: Any, server: RunningServer
) -> None:
    open_explorer(page, server)
    page.fill("#secret", SECRET)

    expect(page.locator(".swagger-ui .servers")).to_be_hidden()
    expect(page.get_by_text("Servers", exact=True)).to_be_hidden()
    _, health = try_it_out(page, "Operations-health")
    assert health == {"status": "ok"}


PHONE = {"width": 390, "height": 844}


def test_the_explorer_fits_a_phone_screen(page: Any, server: RunningServer) -> None:
    page.set_viewport_size(PHONE)
    open_explorer(page, server)

    for control in ("#secret", "#secret-form button", ".explorer-bar nav a"):
        expect(page.locator(control)).to_be_in_viewport()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    operation = page.locator("#operations-API-connect .opblock-summary").first
    operation.scroll_into_view_if_needed()
    box = operation.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    page.fill("#secret", SECRET)
    _, connected = try_it_out(page, "API-connect", {"username": "phone-user"})
    assert connected["username"] == "phone-user"
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
