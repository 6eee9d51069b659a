"""`@documented` and the OpenAPI builder on a small Pyramid app of their own: each view says
what it answers; paths, methods and security come from how the views are registered."""

from __future__ import annotations

from typing import Any

import pytest
from marshmallow import fields
from openapi_spec_validator import validate
from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.view import view_config, view_defaults

from channelstream.api.documented import (
    ADMIN_TAG,
    API_TAG,
    CLIENT_TAG,
    answer,
    documented,
    operations_of,
    request_body,
)
from channelstream.api.openapi import ADMIN, OPEN, SIGNED, build_document
from channelstream.api.security import ADMIN_PERMISSION, API_PERMISSION
from channelstream.schemas import DisconnectBodySchema, StatusSchema

ROUTES = {
    "things": "/things",
    "any": "/any",
    "admin_json": "/admin.json",  # an admin route that redirects to the sign-in form
    "openapi": "/doc.json",  # one that answers 403
    "plain": "/plain",
    "elsewhere": "/elsewhere",
}
STATUS = answer(StatusSchema, {"status": "ok"})


@view_defaults(permission=API_PERMISSION)
class Things:
    def __init__(self, context: Any, request: Request) -> None:
        self.request = request

    @view_config(route_name="things", request_method=("GET", "POST"))
    @documented("Things", tag=API_TAG, responses={"200": STATUS})
    def things(self) -> Any: ...

    @view_config(route_name="any", permission=NO_PERMISSION_REQUIRED)
    @documented(
        "Read", tag=CLIENT_TAG, method="GET", operation_id="read", responses={"200": STATUS}
    )
    @documented(
        "Write",
        tag=CLIENT_TAG,
        method="POST",
        request=request_body(DisconnectBodySchema, {"conn_id": "x"}, required=False),
        responses={"200": answer(fields.Boolean(), True)},
    )
    def anything(self) -> Any: ...


@view_config(route_name="admin_json", permission=ADMIN_PERMISSION)
@documented("Admin figures", tag=ADMIN_TAG, responses={"200": STATUS})
def admin_json(request: Request) -> Any: ...


@view_config(route_name="openapi", permission=ADMIN_PERMISSION)
@documented("A document", tag=ADMIN_TAG, responses={"200": STATUS})
def document(request: Request) -> Any: ...


@view_config(route_name="plain")  # no permission: the default one
@documented("Plain", tag=API_TAG, responses={"200": STATUS})
def plain(request: Request) -> Any: ...


@view_config(route_name="elsewhere")
def undocumented(request: Request) -> Any: ...


def introspector(default_permission: str | None = None) -> Any:
    config = Configurator()
    if default_permission:
        config.set_default_permission(default_permission)
    for name, pattern in ROUTES.items():
        config.add_route(name, pattern)
    config.scan(__name__)
    config.commit()
    return config.registry.introspector


@pytest.fixture(scope="module")
def document_of_this_module() -> dict[str, Any]:
    return build_document(ROUTES, introspector(API_PERMISSION))


def test_the_decorator_records_operations_in_the_order_written_and_returns_the_view() -> None:
    assert [operation.summary for operation in operations_of(Things.anything)] == [
        "Read",
        "Write",
    ]
    assert operations_of(Things.anything)[1].method == "POST"
    assert operations_of(undocumented) == ()


def test_paths_and_methods_come_from_the_routes_and_the_views_request_methods(
    document_of_this_module: dict[str, Any],
) -> None:
    paths = document_of_this_module["paths"]

    assert list(paths) == ["/things", "/any", "/admin.json", "/doc.json", "/plain"]
    assert list(paths["/things"]) == ["get", "post"]
    assert paths["/things"]["get"]["operationId"] == "things"
    assert paths["/things"]["post"]["operationId"] == "things_post"
    assert list(paths["/any"]) == ["get", "post"]
    assert paths["/any"]["get"]["operationId"] == "read"
    assert paths["/any"]["post"]["operationId"] == "anything"
    assert list(paths["/admin.json"]) == ["get"]  # any method: GET unless the view says
    validate(document_of_this_module)


def test_security_and_refusals_follow_the_permission(
    document_of_this_module: dict[str, Any],
) -> None:
    paths = document_of_this_module["paths"]
    signed = paths["/things"]["get"]
    admin = paths["/admin.json"]["get"]

    assert signed["security"] == SIGNED
    assert set(signed["responses"]) == {"200", "400", "401", "403", "413", "415", "422", "503"}
    assert paths["/plain"]["get"]["security"] == SIGNED  # the default permission
    assert paths["/any"]["get"]["security"] == OPEN
    assert set(paths["/any"]["get"]["responses"]) == {"200"}
    assert admin["security"] == ADMIN
    assert set(admin["responses"]) == {"200", "302", "401", "503"}
    assert set(paths["/doc.json"]["get"]["responses"]) == {"200", "401", "403", "503"}


def test_undocumented_views_and_routes_not_asked_for_are_left_out() -> None:
    document = build_document({"things": "/things", "elsewhere": "/elsewhere"}, introspector())

    assert list(document["paths"]) == ["/things"]


def test_fields_and_schema_instances_become_openapi_schemas(
    document_of_this_module: dict[str, Any],
) -> None:
    write = document_of_this_module["paths"]["/any"]["post"]

    assert write["responses"]["200"]["content"]["application/json"]["schema"] == {"type": "boolean"}
    assert write["requestBody"]["required"] is False
    assert write["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/DisconnectBody"
    }


def test_the_introduction_lists_the_documented_client_endpoints(
    document_of_this_module: dict[str, Any],
) -> None:
    assert (
        "what browsers call with the `conn_id` the web app handed\nthem: `/any`."
        in (document_of_this_module["info"]["description"])
    )


def test_documenting_a_method_the_view_does_not_take_is_an_error() -> None:
    @documented("Deleting", tag=API_TAG, method="DELETE", responses={"200": STATUS})
    def delete(request: Request) -> Any: ...

    config = Configurator()
    config.add_route("things", "/things")
    config.add_view(
        delete,
        route_name="things",
        request_method="GET",
        permission=API_PERMISSION,
    )
    config.commit()

    with pytest.raises(ValueError, match="documents DELETE"):
        build_document({"things": "/things"}, config.registry.introspector)
