"""/openapi.json: a valid OpenAPI 3.0 document covering every route, with examples that match
their schemas, and real answers that match it too."""

from __future__ import annotations

import json
from typing import Any

import pytest
import webtest
from openapi_spec_validator import validate
from pyramid.config import Configurator
from pyramid.security import NO_PERMISSION_REQUIRED

from channelstream import encoding
from channelstream.api import DOCUMENTED_ROUTES, ROUTES
from channelstream.api.openapi import OPENAPI_VERSION, build_document
from tests.functional.conftest import LOCALHOST, ApiClient
from tests.openapi_check import check, check_answer, resolve

HTTP_METHODS = ("get", "post", "put", "patch", "delete")
ERROR_BODIES = {"400": "Error", "401": "BadSignature", "403": "Error", "422": "ValidationError"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_document(DOCUMENTED_ROUTES)  # the app's own routes ("/") included


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]


def views_by_route(client: ApiClient) -> dict[str, set[str] | None]:
    """{route name: methods its views take (None: any)} for every route with a view, read
    from Pyramid's introspector (static file routes left out)."""
    introspector = client.testapp.app.registry.introspector
    routes: dict[str, set[str] | None] = {}
    for view in introspector.get_category("views"):
        intr = view["introspectable"]
        name = intr["route_name"]
        if name is None or name.startswith("__"):
            continue  # exception views; static views
        methods = intr["request_methods"]
        if methods is None:
            routes[name] = None
        elif name not in routes or routes[name] is not None:
            taken = {methods} if isinstance(methods, str) else set(methods)
            routes[name] = (routes.get(name) or set()) | {m.lower() for m in taken} - {"head"}
    return routes


def test_the_document_is_valid_openapi_3_0(document: dict[str, Any]) -> None:
    validate(document)

    assert document["openapi"] == OPENAPI_VERSION == "3.0.3"
    assert document["info"]["title"] == "Channelstream API"


def test_every_route_with_a_view_is_documented_with_each_of_its_methods(
    client: ApiClient, document: dict[str, Any]
) -> None:
    routes = views_by_route(client)
    patterns = {
        route.name: route.pattern for route in client.testapp.app.routes_mapper.get_routes()
    }

    assert set(routes) >= {"connect", "message", "listen", "ws", "admin_json", "openapi"}
    for name, methods in routes.items():
        path = patterns[name]
        assert path in document["paths"], f"route {name} ({path}) has a view but no docs"
        documented = set(document["paths"][path]) & set(HTTP_METHODS)
        if methods is None:
            assert documented, f"{path} takes any method but documents none"
        else:
            assert methods <= documented, f"{path}: {sorted(methods - documented)} not documented"


def test_every_documented_path_is_a_route(client: ApiClient, document: dict[str, Any]) -> None:
    patterns = {route.pattern for route in client.testapp.app.routes_mapper.get_routes()}

    assert set(document["paths"]) <= patterns


def test_the_served_document_is_built_from_the_apps_registered_views(
    client: ApiClient, document: dict[str, Any]
) -> None:
    served = client.call("GET", "/openapi.json").json
    del served["servers"]

    assert served == json.loads(encoding.dumps(document))


def test_each_operations_security_is_its_views_permission(
    client: ApiClient, document: dict[str, Any]
) -> None:
    expected: dict[str, list[dict[str, list[str]]]] = {
        "api": [{"APIKeyHeader": []}],
        "admin": [{"AdminCookie": []}, {"APIKeyHeader": []}],
        "metrics": [{"AdminCookie": []}, {"APIKeyHeader": []}, {}],
        NO_PERMISSION_REQUIRED: [],
    }
    introspector = client.testapp.app.registry.introspector
    checked = 0
    for view in introspector.get_category("views"):
        route = view["introspectable"]["route_name"]
        if route not in ROUTES:
            continue
        permission = next(i["value"] for i in view["related"] if i.category_name == "permissions")
        for operation in document["paths"][ROUTES[route]].values():
            assert operation["security"] == expected[permission], route
            checked += 1
    assert checked >= len(ROUTES)


def test_the_introduction_names_every_client_endpoint(document: dict[str, Any]) -> None:
    paths = {
        path for path, _, operation in operations(document) if "Client API" in operation["tags"]
    }

    assert paths == {"/ws", "/sse", "/listen", "/disconnect"}
    for path in paths:
        assert f"`{path}`" in document["info"]["description"]


def test_every_operation_has_an_id_a_tag_a_summary_and_its_security(
    document: dict[str, Any],
) -> None:
    ids = []
    for path, method, operation in operations(document):
        ids.append(operation["operationId"])
        assert operation["tags"] and operation["summary"], f"{method} {path}"
        assert "security" in operation, f"{method} {path} does not say who may call it"
    assert len(ids) == len(set(ids)), "operationIds must be unique"


