"""The API explorer and admin pages and their files: served from this server, nothing from
outside (the browser tests in tests/browser/ check the same in a real browser)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.functional.conftest import ADMIN_SECRET, ADMIN_USER, ApiClient

# src="..." / href="..." / url(...) / import ... from "..."
REFERENCE = re.compile(
    r"""(?:src|href)\s*=\s*["']([^"']+)["']|url\(\s*["']?([^"')]+)|from\s+["']([^"']+)["']"""
)
OUR_FILES = [
    "/static/apiexplorer/explorer.js",
    "/static/apiexplorer/signer.js",
    "/static/apiexplorer/explorer.css",
    "/static/admin/admin.js",
    "/static/admin/admin.css",
]
SWAGGER_FILES = ["/static/swagger-ui/swagger-ui-bundle.js", "/static/swagger-ui/swagger-ui.css"]


def references(text: str) -> list[str]:
    return [next(group for group in match.groups() if group) for match in REFERENCE.finditer(text)]


def assert_local(text: str, where: str) -> None:
    for reference in references(text):
        assert "//" not in reference, f"{where} loads {reference} from elsewhere"
    assert "fonts.googleapis" not in text and "cdnjs" not in text and "unpkg" not in text


@pytest.mark.parametrize("path", ["/admin", "/api-explorer"])
def test_pages_load_only_files_of_this_server(admin_client: ApiClient, path: str) -> None:
    page = admin_client.get(path)

    assert page.content_type == "text/html"
    assert_local(page.text, path)
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    for reference in references(page.text):
        if not reference.startswith(("#", "admin", "api-explorer", "data:")):
            admin_client.get("/" + reference)  # every file it names is served (200)


def test_the_sign_in_page_loads_only_files_of_this_server(client: ApiClient) -> None:
    page = client.get("/admin/sign_in")

    assert_local(page.text, "/admin/sign_in")
    assert "../static/admin/admin.css" in page.text
    client.get("/static/admin/admin.css")


@pytest.mark.parametrize("path", OUR_FILES)
def test_our_scripts_and_styles_are_public_and_local(client: ApiClient, path: str) -> None:
    response = client.get(path)

    assert response.content_type in ("text/javascript", "application/javascript", "text/css")
    assert_local(response.text, path)
    assert "max-age=3600" in response.headers["Cache-Control"]


@pytest.mark.parametrize("path", SWAGGER_FILES)
def test_swagger_ui_comes_from_the_swagger_ui_bundle_package(client: ApiClient, path: str) -> None:
    response = client.get(path)

    assert len(response.body) > 50_000


def test_the_explorer_page_wires_swagger_ui_to_the_document_and_the_signer(
    admin_client: ApiClient,
) -> None:
    page = admin_client.get("/api-explorer").text
    script = admin_client.get("/static/apiexplorer/explorer.js").text

    assert 'id="secret"' in page and 'type="password"' in page
    assert 'url: "openapi.json"' in script
    assert "requestInterceptor: signRequest" in script
    assert "validatorUrl: null" in script  # no badge from validator.swagger.io
    assert 'import { sign } from "./signer.js"' in script


# ----------------------------------------------------------------------------- GET /

INDEX_LINKS = ["api-explorer", "admin", "openapi.json", "health", "ready"]


def test_the_home_page_links_the_servers_pages_and_loads_only_its_files(client: ApiClient) -> None:
    page = client.get("/")

    assert page.content_type == "text/html"
    assert_local(page.text, "/")
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    links = [ref for ref in references(page.text) if not ref.startswith(("static/", "data:"))]
    assert links == INDEX_LINKS
    client.get("/static/admin/admin.css")


@pytest.mark.parametrize(
    ("link", "status"),
    [("api-explorer", 302), ("admin", 302), ("openapi.json", 403), ("health", 200), ("ready", 200)],
)
def test_no_link_of_the_home_page_is_dead(client: ApiClient, link: str, status: int) -> None:
    """Relative links, resolved against "/": the sign-in pages redirect, the document asks
    for a signature, the checks answer."""
    client.get("/" + link, status=status)


def test_under_x_script_name_the_home_page_answers_at_the_prefix(client: ApiClient) -> None:
    page = client.get("/cs/", headers={"X-Script-Name": "/cs"})
    redirect = client.get("/cs/api-explorer", headers={"X-Script-Name": "/cs"}, status=302)

    assert 'href="api-explorer"' in page.text  # relative: /cs/api-explorer from /cs/
    assert redirect.headers["Location"] == "/cs/admin/sign_in?came_from=%2Fcs%2Fapi-explorer"


def test_the_home_page_is_documented_with_the_other_pages(client: ApiClient) -> None:
    document = client.call("GET", "/openapi.json").json

    operation = document["paths"]["/"]["get"]
    assert operation["tags"] == ["Pages"] and operation["security"] == []
    assert "text/html" in operation["responses"]["200"]["content"]


# ------------------------------------------------------- signing in returns to the page

UNSAFE_RETURN_PATHS = [
    "//evil.example",
    "https://evil.example/",
    "/\\evil.example",
    "\\\\evil.example",
    "/admin\\..\\evil",
    "/\t/evil.example",
    "/ /evil.example",
    "/\r\nSet-Cookie: x=y",
    "/x\x00",
    "/\x7f",
    "/é",
    "javascript:alert(1)",
    "evil.example/x",
    "api-explorer",
    " /api-explorer",
    "/" + "a" * 2000,
]


def sign_in_returning(client: ApiClient, came_from: str, password: str = ADMIN_SECRET) -> Any:
    form = {"username": ADMIN_USER, "password": password, "came_from": came_from}
    return client.testapp.post("/admin/sign_in", form, expect_errors=True)


def test_the_explorer_sends_anonymous_visitors_to_sign_in_and_back(client: ApiClient) -> None:
    redirect = client.get("/api-explorer", status=302)
    form = client.get(redirect.headers["Location"])

    assert redirect.headers["Location"] == "/admin/sign_in?came_from=%2Fapi-explorer"
    assert 'name="came_from" id="came-from" value="/api-explorer"' in form.text
    signed_in = sign_in_returning(client, "/api-explorer")
    assert signed_in.status_int == 302
    assert signed_in.headers["Location"] == "/api-explorer"
    client.get("/api-explorer")  # 200 with the session


def test_a_wrong_password_keeps_where_to_return(client: ApiClient) -> None:
    page = sign_in_returning(client, "/api-explorer", password="wrong")

    assert page.status_int == 200
    assert 'value="/api-explorer"' in page.text


def test_without_a_return_path_signing_in_opens_the_admin_panel(client: ApiClient) -> None:
    assert sign_in_returning(client, "").headers["Location"] == "/admin"


@pytest.mark.parametrize("came_from", UNSAFE_RETURN_PATHS)
def test_signing_in_never_redirects_off_the_server(client: ApiClient, came_from: str) -> None:
    signed_in = sign_in_returning(client, came_from)

    assert signed_in.status_int == 302
    assert signed_in.headers["Location"] == "/admin"


@pytest.mark.parametrize("came_from", UNSAFE_RETURN_PATHS)
def test_the_form_drops_an_unsafe_return_path(client: ApiClient, came_from: str) -> None:
    form = client.get("/admin/sign_in", query=urlencode({"came_from": came_from}))

    assert 'name="came_from" id="came-from" value=""' in form.text
    assert "evil" not in form.text
