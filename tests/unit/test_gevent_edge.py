"""The start-time check of the private gevent details: it passes on the installed versions,
and names each detail a stand-in for a changed gevent or gevent-websocket lacks.

Stand-ins are subclasses passed to the check; gevent itself is never patched here."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from gevent import pywsgi
from geventwebsocket.handler import WebSocketHandler
from geventwebsocket.websocket import WebSocket

from channelstream.api.body import _is_framing_error
from channelstream.gevent_edge import (
    DETAILS,
    TESTED_REQUIREMENTS,
    GeventEdge,
    GeventEdgeError,
    check_gevent_edge,
    moved_details,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
HANDLER = "gevent.pywsgi.WSGIHandler"


class Gone:
    """A class attribute that is not there: it hides the one a stand-in inherits."""

    def __get__(self, instance: object, owner: type) -> Any:
        raise AttributeError("gone")


def without(base: type, *names: str, **replacements: Any) -> type:
    """A subclass of `base` lacking `names`, with `replacements`."""
    return type(
        f"Changed{base.__name__}", (base,), {**dict.fromkeys(names, Gone()), **replacements}
    )


def edge_with(pywsgi_names: dict[str, Any] | None = None, **fields: Any) -> GeventEdge:
    """The installed edge with some of its parts replaced; a `pywsgi_names` value of None
    leaves that name out of the stand-in pywsgi module."""
    names = {**vars(pywsgi), **(pywsgi_names or {})}
    module = SimpleNamespace(**{name: value for name, value in names.items() if value is not None})
    return dataclasses.replace(GeventEdge.installed(), pywsgi=module, **fields)


# --- stand-ins for a gevent that changed -------------------------------------------------------


class AnswersRefusalsItself(WebSocketHandler):
    """Refuses every request line without asking `_handle_client_error`."""

    def handle_one_request(self) -> Any:
        self.rfile.readline()
        return ("400", b"HTTP/1.1 400 Bad Request\r\n\r\n")


class ClosesReleasedSocket(WebSocketHandler):
    def handle(self) -> None:
        sock = self.socket
        super().handle()
        sock.close()


class UnbufferedReader(WebSocketHandler):
    def __init__(self, sock: Any, address: Any, server: Any) -> None:
        super().__init__(sock, address, server, rfile=sock.makefile("rb", 0))


class ForgetsPeer(WebSocketHandler):
    def __init__(self, sock: Any, address: Any, server: Any) -> None:
        super().__init__(sock, address, server)
        del self.client_address


class ReadsRefusedBody(pywsgi.Input):
    __slots__ = ()

    def _discard(self) -> None:
        self.rfile.read()


class NoFlag(pywsgi.Input):
    __slots__ = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        del self._chunked_input_error


class NotAnOSError(ValueError):
    pass


CHANGES: list[tuple[str, Callable[[], GeventEdge], set[str]]] = [
    (
        "client-error-hook-gone",
        lambda: edge_with(websocket_handler=without(WebSocketHandler, "_handle_client_error")),
        {f"{HANDLER}._handle_client_error"},
    ),
    (
        "client-error-hook-bypassed",
        lambda: edge_with(websocket_handler=AnswersRefusalsItself),
        {f"{HANDLER}._handle_client_error", f"{HANDLER}.handle_one_request ('414' from 8 KiB)"},
    ),
    (
        "error-response-hook-gone",
        lambda: edge_with(
            websocket_handler=without(WebSocketHandler, "_send_error_response_if_possible")
        ),
        {f"{HANDLER}._send_error_response_if_possible"},
    ),
    (
        "invalid-client-input-gone",
        lambda: edge_with({"_InvalidClientInput": None}),
        {"gevent.pywsgi._InvalidClientInput"},
    ),
    (
        "invalid-client-input-not-an-oserror",
        lambda: edge_with({"_InvalidClientInput": NotAnOSError}),
        {"gevent.pywsgi._InvalidClientInput"},
    ),
    (
        "flag-ignored",
        lambda: edge_with({"Input": ReadsRefusedBody}),
        {"gevent.pywsgi.Input._chunked_input_error"},
    ),
    (
        "flag-gone",
        lambda: edge_with({"Input": NoFlag}),
        {"gevent.pywsgi.Input._chunked_input_error"},
    ),
    (
        "released-socket-closed",
        lambda: edge_with(websocket_handler=ClosesReleasedSocket),
        {f"{HANDLER}.socket"},
    ),
    (
        "rfile-unbuffered",
        lambda: edge_with(websocket_handler=UnbufferedReader),
        {f"{HANDLER}.rfile"},
    ),
    (
        "client-address-gone",
        lambda: edge_with(websocket_handler=ForgetsPeer),
        {f"{HANDLER}.client_address"},
    ),
    *(
        (
            f"{name}-gone",
            lambda name=name: edge_with(websocket_handler=without(WebSocketHandler, name)),
            {f"{HANDLER}.{name}"},
        )
        for name in (
            "wsgi_input",
            "requestline",
            "status",
            "response_length",
            "time_start",
            "time_finish",
            "close_connection",
            "environ",
        )
    ),
    (
        "server-name-taken",
        lambda: edge_with({"WSGIServer": without(pywsgi.WSGIServer, request_timeout=60.0)}),
        {"gevent.pywsgi.WSGIServer (names left free)"},
    ),
    (
        "pre-start-hook-ignored",
        lambda: edge_with(
            websocket_handler=without(
                WebSocketHandler, run_application=pywsgi.WSGIHandler.run_application
            )
        ),
        {"geventwebsocket.handler.WebSocketHandler (server.pre_start_hook)"},
    ),
    (
        "logger-not-a-property",
        lambda: edge_with(
            websocket_handler=without(WebSocketHandler, logger=logging.getLogger("x"))
        ),
        {"geventwebsocket.handler.WebSocketHandler.logger"},
    ),
    *(
        (
            f"websocket-{name}-gone",
            lambda name=name: edge_with(websocket=without(WebSocket, name)),
            {f"geventwebsocket.websocket.WebSocket.{name}"},
        )
        for name in ("handler", "raw_write", "closed")
    ),
]


def test_the_installed_gevent_has_every_detail() -> None:
    assert moved_details(GeventEdge.installed()) == []
    check_gevent_edge()  # does not raise


@pytest.mark.parametrize(
    ("make_edge", "expected"), [c[1:] for c in CHANGES], ids=[c[0] for c in CHANGES]
)
def test_a_changed_detail_is_named(make_edge: Callable[[], GeventEdge], expected: set[str]) -> None:
    """The message names what changed (a change may break the probe of another detail too:
    without `status`, gevent-websocket's pre-start path fails as well)."""
    assert expected <= {detail.name for detail in moved_details(make_edge())}


def test_every_detail_is_named_by_some_change() -> None:
    """No check is vacuous: each one fails for some stand-in above."""
    named = set().union(*(expected for _, _, expected in CHANGES))
    assert named == {detail.name for detail in DETAILS}


def test_the_refusal_names_the_detail_its_use_and_the_versions_to_install() -> None:
    edge = edge_with(
        websocket_handler=without(WebSocketHandler, "_send_error_response_if_possible")
    )
    with pytest.raises(GeventEdgeError) as caught:
        check_gevent_edge(edge)
    first, detail, advice = str(caught.value).splitlines()
    assert first == (
        f"channelstream cannot start: gevent {version('gevent')} with gevent-websocket "
        f"{version('gevent-websocket')} moved or changed what it relies on:"
    )
    assert detail.strip().startswith(
        f"{HANDLER}._send_error_response_if_possible, which channelstream overrides to give "
        "the 400 after a broken chunked body the JSON error envelope"
    )
    assert advice.startswith("Use gevent>=26.9,<27 and gevent-websocket>=0.10.1,<0.11,")


def test_setup_py_pins_the_tested_versions() -> None:
    setup_text = (REPO_ROOT / "setup.py").read_text(encoding="utf-8")
    pins = re.findall(r'"(gevent(?:-websocket)?[<>=].*?)"', setup_text)
    assert tuple(pins) == TESTED_REQUIREMENTS


def test_the_architecture_doc_lists_every_detail() -> None:
    doc = (REPO_ROOT / "docs/architecture.md").read_text(encoding="utf-8")
    missing = [detail.name for detail in DETAILS if f"`{detail.name}`" not in doc]
    assert missing == []


def test_the_body_reader_recognises_gevents_framing_error() -> None:
    assert _is_framing_error(pywsgi._InvalidClientInput("broken chunk"))
    assert not _is_framing_error(OSError("connection reset"))