def test_the_secret_header_is_the_security_scheme_of_the_server_api(
    document: dict[str, Any],
) -> None:
    schemes = document["components"]["securitySchemes"]

    assert schemes["APIKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "x-channelstream-secret",
        "description": schemes["APIKeyHeader"]["description"],
    }
    assert schemes["AdminCookie"]["in"] == "cookie"
    for path in ("/connect", "/subscribe", "/unsubscribe", "/user_state", "/channel_config"):
        assert document["paths"][path]["post"]["security"] == [{"APIKeyHeader": []}]
    assert document["paths"]["/listen"]["get"]["security"] == []
    assert {"APIKeyHeader": []} in document["paths"]["/admin/admin.json"]["get"]["security"]


def test_server_api_operations_document_their_error_bodies(document: dict[str, Any]) -> None:
    for path, method, operation in operations(document):
        if "API" not in operation["tags"]:
            continue
        for status, schema_name in ERROR_BODIES.items():
            response = resolve(document, operation["responses"][status])
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": f"#/components/schemas/{schema_name}"}, f"{method} {path}"


def test_the_client_endpoints_and_the_websocket_are_described(document: dict[str, Any]) -> None:
    ws = document["paths"]["/ws"]["get"]

    assert "101" in ws["responses"]
    for code in ("1000", "1001", "1008", "1009", "4001", "4002"):
        assert code in ws["description"]
    assert document["paths"]["/listen"]["get"]["parameters"][0]["name"] == "conn_id"
    assert set(document["paths"]["/disconnect"]) >= {"get", "post"}


def test_every_operation_has_examples_that_match_their_schemas(
    document: dict[str, Any],
) -> None:
    for path, method, operation in operations(document):
        request = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if request is not None:
            assert "example" in request, f"{method} {path}: no request example"
            check(document, request["schema"], request["example"], f"{method} {path} request")
        examples = 0
        for status, response in operation["responses"].items():
            content = resolve(document, response).get("content", {}).get("application/json")
            if content and "example" in content:
                examples += 1
                check(
                    document,
                    content["schema"],
                    content["example"],
                    f"{method} {path} {status} example",
                )
        json_ok = any(
            "application/json" in resolve(document, r).get("content", {})
            for s, r in operation["responses"].items()
            if s.startswith("2")
        )
        assert examples or not json_ok, f"{method} {path}: no response example"


def test_request_examples_pass_the_servers_own_validation(
    client: ApiClient, document: dict[str, Any]
) -> None:
    """The request examples are accepted by the real views (422 would mean they lie)."""
    conn_id = client.connect("alice", channels=["lobby"])["conn_id"]
    for path, method, operation in operations(document):
        if "API" not in operation["tags"] or "requestBody" not in operation:
            continue
        example = operation["requestBody"]["content"]["application/json"]["example"]
        if isinstance(example, dict) and "conn_id" in example:
            example = {**example, "conn_id": conn_id}
        response = client.call(method.upper(), path, example)
        check_answer(document, path, method, 200, response.json)


