"""The OpenAPI 3.0 document of `/openapi.json`, built by apispec from the registered views.

Each view declares its operation where it is defined (`@documented`, see
`channelstream.api.documented`): summary, schemas from `channelstream.schemas`, status codes,
examples. This module walks the views Pyramid registered (its introspector) and derives what
their registration already says: the path from the route, the methods from `request_method`,
the security and the refusals that go with it from the permission. What stays here is what
several views share: the error responses, the examples, the document's introduction.

The test suite checks that every route with a view is documented, that the document is valid
OpenAPI 3.0, that the examples match their schemas, and (with schemathesis, on a live server)
that real answers match the document.

Version 3.0.3, not 3.1: the Swagger UI that `swagger-ui-bundle` ships (4.15) renders 3.0 only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.field_converter import FieldConverterMixin
from marshmallow import fields
from pyramid.config import Configurator
from pyramid.interfaces import IRoutesMapper
from pyramid.request import Request
from pyramid.security import NO_PERMISSION_REQUIRED

from channelstream import __version__, schemas
from channelstream.api import DOCUMENTED_ROUTES, ROUTES
from channelstream.api.documented import (
    ADMIN_TAG,
    API_TAG,
    CLIENT_TAG,
    OPERATIONS_TAG,
    PAGES_TAG,
    Answer,
    Operation,
    answer,
    operations_of,
)
from channelstream.api.errors import SIGN_IN_REDIRECT_ROUTES
from channelstream.api.security import (
    ADMIN_PERMISSION,
    API_PERMISSION,
    METRICS_PERMISSION,
    TOKEN_HEADER,
)
from channelstream.close_codes import CloseCode

OPENAPI_VERSION = "3.0.3"
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")

Security = list[dict[str, list[str]]]
SIGNED: Security = [{"APIKeyHeader": []}]
ADMIN: Security = [{"AdminCookie": []}, {"APIKeyHeader": []}]
OPEN: Security = []

TAGS = {
    API_TAG: "Signed calls from your web app",
    CLIENT_TAG: "What browsers call with a conn_id",
    ADMIN_TAG: "Admin session or signed call",
    OPERATIONS_TAG: "Health checks, metrics and this document",
    PAGES_TAG: "HTML pages for people",
}


def introduction(client_paths: Iterable[str]) -> str:
    """The document's description; the client endpoints are the documented ones."""
    *others, last = [f"`{path}`" for path in client_paths] or ["none"]
    listed = f"{', '.join(others)} and {last}" if others else last
    return f"""\
A websocket server driven by a signed JSON REST API (Channelstream 0.7.1 compatible).

**Server API** (tag `{API_TAG}`): called by your web app, never by browsers. Each call comes
from an address in `allow_posting_from` and carries an itsdangerous `TimestampSigner` token in
the `{TOKEN_HEADER}` header: the request path (e.g. `/connect`) signed with the server's
`secret`, at most 60 seconds old. In Python:
`TimestampSigner(secret).sign("/connect").decode()`. Tokens of the literal `channelstream`
(what 0.7 clients sign) are accepted while `legacy_signatures` is on.

**Client API** (tag `{CLIENT_TAG}`): what browsers call with the `conn_id` the web app handed
them: {listed}. No signature.

**Admin API** (tag `{ADMIN_TAG}`): the admin panel's data; needs the admin session cookie (sign
in at `/admin/sign_in`) or a signed call.

Errors are JSON: 422 carries marshmallow's field errors, 401 is `{{"request": "Bad Signature"}}`,
every other error is `{{"error", "message", "code", "title"}}`. With `enforce_https` on, any
request that did not come over https gets 406.

In the API explorer (`/api-explorer`), type the server secret in the box at the top: the page
signs each request it sends for the path it calls. The secret never leaves the browser.
"""


CLOSE_CODES = {
    CloseCode.NORMAL: "`/disconnect` was called for this connection: stop",
    CloseCode.GOING_AWAY: "the server is shutting down: reconnect with the same conn_id",
    CloseCode.ORIGIN_NOT_ALLOWED: "the page's Origin is not in `allow_cors`: stop",
    CloseCode.MESSAGE_TOO_BIG: "a client frame was larger than `max_message_size`",
    CloseCode.TRY_AGAIN_LATER: "the cluster broker (Redis) is unreachable: reconnect later",
    CloseCode.UNKNOWN_CONNECTION: "unknown conn_id: get a new one from the web app",
    CloseCode.TOO_SLOW: "too slow (`max_queued_frames` overflowed): reconnect and catch up",
}
CLOSE_CODE_LIST = "\n".join(f"- `{int(code)}`: {text}" for code, text in CLOSE_CODES.items())

# --------------------------------------------------------------------------- examples

