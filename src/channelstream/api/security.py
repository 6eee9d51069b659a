"""Who may call what: the IP allow-list, API signatures and the admin session cookie.

Order kept from 0.7.1: address not allowed → 403; no token → 403; bad token → 401.
Admin pages accept the admin cookie or, failing it, a valid API call (0.7.1 did too).

The admin cookie names a session opened at sign-in and kept by the broker
(`AdminSessionStore`), so it is valid on every node of a cluster, and signing out on any node
ends it on all of them: a copy of the cookie is worthless afterwards. While the broker cannot
be reached, a cookie is not taken as a session: the request gets the broker's 503 (raised as
BrokerUnavailable), which the admin panel shows and retries, rather than a redirect to a
sign-in that would fail the same way. Whether a request comes from one of this server's own
pages (`cross_origin_reason`) is for the views that change state on the strength of that
cookie.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

from pyramid.authentication import AuthTktCookieHelper
from pyramid.request import Request
from pyramid.security import Allowed, Denied

from channelstream.broker import AdminSessionStore
from channelstream.exceptions import BadSignature
from channelstream.logs import CLIENT_ADDRESS_KEY
from channelstream.settings import IPNetwork, Settings
from channelstream.signature import SignatureChecker

API_PERMISSION = "api"
ADMIN_PERMISSION = "admin"
METRICS_PERMISSION = "metrics"  # admin, a signed call, or an address in metrics_allow_from
TOKEN_HEADER = "x-channelstream-secret"
COOKIE_MAX_AGE = 30 * 24 * 3600
DEFAULT_PORTS = {"http": 80, "https": 443}
ADDRESSES_KEPT = 1024  # allow-list verdicts kept (see may_post), emptied when full


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


Origin = tuple[str, str, int]  # scheme, host (lowercase), port


def origin_of(url: str) -> Origin | None:
    """`(scheme, host, port)` of an http(s) URL or `Origin` value; None for anything else
    (`null`, another scheme, garbage)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname, port or DEFAULT_PORTS[scheme]


def own_origin(request: Request) -> Origin | None:
    """This request's own origin as the server sees it: its scheme (after the proxy headers
    the HTTP edge honours) and its Host header."""
    return origin_of(f"{request.scheme}://{request.host}")


def cross_origin_reason(request: Request, *, evidence_required: bool) -> str | None:
    """Why `request` may have been sent by a page of another origin; None when it comes from
    this server's own pages.

    Judged by `Origin` if present, else `Sec-Fetch-Site`, else the origin of `Referer`. A
    request with none of them is let through unless `evidence_required` (browsers send
    `Origin` with every POST; a caller without any is not a browser page)."""
    own = own_origin(request)
    origin = request.headers.get("Origin")
    if origin is not None:
        if own is None or origin_of(origin) != own:
            return f"Cross-origin request (Origin {origin})"
        return None
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return None if site == "same-origin" else f"Cross-origin request (Sec-Fetch-Site {site})"
    referer = request.headers.get("Referer")
    if referer is not None:
        if own is None or origin_of(referer) != own:
            return "Cross-origin request (Referer of another origin)"
        return None
    return "Request without Origin, Sec-Fetch-Site or Referer" if evidence_required else None


def new_session_id() -> str:
    """A random admin session id that is a valid auth_tkt token (a letter, then hex)."""
    return "s" + secrets.token_hex(16)


FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


def request_token(request: Request) -> str | None:
    """The API token: the `x-channelstream-secret` header, else a `secret` query parameter,
    else (as 0.7.1) a `secret` form field. A form is only read in UTF-8: webob fails on any
    other charset, and a token is ASCII anyway (no token: 403, not a 500)."""
    token = request.headers.get(TOKEN_HEADER) or request.GET.get("secret")
    if token or request.content_type not in FORM_TYPES:
        return token or None
    if (request.charset or "utf-8").lower().replace("_", "-") not in ("utf-8", "utf8"):
        return None
    field = request.POST.get("secret")
    return field if isinstance(field, str) and field else None


def signed_paths(request: Request) -> Iterator[str]:
    """The values a token for `request` may sign: its path within the app, then its whole
    path (WebOb quotes that anew on every read, so it is made only when needed)."""
    yield request.path_info
    yield request.path