def test_real_answers_match_the_document(polling_client: ApiClient) -> None:
    """Answers with history, presence, private messages and state, which a generated run
    rarely reaches, checked against the document the server itself serves."""
    client = polling_client
    document = client.call("GET", "/openapi.json").json
    configs = {
        "room": {"store_history": True, "notify_presence": True, "notify_state": True},
    }
    bob = client.connect("bob", channels=["room"], channel_configs=configs)
    alice = client.post(
        "/connect",
        {
            "username": "alice",
            "channels": ["room", "other"],
            "user_state": {"mood": "fine", "age": 7, "pi": 3.5, "ok": True, "none": None},
            "state_public_keys": ["mood"],
            "channel_configs": {
                "room": {"broadcast_presence_with_user_lists": True},
                "other": {"history_size": 0},
            },
        },
    ).json
    check_answer(document, "/connect", "post", 200, alice)
    sent = client.publish(
        {"channel": "room", "user": "alice", "message": {"text": "hi"}},
        {"pm_users": ["bob"], "user": "alice", "message": {"text": "psst"}},
        {"channel": "room", "user": "bob", "timestamp": "2026-01-01T10:00:00+02:00"},
        {"user": "nobody"},
    )
    check_answer(document, "/message", "post", 200, sent)
    edited = client.call(
        "PATCH", "/message", [{"uuid": sent[0]["uuid"], "channel": "room", "message": {"x": 1}}]
    ).json
    check_answer(document, "/message", "patch", 200, edited)
    state = client.post(
        "/user_state", {"user": "alice", "user_state": {"mood": "great"}, "state_public_keys": []}
    ).json
    check_answer(document, "/user_state", "post", 200, state)
    subscribed = client.post("/subscribe", {"conn_id": bob["conn_id"], "channels": ["x"]}).json
    check_answer(document, "/subscribe", "post", 200, subscribed)
    unsubscribed = client.post(
        "/unsubscribe", {"conn_id": bob["conn_id"], "channels": ["x", "nope"]}
    ).json
    check_answer(document, "/unsubscribe", "post", 200, unsubscribed)
    configured = client.post("/channel_config", {"room": {"history_size": 5}}).json
    check_answer(document, "/channel_config", "post", 200, configured)
    for method in ("GET", "POST"):
        check_answer(document, "/info", method, 200, client.call(method, "/info").json)
    info = client.info(return_public_state=True, include_history=False)
    check_answer(document, "/info", "post", 200, info)
    frames = client.get("/listen", query=f"conn_id={bob['conn_id']}").json
    assert {frame["type"] for frame in frames} >= {"message", "presence", "user_state_change"}
    check_answer(document, "/listen", "get", 200, frames)
    admin = client.call("GET", "/admin/admin.json").json
    check_answer(document, "/admin/admin.json", "get", 200, admin)
    deleted = client.call("DELETE", "/message", [{"uuid": sent[0]["uuid"], "channel": "room"}])
    check_answer(document, "/message", "delete", 200, deleted.json)
    gone = client.post("/disconnect", {"conn_id": alice["conn_id"]}, signed=False).json
    check_answer(document, "/disconnect", "post", 200, gone)
    for path in ("/health", "/ready"):
        check_answer(document, path, "get", 200, client.get(path).json)


@pytest.mark.parametrize(
    ("status", "path", "body", "signed"),
    [
        (400, "/connect", None, True),
        (401, "/connect", {"username": "a"}, "bad"),
        (403, "/connect", {"username": "a"}, False),
        (422, "/connect", {}, True),
        (422, "/message", {"not": "a list"}, True),
        (422, "/channel_config", {"c": {"history_size": -1}}, True),
    ],
)
def test_error_answers_match_the_document(
    client: ApiClient, document: dict[str, Any], status: int, path: str, body: Any, signed: Any
) -> None:
    kwargs: dict[str, Any] = {"status": status}
    if body is None:
        kwargs["raw_body"] = b"{not json"
    if signed == "bad":
        kwargs["token"] = "bad.token.here"
    elif not signed:
        kwargs["signed"] = False
    response = client.call("POST", path, body, **kwargs)

    check_answer(document, path, "post", status, response.json)


# ----------------------------------------------------------------------------- access


def test_anonymous_callers_get_403_as_in_071(client: ApiClient) -> None:
    response = client.call("GET", "/openapi.json", signed=False, status=403)

    assert response.json["error"] == "forbidden"


def test_a_signed_call_gets_the_document(client: ApiClient) -> None:
    response = client.call("GET", "/openapi.json")

    assert response.content_type == "application/json"
    assert response.json["servers"] == [{"url": "/"}]
    validate(response.json)


def test_a_bad_signature_is_401(client: ApiClient) -> None:
    client.call("GET", "/openapi.json", token="x.y.z", status=401)


def test_a_signature_from_a_disallowed_address_is_403(client: ApiClient) -> None:
    client.call("GET", "/openapi.json", environ={"REMOTE_ADDR": "192.0.2.1"}, status=403)


def test_the_admin_session_gets_the_document(admin_client: ApiClient) -> None:
    response = admin_client.call("GET", "/openapi.json", signed=False)

    assert response.json["openapi"] == "3.0.3"


def test_servers_point_at_the_route_prefix_of_a_host_app() -> None:
    config = Configurator(settings={"channelstream.secret": "s"})
    config.include("channelstream", route_prefix="/cs")
    app = config.make_wsgi_app()
    try:
        client = ApiClient(webtest.TestApp(app, extra_environ={"REMOTE_ADDR": LOCALHOST}), "s")
        document = client.call("GET", "/cs/openapi.json").json
        assert document["servers"] == [{"url": "/cs"}]
        assert "/connect" in document["paths"]
        explorer = client.call("GET", "/cs/api-explorer")
        assert 'src="static/swagger-ui/swagger-ui-bundle.js"' in explorer.text
        client.get("/cs/static/swagger-ui/swagger-ui-bundle.js")
    finally:
        app.registry.channelstream_node.stop()