CONN_ID = "9a2f0c3e-7c1b-4a45-8f3e-2b1d6c5a4e10"
MESSAGE_UUID = "6c0a3f4e-1b2d-4c5e-8f9a-0b1c2d3e4f5a"
CHANNEL_UUID = "3f1e2d4c-5b6a-4798-8a7b-6c5d4e3f2a1b"
USER_UUID = "0e1d2c3b-4a59-4687-9a6b-5c4d3e2f1a0b"
NOW = "2026-11-27T18:29:03.766868"
LATER = "2026-11-27T18:30:12.004211"
SETTINGS_EXAMPLE = {
    "notify_presence": True,
    "store_history": True,
    "history_size": 10,
    "broadcast_presence_with_user_lists": False,
    "notify_state": False,
    "store_frames": True,
    "history_ttl": 0,
    "catchup_size": 100,
}
EPOCH_EXAMPLE = "4d7e0a52-9c3b-5f1e-8a2d-6b4c3e2f1a09"
MESSAGE_EXAMPLE = {
    "user": "bob",
    "message": {"text": "hello"},
    "channel": "lobby",
    "pm_users": [],
    "exclude_users": [],
    "no_history": False,
    "uuid": MESSAGE_UUID,
    "timestamp": NOW,
    "edited": None,
}
HISTORY_ENTRY_EXAMPLE = {**MESSAGE_EXAMPLE, "catchup": False, "type": "message", "seq": 7}
FRAME_EXAMPLE = {
    key: value
    for key, value in HISTORY_ENTRY_EXAMPLE.items()
    if key not in ("pm_users", "exclude_users", "no_history")
}


def channel_example(history: bool = True, users: bool = True) -> dict[str, Any]:
    return {
        "uuid": CHANNEL_UUID,
        "name": "lobby",
        "long_name": None,
        "settings": SETTINGS_EXAMPLE,
        "history": [HISTORY_ENTRY_EXAMPLE] if history else [],
        "last_active": NOW,
        "total_connections": 1 if users else 0,
        "total_users": 1 if users else 0,
        "users": ["alice"] if users else [],
    }


CHANNELS_INFO_EXAMPLE = {
    "channels": {"lobby": channel_example()},
    "users": [{"user": "alice", "state": {"status": "online"}}],
}
ADMIN_EXAMPLE = {
    "remembered_user_count": 1,
    "unique_user_count": 1,
    "total_connections": 1,
    "total_channels": 1,
    "total_messages": 3,
    "total_unique_messages": 1,
    "channels": {"lobby": channel_example()},
    "users": [
        {
            "user": "alice",
            "uuid": USER_UUID,
            "state": {"status": "online"},
            "connections": [CONN_ID],
        }
    ],
    "uptime": "2:03:04",
    "version": __version__,
    "uptime_seconds": 7384,
    "started_at": NOW,
    "frames_dropped": 0,
    "listeners": 1,
    "node_id": "5b0e6a0f0f2b4f4c9d2a8f1e3c7b9a10",
    "broker": {"broker": "memory", "commands_applied": 12},
    "connections": [
        {
            "conn_id": CONN_ID,
            "user": "alice",
            "channels": ["lobby"],
            "created": NOW,
            "last_active": LATER,
            "listeners": 1,
        }
    ],
    "webhooks": {
        "url": "https://app.example.com/channelstream/webhook",
        "sending": True,
        "queue_length": 0,
        "queue_max": 100000,
        "overflowed": 0,
        "last_delivered_at": LATER,
        "events_sent": 42,
        "events_dropped": 0,
        "last_error": None,
        "last_error_at": None,
    },
}


def error_example(status: int, error: str, title: str, message: str) -> dict[str, Any]:
    """An example of the error envelope (`ErrorSchema`)."""
    return {"error": error, "message": message, "code": f"{status} {title}", "title": title}


# --------------------------------------------------------------------------- shared answers

