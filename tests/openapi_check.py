"""Checking JSON values against the OpenAPI document's schemas (functional and e2e tests)."""

from __future__ import annotations

from typing import Any

from jsonschema.exceptions import ValidationError
from openapi_schema_validator import OAS30Validator, oas30_format_checker


def schema_validator(document: dict[str, Any], schema: dict[str, Any]) -> OAS30Validator:
    """A validator for `schema` (a fragment of `document`) that resolves the document's $refs."""
    return OAS30Validator(
        {**schema, "components": document.get("components", {})},
        format_checker=oas30_format_checker,
    )


def check(document: dict[str, Any], schema: dict[str, Any], value: Any, what: str) -> None:
    """Fail with a readable message unless `value` matches `schema`."""
    try:
        schema_validator(document, schema).validate(value)
    except ValidationError as error:
        path = "/".join(str(part) for part in error.absolute_path)
        raise AssertionError(
            f"{what} does not match its schema at {path!r}: {error.message}"
        ) from None


def resolve(document: dict[str, Any], item: Any) -> Any:
    """Follow a `{"$ref": "#/components/..."}` (responses are often references)."""
    while isinstance(item, dict) and "$ref" in item:
        node: Any = document
        for part in item["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        item = node
    return item


def response_schema(
    document: dict[str, Any], path: str, method: str, status: int, content_type: str
) -> dict[str, Any]:
    """The documented schema of an answer; fails if that answer is not documented."""
    operation = document["paths"][path][method.lower()]
    responses = operation["responses"]
    assert str(status) in responses, f"{method} {path}: status {status} is not documented"
    response = resolve(document, responses[str(status)])
    content = response.get("content", {})
    assert content_type in content, f"{method} {path} {status}: {content_type} not documented"
    schema: dict[str, Any] = content[content_type]["schema"]
    return schema


def check_answer(
    document: dict[str, Any],
    path: str,
    method: str,
    status: int,
    body: Any,
    content_type: str = "application/json",
) -> None:
    """Fail unless `body` is what the document says `method path` answers with `status`."""
    schema = response_schema(document, path, method, status, content_type)
    check(document, schema, body, f"the {status} answer of {method} {path}")
