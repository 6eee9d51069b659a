"""/health and /ready: for load balancers and orchestrators. No auth, no state read."""

from __future__ import annotations

from pyramid.response import Response
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.view import view_config, view_defaults

from channelstream.api.errors import json_response
from channelstream.api.views import NodeView


@view_defaults(permission=NO_PERMISSION_REQUIRED, request_method="GET")
class HealthViews(NodeView):
    @view_config(route_name="health")
    def health(self) -> Response:
        """The process serves HTTP (liveness)."""
        return json_response(200, {"status": "ok"})

    @view_config(route_name="ready")
    def ready(self) -> Response:
        """The node can take traffic: its broker is reachable (503 otherwise)."""
        if self.node.ready:
            return json_response(200, {"status": "ready"})
        return json_response(503, {"status": "unavailable", "reason": "broker unreachable"})