# `components/responses`: views and permissions name them (an `Answer` string).
ERROR_RESPONSES: dict[str, dict[str, Any]] = {
    "BadRequest": answer(
        schemas.ErrorSchema,
        error_example(
            400,
            "bad_request",
            "Bad Request",
            "Request body is not valid JSON: Expecting value: line 1 column 1",
        ),
        "The body is not valid JSON",
    ),
    "BadSignature": answer(
        schemas.BadSignatureSchema,
        {"request": "Bad Signature"},
        "The signature is invalid, expired or for another path",
    ),
    "Forbidden": answer(
        schemas.ErrorSchema,
        error_example(403, "forbidden", "Forbidden", "Missing x-channelstream-secret signature"),
        "No signature, or the caller's address is not in allow_posting_from",
    ),
    "CrossOrigin": answer(
        schemas.ErrorSchema,
        error_example(
            403, "forbidden", "Forbidden", "Cross-origin request (Origin http://example.com)"
        ),
        "With the admin cookie (not a signed call): not application/json, or not from this "
        "server's own origin (Origin, else Sec-Fetch-Site, else Referer)",
    ),
    "PayloadTooLarge": answer(
        schemas.ErrorSchema,
        {
            **error_example(
                413,
                "payload_too_large",
                "Request Entity Too Large",
                "Request body exceeds max_message_size (1048576 bytes)",
            ),
            "limit": "max_message_size",
        },
        "The body is larger than max_message_size, nests deeper than max_json_depth, or has "
        "an array or object of more than max_json_items entries (`limit` names which)",
    ),
    "UnsupportedCharset": answer(
        schemas.ErrorSchema,
        error_example(
            415,
            "unsupported_media_type",
            "Unsupported Media Type",
            "Request body must be JSON in UTF-8; charset 'utf-7' is not accepted",
        ),
        "The body declares a charset other than UTF-8 (JSON is UTF-8, RFC 8259)",
    ),
    "ValidationFailed": answer(
        schemas.ValidationErrorSchema,
        {"username": ["Missing data for required field."]},
        "The body does not match its schema (marshmallow's field errors)",
    ),
    "Unavailable": answer(
        schemas.ErrorSchema,
        error_example(
            503,
            "unavailable",
            "Service Unavailable",
            "The cluster broker is unavailable: connection refused",
        ),
        "The cluster broker is unreachable (or, on /connect, max_connections is reached)",
    ),
    "SignInRedirect": {
        "description": "Neither an admin session nor a signed call: redirected to the sign-in page",
        "headers": {"Location": {"schema": {"type": "string"}, "example": "/admin/sign_in"}},
    },
}

# The refusals of a view that reads a JSON body.
BODY_ERRORS: dict[str, Answer] = {
    "400": "BadRequest",
    "413": "PayloadTooLarge",
    "415": "UnsupportedCharset",
    "422": "ValidationFailed",
}
# Every signed call reads a JSON body (even GET /info) and may need the broker.
SIGNED_ERRORS: dict[str, Answer] = {
    **BODY_ERRORS,
    "401": "BadSignature",
    "403": "Forbidden",
    "503": "Unavailable",
}


def access(permission: str, route: str) -> tuple[Security, dict[str, Answer]]:
    """The security of a view with `permission` on `route`, and the refusals it brings (see
    `api.security`; a cookie is checked against the broker, hence 503)."""
    if permission == API_PERMISSION:
        return SIGNED, SIGNED_ERRORS
    if permission == ADMIN_PERMISSION:
        redirected = route in SIGN_IN_REDIRECT_ROUTES
        refused = {"302": "SignInRedirect"} if redirected else {"403": "Forbidden"}
        return ADMIN, {**refused, "401": "BadSignature", "503": "Unavailable"}
    if permission == METRICS_PERMISSION:  # or no credentials from `metrics_allow_from`
        return [*ADMIN, {}], {"401": "BadSignature", "403": "Forbidden", "503": "Unavailable"}
    if permission == NO_PERMISSION_REQUIRED:
        return OPEN, {}
    raise ValueError(f"No OpenAPI security is known for the permission {permission!r}")


# --------------------------------------------------------------------------- the document


def operation_object(
    operation: Operation, operation_id: str, permission: str, route: str
) -> dict[str, Any]:
    security, refusals = access(permission, route)
    responses = {**refusals, **operation.responses}
    built: dict[str, Any] = {
        "operationId": operation_id,
        "tags": [operation.tag],
        "summary": operation.summary,
        "security": security,
        "responses": dict(sorted(responses.items())),
    }
    if operation.description:
        built["description"] = operation.description
    if operation.query is not None:
        built["parameters"] = [{"in": "query", "schema": operation.query}]
    if operation.request is not None:
        built["requestBody"] = operation.request
    return built


