"""The admin session behind a load balancer: the cookie from a sign-in on one node is a session
on every node, and a sign-out on any node ends it on all of them (the broker keeps sessions).

Raw HTTP (http.client), so redirects are seen, not followed.
"""

from __future__ import annotations

from typing import Any

from tests.e2e.apiclient import RawAnswer, admin_cookie, raw_request
from tests.multinode.conftest import ClusterNode

ADMIN_USER = "admin"
ADMIN_SECRET = "multinode-admin-secret"
# Every node of a cluster needs the same cookie_secret (empty: a random one per process).
ADMIN_SETTINGS = {
    "admin_user": ADMIN_USER,
    "admin_secret": ADMIN_SECRET,
    "cookie_secret": "multinode-cookie-secret",
}
TIMEOUT = 10.0


def send(
    node: ClusterNode,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> RawAnswer:
    return raw_request(node.server.port, method, path, body, headers, TIMEOUT)


def sign_in(node: ClusterNode) -> str:
    """Sign in through the form on `node`; the `auth_tkt=...` cookie pair."""
    return admin_cookie(node.server.port, ADMIN_USER, ADMIN_SECRET)


def admin_json(node: ClusterNode, cookie: str) -> RawAnswer:
    return send(node, "GET", "/admin/admin.json", headers={"Cookie": cookie})


def test_a_session_opened_on_one_node_works_on_the_other_and_a_sign_out_there_ends_it(
    start_node: Any,
) -> None:
    a: ClusterNode = start_node(**ADMIN_SETTINGS)
    b: ClusterNode = start_node(**ADMIN_SETTINGS)
    cookie = sign_in(a)

    on_a, on_b = admin_json(a, cookie), admin_json(b, cookie)
    assert (on_a.status, on_b.status) == (200, 200), (on_a, on_b)
    assert on_b.headers["content-type"].startswith("application/json")
    assert on_a.json["node_id"] != on_b.json["node_id"]  # two nodes answered

    signed_out = send(
        b,
        "POST",
        "/admin/sign_out",
        b"{}",
        {"Cookie": cookie, "Content-Type": "application/json", "Origin": b.base_url},
    )
    assert (signed_out.status, signed_out.json) == (200, {"signed_out": True})

    for node in (a, b):
        answer = admin_json(node, cookie)
        assert answer.status == 302, (node.base_url, answer)
        assert answer.headers["location"] == "/admin/sign_in"
