"""/openapi.json and /api-explorer (Swagger UI from local files; admin only, as in 0.7.1)."""

from __future__ import annotations

from typing import Any

from marshmallow import fields
from pyramid.response import Response
from pyramid.view import view_config, view_defaults

from channelstream.api.documented import OPERATIONS_TAG, PAGES_TAG, answer, documented, html_page
from channelstream.api.openapi import document_for
from channelstream.api.security import ADMIN_PERMISSION
from channelstream.api.views import NodeView, package_text, page_response

EXPLORER_PACKAGE = "channelstream.apiexplorer"


@view_defaults(permission=ADMIN_PERMISSION, request_method="GET")
class DocsViews(NodeView):
    @view_config(route_name="openapi", renderer="json")
    @documented(
        "This document",
        tag=OPERATIONS_TAG,
        responses={"200": answer(fields.Dict(), description="OpenAPI 3.0 document")},
    )
    def openapi(self) -> dict[str, Any]:
        return document_for(self.request)

    @view_config(route_name="api_explorer")
    @documented("The API explorer (Swagger UI)", tag=PAGES_TAG, responses={"200": html_page()})
    def api_explorer(self) -> Response:
        return page_response(package_text(EXPLORER_PACKAGE, "index.html"))