def registered_operations(
    introspector: Any, routes: Mapping[str, str]
) -> dict[str, dict[str, dict[str, Any]]]:
    """`{path: {method: operation}}` of the documented views on `routes`, in routes order.

    A view taking several methods documents each (operationId `name_method` after the
    first); a view taking any method documents GET unless its operations name theirs."""
    by_route: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in routes}
    default = introspector.get("default permission", None)
    for entry in introspector.get_category("views"):
        view = entry["introspectable"]
        route = view["route_name"]
        function = getattr(view["callable"], view["attr"]) if view["attr"] else view["callable"]
        if route not in by_route or not operations_of(function):
            continue
        permission = next(
            (i["value"] for i in entry["related"] if i.category_name == "permissions"),
            default["value"] if default is not None else NO_PERMISSION_REQUIRED,
        )
        taken = view["request_methods"]  # None: any method
        taken = (taken,) if isinstance(taken, str) else taken
        for operation in operations_of(function):
            if operation.method:
                methods = [operation.method]
            else:
                methods = [method for method in HTTP_METHODS if method in (taken or ("GET",))]
            for index, method in enumerate(methods):
                if taken is not None and method not in taken:
                    raise ValueError(f"{view.title}: documents {method}, takes {taken}")
                name = operation.operation_id or getattr(function, "__name__", route)
                name = f"{name}_{method.lower()}" if index else name
                by_route[route][method.lower()] = operation_object(
                    operation, name, permission, route
                )
    order = [method.lower() for method in HTTP_METHODS]
    return {
        routes[name]: dict(sorted(methods.items(), key=lambda item: order.index(item[0])))
        for name, methods in by_route.items()
        if methods
    }


def package_introspector() -> Any:
    """An introspector holding this package's views alone, registered as `api.includeme` does
    (for building the document without an app)."""
    config = Configurator()
    for name, pattern in ROUTES.items():
        config.add_route(name, pattern)
    config.scan("channelstream.api.views")
    config.include("channelstream.api.views.index")
    config.commit()
    return config.registry.introspector


def with_fields_converted(item: Any, converter: FieldConverterMixin) -> Any:
    """A copy of an operation in which marshmallow fields are OpenAPI schemas (apispec
    resolves schemas itself, not fields)."""
    if isinstance(item, fields.Field):
        return converter.field2property(item)
    if isinstance(item, Mapping):
        return {key: with_fields_converted(value, converter) for key, value in item.items()}
    if isinstance(item, list):
        return [with_fields_converted(value, converter) for value in item]
    return item


def _custom_field_openapi(self: Any, field: fields.Field, **kwargs: Any) -> dict[str, Any]:
    """Fields that carry their own OpenAPI description (`openapi` class attribute)."""
    return dict(getattr(field, "openapi", None) or {})


def schema_name(schema: Any) -> str:
    cls = schema if isinstance(schema, type) else type(schema)
    return cls.__name__.removesuffix("Schema")


def build_document(routes: Mapping[str, str], introspector: Any = None) -> dict[str, Any]:
    """The document of the views registered on `routes` (`{name: pattern}`: paths as the app
    mounts them, without any route prefix; the caller sets `servers`). `introspector`: the
    app's (`registry.introspector`); by default, one with this package's views."""
    operations = registered_operations(introspector or package_introspector(), routes)
    client_paths = [
        path
        for path, methods in operations.items()
        if any(CLIENT_TAG in operation["tags"] for operation in methods.values())
    ]
    plugin = MarshmallowPlugin(schema_name_resolver=schema_name)
    spec = APISpec(
        title="Channelstream API",
        version=__version__,
        openapi_version=OPENAPI_VERSION,
        plugins=[plugin],
        info={"description": introduction(client_paths)},
        tags=[{"name": name, "description": text} for name, text in TAGS.items()],
    )
    converter = plugin.converter
    assert converter is not None
    converter.add_attribute_function(_custom_field_openapi)
    spec.components.security_scheme(
        "APIKeyHeader",
        {
            "type": "apiKey",
            "in": "header",
            "name": TOKEN_HEADER,
            "description": "An itsdangerous TimestampSigner token of the request path, signed "
            "with the server's secret (at most 60 s old).",
        },
    )
    spec.components.security_scheme(
        "AdminCookie",
        {
            "type": "apiKey",
            "in": "cookie",
            "name": "auth_tkt",
            "description": "The admin session, set by signing in at /admin/sign_in.",
        },
    )
    for name, response in ERROR_RESPONSES.items():
        spec.components.response(name, with_fields_converted(response, converter))
    for path, methods in operations.items():
        spec.path(path=path, operations=with_fields_converted(methods, converter))
    return spec.to_dict()


def document_for(request: Request) -> dict[str, Any]:
    """The document as this request sees the API: the app's registered views, and `servers`
    where the routes are mounted (the host app's route prefix and script name included)."""
    registry = request.registry
    document = getattr(registry, "channelstream_openapi", None)
    if document is None:
        # an app configured without introspection has none to walk: this package's views
        introspector = registry.introspector
        introspector = introspector if introspector.get_category("views") else None
        mapper = registry.getUtility(IRoutesMapper)  # "/" only where the app registered it
        routes = {name: path for name, path in DOCUMENTED_ROUTES.items() if mapper.get_route(name)}
        document = registry.channelstream_openapi = build_document(routes, introspector)
    base = request.route_path("connect").removesuffix(ROUTES["connect"])
    return {**document, "servers": [{"url": base or "/"}]}
