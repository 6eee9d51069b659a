"""What the OpenAPI document says about a view, declared on the view next to its `@view_config`.

`@documented(...)` records an `Operation` on the view function and changes nothing else. The
document builder (`channelstream.api.openapi`) finds the views through Pyramid's introspector
and takes from their registration what it already says: the path (the route), the methods
(`request_method`), the security scheme and its refusals (the permission). So adding an
endpoint means its route, its view and its schemas; no second list of the API to keep.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from marshmallow import Schema, fields

JSON = "application/json"
HTML = "text/html"
FORM = "application/x-www-form-urlencoded"

API_TAG = "API"
CLIENT_TAG = "Client API"
ADMIN_TAG = "Admin API"
OPERATIONS_TAG = "Operations"
PAGES_TAG = "Pages"

# The shape of a body: a schema (class, or instance for `many=True` / `only=`), or a field for
# what is not an object of named fields (`{channel: config}`, `true`, text).
Shape = type[Schema] | Schema | fields.Field
# An answer: an OpenAPI response object, or the name of one in `components/responses`.
Answer = dict[str, Any] | str

View = TypeVar("View", bound=Callable[..., Any])
OPERATIONS_ATTRIBUTE = "__channelstream_openapi__"


@dataclass(frozen=True)
class Operation:
    """One documented operation of a view. The refusals its permission brings (401, 403, ...)
    are added by the builder; `responses` holds the view's own answers."""

    summary: str
    tag: str
    responses: Mapping[str, Answer]
    description: str = ""
    operation_id: str = ""  # default: the view function's name
    method: str = ""  # which method, for a view that takes several; default: all (any: GET)
    query: type[Schema] | Schema | None = None
    request: Mapping[str, Any] | None = None  # an OpenAPI requestBody, see `request_body`


def documented(
    summary: str,
    *,
    tag: str,
    responses: Mapping[str, Answer],
    description: str = "",
    operation_id: str = "",
    method: str = "",
    query: type[Schema] | Schema | None = None,
    request: Mapping[str, Any] | None = None,
) -> Callable[[View], View]:
    """Record an `Operation` on the view. Stack one per method where a view's methods differ
    (`method=`): the view keeps them in the order they are written."""
    operation = Operation(
        summary, tag, responses, description, operation_id, method.upper(), query, request
    )

    def record(view: View) -> View:
        setattr(view, OPERATIONS_ATTRIBUTE, (operation, *operations_of(view)))
        return view

    return record


def operations_of(view: object) -> tuple[Operation, ...]:
    """The operations `@documented` recorded on `view` (none for an undocumented view)."""
    operations: tuple[Operation, ...] = getattr(view, OPERATIONS_ATTRIBUTE, ())
    return operations


def content(shape: Shape, example: Any = None, media_type: str = JSON) -> dict[str, Any]:
    """An OpenAPI content map: one media type, its shape and (unless None) an example."""
    media: dict[str, Any] = {"schema": shape}
    if example is not None:
        media["example"] = example
    return {media_type: media}


def answer(
    shape: Shape, example: Any = None, description: str = "Done", media_type: str = JSON
) -> dict[str, Any]:
    """An OpenAPI response object."""
    return {"description": description, "content": content(shape, example, media_type)}


def request_body(
    shape: Shape, example: Any = None, *, required: bool = True, media_type: str = JSON
) -> dict[str, Any]:
    return {"required": required, "content": content(shape, example, media_type)}


def html_page(description: str = "The page") -> dict[str, Any]:
    return answer(fields.String(), description=description, media_type=HTML)