class ChannelstreamSecurityPolicy:
    """Pyramid security policy for the API (`api` permission) and admin (`admin`)."""

    def __init__(
        self, settings: Settings, checker: SignatureChecker, sessions: AdminSessionStore
    ) -> None:
        self.settings = settings
        self.checker = checker
        self.sessions = sessions
        self.posting_addresses: dict[str, bool] = {}  # see may_post
        # One helper per scheme: over https the cookie is Secure. No Domain attribute (a
        # host-only cookie): a forged Host is not echoed, subdomains do not get the cookie.
        self.cookies = {
            secure: AuthTktCookieHelper(
                settings.cookie_secret,
                cookie_name="auth_tkt",
                secure=secure,
                max_age=COOKIE_MAX_AGE,
                samesite="Lax",
                hashalg="sha512",
                http_only=True,
                wild_domain=False,
            )
            for secure in (False, True)
        }

    def cookie(self, request: Request) -> AuthTktCookieHelper:
        return self.cookies[request.scheme == "https"]

    def identity(self, request: Request) -> dict[str, Any] | None:
        """The admin's identity from a valid cookie whose session is open. Raises
        BrokerUnavailable when that cannot be known (the session store is unreachable)."""
        identity = self.cookie(request).identify(request)
        if not identity or identity.get("userid") != self.settings.admin_user:
            return None
        if not any(self.sessions.admin_session_is_open(token) for token in identity["tokens"]):
            return None  # signed out, expired, or opened in another cluster
        return dict(identity)

    def authenticated_userid(self, request: Request) -> str | None:
        identity = self.identity(request)
        return identity["userid"] if identity else None

    def permits(self, request: Request, context: Any, permission: str) -> Allowed | Denied:
        if permission in (ADMIN_PERMISSION, METRICS_PERMISSION) and self.identity(request):
            return Allowed("admin session")
        if permission == METRICS_PERMISSION:
            address = self.caller(request)
            if _in_networks(_parse_ip(address), self.settings.metrics_allow_from):
                return Allowed("address in metrics_allow_from")
        return self.api_access(request)

    def caller(self, request: Request) -> str:
        """The caller's address, as the HTTP edge tween resolved it for the access line
        (resolved here when the tween did not run, e.g. a request built in a test)."""
        resolved = request.environ.get(CLIENT_ADDRESS_KEY)
        return resolved or client_address(request, self.settings.trusted_proxies)

    def api_access(self, request: Request) -> Allowed | Denied:
        """Check a server API call; raises BadSignature for a present but invalid token."""
        address = self.caller(request)
        if not self.may_post(address):
            return Denied(f"Address {address} is not allowed to call the API")
        token = request_token(request)
        if not token:
            return Denied("Missing x-channelstream-secret signature")
        self.checker.check(token, signed_paths(request))
        return Allowed("signed API call")

    def may_post(self, address: str) -> bool:
        """Whether `address` is in `allow_posting_from`: parsed and matched once per address
        (a web app calls from a few), not on every call."""
        allowed = self.posting_addresses.get(address)
        if allowed is None:
            if len(self.posting_addresses) >= ADDRESSES_KEPT:
                self.posting_addresses.clear()
            allowed = _in_networks(_parse_ip(address), self.settings.allow_posting_from)
            self.posting_addresses[address] = allowed
        return allowed

    def signed_call(self, request: Request) -> bool:
        """Whether `request` is a valid signed API call: a server, not a browser page."""
        try:
            return bool(self.api_access(request))
        except BadSignature:
            return False

    def remember(self, request: Request, userid: str, **kw: Any) -> list[tuple[str, str]]:
        """Open a session and set its cookie. Raises BrokerUnavailable (no cookie is set)."""
        session_id = new_session_id()
        self.sessions.open_admin_session(session_id, COOKIE_MAX_AGE)
        tokens = (session_id,)
        return list(self.cookie(request).remember(request, userid, tokens=tokens, **kw))

    def forget(self, request: Request, **kw: Any) -> list[tuple[str, str]]:
        """Close the request's session (if any) and clear its cookie. Raises
        BrokerUnavailable (the cookie is then kept: its session is still open)."""
        identity = self.cookie(request).identify(request)
        for token in identity["tokens"] if identity else ():
            self.sessions.close_admin_session(token)
        return list(self.cookie(request).forget(request))
