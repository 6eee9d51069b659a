"""A live server against its own document: schemathesis generates requests from /openapi.json
(valid ones and invalid ones), signs each call for its path, and checks every answer: never a
5xx, and status, content type and body as documented.

Bounded: EXAMPLES_PER_OPERATION per operation (about 30 s in all), derandomized (the same
requests every run), one server for the module. The HTML pages are left out (sign-in failures
are slowed down on purpose). Negative cases may drop the signature header: those get 403.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from channelstream.api import ROUTES
from channelstream.api.openapi import build_document
from channelstream.api.security import TOKEN_HEADER
from channelstream.signature import sign
from tests.e2e.apiclient import http_request
from tests.e2e.conftest import RunningServer

SECRET = "conformance-secret"
EXAMPLES_PER_OPERATION = 60
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def conformance_server(start_module_server: Callable[..., RunningServer]) -> RunningServer:
    # short long polls, so /listen on a conn_id that exists answers quickly
    return start_module_server(
        settings={"secret": SECRET, "wake_connections_after": 0.1, "log_level": "WARNING"}
    )


@pytest.fixture(scope="module")
def api_document(conformance_server: RunningServer) -> Any:
    """The document as the live server serves it (a signed GET)."""
    answer = http_request(
        conformance_server.base_url + "/openapi.json",
        headers={TOKEN_HEADER: sign(SECRET, "/openapi.json")},
    )
    assert answer.status == 200, answer.body[:500]
    document = schemathesis.openapi.from_dict(answer.json)
    document.config.update(base_url=conformance_server.base_url)
    return document


def operations() -> list[tuple[str, str]]:
    """(method, path) of every documented operation but the pages, for parametrizing."""
    document = build_document(ROUTES)
    return [
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if "Pages" not in operation["tags"]
    ]


@pytest.mark.parametrize(("method", "path"), operations())
def test_every_answer_is_as_documented(
    api_document: Any, conformance_server: RunningServer, method: str, path: str
) -> None:
    operation = api_document[path][method]

    @given(
        case=st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )
    )
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def call_and_check(case: Any) -> None:
        headers = {TOKEN_HEADER: sign(SECRET, case.formatted_path)}
        case.call_and_validate(
            base_url=conformance_server.base_url, headers=headers, checks=CHECKS, timeout=15
        )

    call_and_check()
