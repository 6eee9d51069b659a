"""`GET /`: a page linking the server's other pages, so a first visit finds its way.

Registered only where channelstream is its own app (`channelstream.app.make_app` includes this
module); in a host Pyramid app (`config.include("channelstream")`), "/" is the host's. Its
links are relative, like those of the admin and explorer pages, so they hold under
X-Script-Name.
"""

from __future__ import annotations

from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response
from pyramid.security import NO_PERMISSION_REQUIRED

from channelstream.api import OWN_APP_ROUTES
from channelstream.api.documented import PAGES_TAG, documented, html_page
from channelstream.api.views import package_text, page_response

INDEX_ROUTE = "index"


@documented(
    "This server's home page: links to the API explorer, the admin panel and /health",
    tag=PAGES_TAG,
    operation_id="index",
    description="Only where channelstream is its own app: under `config.include` in a host "
    "Pyramid app, `/` is the host's.",
    responses={"200": html_page()},
)
def index(request: Request) -> Response:
    """Public: it links pages, and shows nothing of the server's state."""
    return page_response(package_text("channelstream", "static/index.html"))


def includeme(config: Configurator) -> None:
    config.add_route(INDEX_ROUTE, OWN_APP_ROUTES[INDEX_ROUTE])
    config.add_view(
        index, route_name=INDEX_ROUTE, request_method="GET", permission=NO_PERMISSION_REQUIRED
    )
