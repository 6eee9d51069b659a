"""/health and /ready: for load balancers and orchestrators. No auth, no state read.
/metrics: Prometheus text format, for admins, signed calls and `metrics_allow_from`."""

from __future__ import annotations

from marshmallow import fields
from prometheus_client import generate_latest
from pyramid.request import Request
from pyramid.response import Response
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.view import view_config, view_defaults

from channelstream.api.documented import OPERATIONS_TAG, answer, documented
from channelstream.api.errors import json_response
from channelstream.api.security import METRICS_PERMISSION
from channelstream.api.views import NodeView, dumped
from channelstream.schemas import StatusSchema

# The classic text format generate_latest writes, understood by every Prometheus version.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@view_defaults(permission=NO_PERMISSION_REQUIRED, request_method="GET")
class HealthViews(NodeView):
    @view_config(route_name="health")
    @documented(
        "Liveness: the process serves HTTP",
        tag=OPERATIONS_TAG,
        responses={"200": answer(StatusSchema, {"status": "ok"}, "Alive")},
    )
    def health(self) -> Response:
        """The process serves HTTP (liveness)."""
        return json_response(200, dumped(StatusSchema, {"status": "ok"}))

    @view_config(route_name="ready")
    @documented(
        "Readiness: the cluster broker is reachable and the server is not stopping",
        tag=OPERATIONS_TAG,
        responses={
            "200": answer(StatusSchema, {"status": "ready"}, "Ready"),
            "503": answer(
                StatusSchema,
                {"status": "unavailable", "reason": "broker unreachable"},
                "The broker is unreachable (reason 'broker unreachable'), the node met a "
                "cluster operation it cannot read (reason 'unsupported command'), or the "
                "server is stopping (reason 'draining')",
            ),
        },
    )
    def ready(self) -> Response:
        """The node can take traffic: its broker is reachable, it follows the cluster and it
        is not stopping (503 otherwise, with the reason)."""
        reason = self.node.not_ready_reason()
        if reason is None:
            return json_response(200, dumped(StatusSchema, {"status": "ready"}))
        answer = {"status": "unavailable", "reason": reason}
        return json_response(503, dumped(StatusSchema, answer))


@view_config(route_name="metrics", request_method="GET", permission=METRICS_PERMISSION)
@documented(
    "Prometheus metrics",
    tag=OPERATIONS_TAG,
    description="Prometheus text exposition format: listeners by transport, connections, "
    "channels, users, messages received, frames sent and dropped, slow-consumer disconnects, "
    "broker errors and a request latency histogram by route. For an admin session, a signed "
    "call, or an address in `metrics_allow_from` (no signature needed then).",
    responses={
        "200": answer(
            fields.String(),
            "# TYPE channelstream_connections gauge\nchannelstream_connections 3.0\n",
            "The metrics",
            "text/plain",
        )
    },
)
def metrics(request: Request) -> Response:
    """Prometheus text exposition: admins, signed API calls, or addresses in
    `metrics_allow_from`."""
    registry = request.registry.channelstream_metrics.registry
    return Response(
        body=generate_latest(registry), headerlist=[("Content-Type", METRICS_CONTENT_TYPE)]
    )
