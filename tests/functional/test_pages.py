"""The API explorer and admin pages and their files: served from this server, nothing from
outside (the browser tests in tests/browser/ check the same in a real browser)."""

from __future__ import annotations

import re

import pytest

from tests.functional.conftest import ApiClient

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
