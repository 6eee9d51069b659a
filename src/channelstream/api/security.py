"""Who may call what: the IP allow-list, API signatures and the admin session cookie.

Order kept from 0.7.1: address not allowed → 403; no token → 403; bad token → 401.
Admin pages accept the admin cookie or, failing it, a valid API call (0.7.1 did too).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from pyramid.authentication import AuthTktCookieHelper
from pyramid.request import Request
from pyramid.security import Allowed, Denied

from channelstream.settings import IPNetwork, Settings
from channelstream.signature import SignatureChecker

API_PERMISSION = "api"
ADMIN_PERMISSION = "admin"
METRICS_PERMISSION = "metrics"  # admin, a signed call, or an address in metrics_allow_from
TOKEN_HEADER = "x-channelstream-secret"


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _in_networks(address: Any, networks: Iterable[IPNetwork]) -> bool:
    return address is not None and any(
        address.version == network.version and address in network for network in networks
    )


def client_address(request: Request, trusted_proxies: tuple[IPNetwork, ...]) -> str:
    """The caller's address: the socket peer, or, when that peer is a trusted proxy, the
    right-most X-Forwarded-For entry that is not itself a trusted proxy (fix F11)."""
    peer = request.environ.get("REMOTE_ADDR", "")
    if not trusted_proxies or not _in_networks(_parse_ip(peer), trusted_proxies):
        return peer
    forwarded = request.headers.get("X-Forwarded-For", "")
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _in_networks(_parse_ip(hop), trusted_proxies):
            return hop
    return hops[0] if hops else peer


class ChannelstreamSecurityPolicy:
    """Pyramid security policy for the API (`api` permission) and admin (`admin`)."""

    def __init__(self, settings: Settings, checker: SignatureChecker) -> None:
        self.settings = settings
        self.checker = checker
        self.cookie = AuthTktCookieHelper(
            settings.cookie_secret,
            cookie_name="auth_tkt",
            max_age=30 * 24 * 3600,
            samesite="Lax",
            hashalg="sha512",
            http_only=True,
        )

    def identity(self, request: Request) -> dict[str, Any] | None:
        identity = self.cookie.identify(request)
        if identity and identity.get("userid") == self.settings.admin_user:
            return identity
        return None

    def authenticated_userid(self, request: Request) -> str | None:
        identity = self.identity(request)
        return identity["userid"] if identity else None

    def permits(self, request: Request, context: Any, permission: str) -> Allowed | Denied:
        if permission in (ADMIN_PERMISSION, METRICS_PERMISSION) and self.identity(request):
            return Allowed("admin session")
        if permission == METRICS_PERMISSION:
            address = client_address(request, self.settings.trusted_proxies)
            if _in_networks(_parse_ip(address), self.settings.metrics_allow_from):
                return Allowed("address in metrics_allow_from")
        return self.api_access(request)

    def api_access(self, request: Request) -> Allowed | Denied:
        """Check a server API call; raises BadSignature for a present but invalid token."""
        address = client_address(request, self.settings.trusted_proxies)
        if not _in_networks(_parse_ip(address), self.settings.allow_posting_from):
            return Denied(f"Address {address} is not allowed to call the API")
        token = request.headers.get(TOKEN_HEADER) or request.params.get("secret")
        if not token:
            return Denied("Missing x-channelstream-secret signature")
        self.checker.check(token, {request.path_info, request.path})
        return Allowed("signed API call")

    def remember(self, request: Request, userid: str, **kw: Any) -> list[tuple[str, str]]:
        return list(self.cookie.remember(request, userid, **kw))

    def forget(self, request: Request, **kw: Any) -> list[tuple[str, str]]:
        return list(self.cookie.forget(request))
