"""Who may call the signed server API: address allow-list, proxies, signatures (F9, F11)."""

from __future__ import annotations

import time
from typing import Any, ClassVar

import pytest

from channelstream.exceptions import BadSignature
from tests.functional.conftest import SECRET, ApiClient, ClientFactory, token_at

BAD_SIGNATURE = {"request": "Bad Signature"}
CONNECT = {"username": "alice"}


class AcceptsOpenSesame:
    """A 0.7.1-style custom checker: `Cls(secret).unsign(token, max_age=...)`."""

    calls: ClassVar[list[tuple[str, Any]]] = []

    def __init__(self, secret: str) -> None:
        self.secret = secret

    def unsign(self, token: str, max_age: int | None = None) -> str:
        AcceptsOpenSesame.calls.append((token, max_age))
        if token == f"open-sesame:{self.secret}":
            return "/connect"
        if token == "wrong-path":
            return "/subscribe"
        raise BadSignature("not open sesame")


CUSTOM_CHECKER = f"{__name__}.AcceptsOpenSesame"


# ---------------------------------------------------------------------------------- check order


def test_a_disallowed_address_is_forbidden_before_the_token_is_looked_at(
    client: ApiClient,
) -> None:
    outsider = {"REMOTE_ADDR": "198.51.100.7"}

    for token in (None, "garbage", client.token("/connect")):
        kwargs: dict[str, Any] = {"signed": False} if token is None else {"token": token}
        response = client.post("/connect", CONNECT, environ=outsider, status=403, **kwargs)
        assert "not allowed" in response.json["message"]


def test_a_missing_token_is_forbidden_before_anything_is_validated(client: ApiClient) -> None:
    response = client.post("/connect", {"username": ""}, signed=False, status=403)

    assert "x-channelstream-secret" in response.json["message"]


def test_a_bad_token_is_unauthorized_before_the_body_is_validated(client: ApiClient) -> None:
    response = client.post("/connect", {"username": ""}, token="garbage", status=401)

    assert response.json == BAD_SIGNATURE


# ---------------------------------------------------------------------------------- tokens


def test_a_token_in_the_header_is_accepted(client: ApiClient) -> None:
    assert client.post("/connect", CONNECT).json["username"] == "alice"


def test_a_token_in_the_secret_query_parameter_is_accepted(client: ApiClient) -> None:
    response = client.post(
        "/connect", CONNECT, signed=False, query=f"secret={client.token('/connect')}"
    )

    assert response.json["username"] == "alice"


def test_a_token_signed_for_another_path_is_rejected(client: ApiClient) -> None:
    response = client.post("/connect", CONNECT, token=client.token("/subscribe"), status=401)

    assert response.json == BAD_SIGNATURE


def test_a_legacy_channelstream_token_is_accepted_by_default(client: ApiClient) -> None:
    token = client.token("channelstream")

    assert client.post("/connect", CONNECT, token=token).json["username"] == "alice"
    assert client.post("/info", token=token).json["channels"] == {}


def test_a_legacy_channelstream_token_is_rejected_without_legacy_signatures(
    make_client: ClientFactory,
) -> None:
    client = make_client(legacy_signatures=False)

    response = client.post("/connect", CONNECT, token=client.token("channelstream"), status=401)

    assert response.json == BAD_SIGNATURE
    assert client.post("/connect", CONNECT).json["username"] == "alice"


def test_a_token_made_with_another_secret_is_rejected(client: ApiClient) -> None:
    other = ApiClient(client.testapp, secret="another-secret")

    response = other.post("/connect", CONNECT, status=401)

    assert response.json == BAD_SIGNATURE


@pytest.mark.parametrize("token_value", ["/connect", "channelstream"])
def test_a_token_older_than_a_minute_is_rejected(client: ApiClient, token_value: str) -> None:
    token = token_at(SECRET, token_value, int(time.time()) - 61)

    response = client.post("/connect", CONNECT, token=token, status=401)

    assert response.json == BAD_SIGNATURE


def test_a_token_younger_than_a_minute_is_accepted(client: ApiClient) -> None:
    token = token_at(SECRET, "/connect", int(time.time()) - 50)

    assert client.post("/connect", CONNECT, token=token).json["username"] == "alice"


def test_an_old_token_is_accepted_without_validate_requests(make_client: ClientFactory) -> None:
    client = make_client(validate_requests=False)
    token = token_at(SECRET, "/connect", int(time.time()) - 3600)

    assert client.post("/connect", CONNECT, token=token).json["username"] == "alice"


@pytest.mark.parametrize("validate_requests", [True, False])
def test_a_token_dated_more_than_a_minute_ahead_is_rejected(
    make_client: ClientFactory, validate_requests: bool
) -> None:
    client = make_client(validate_requests=validate_requests)
    token = token_at(SECRET, "/connect", int(time.time()) + 120)

    response = client.post("/connect", CONNECT, token=token, status=401)

    assert response.json == BAD_SIGNATURE


def test_a_token_slightly_ahead_is_accepted_as_clock_skew(client: ApiClient) -> None:
    token = token_at(SECRET, "/connect", int(time.time()) + 30)

    assert client.post("/connect", CONNECT, token=token).json["username"] == "alice"


def test_a_token_without_a_timestamp_is_rejected(client: ApiClient) -> None:
    import itsdangerous

    token = itsdangerous.Signer(SECRET).sign("/connect").decode()

    assert client.post("/connect", CONNECT, token=token, status=401).json == BAD_SIGNATURE


# ---------------------------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    ("allow", "address", "allowed"),
    [
        ("10.0.0.0/8", "10.1.2.3", True),
        ("10.0.0.0/8", "11.0.0.1", False),
        ("10.0.0.0/8", "127.0.0.1", False),
        ("::1", "::1", True),
        ("::1", "127.0.0.1", False),
        ("127.0.0.1, 192.0.2.0/24", "192.0.2.200", True),
        ("127.0.0.1, 192.0.2.0/24", "192.0.3.1", False),
        ("0.0.0.0", "203.0.113.9", True),
        ("0.0.0.0", "2001:db8::1", True),
        ("127.0.0.1", "::ffff:127.0.0.1", True),
    ],
)
def test_the_address_allow_list_takes_addresses_and_cidr_ranges(
    make_client: ClientFactory, allow: str, address: str, allowed: bool
) -> None:
    client = make_client(allow_posting_from=allow)

    response = client.post(
        "/connect", CONNECT, environ={"REMOTE_ADDR": address}, status=200 if allowed else 403
    )

    if not allowed:
        assert response.json["error"] == "forbidden"


def test_x_forwarded_for_counts_when_the_peer_is_a_trusted_proxy(
    make_client: ClientFactory,
) -> None:
    client = make_client(allow_posting_from="192.0.2.10", trusted_proxies="10.0.0.0/8")
    proxy = {"REMOTE_ADDR": "10.0.0.5"}

    allowed = client.post(
        "/connect", CONNECT, environ=proxy, headers={"X-Forwarded-For": "192.0.2.10"}
    )
    refused = client.post(
        "/connect",
        CONNECT,
        environ=proxy,
        headers={"X-Forwarded-For": "198.51.100.1"},
        status=403,
    )

    assert allowed.json["username"] == "alice"
    assert "198.51.100.1" in refused.json["message"]


def test_x_forwarded_for_entries_prepended_by_the_client_are_not_believed(
    make_client: ClientFactory,
) -> None:
    client = make_client(allow_posting_from="192.0.2.10", trusted_proxies="10.0.0.0/8")

    client.post(
        "/connect",
        CONNECT,
        environ={"REMOTE_ADDR": "10.0.0.5"},
        headers={"X-Forwarded-For": "192.0.2.10, 198.51.100.1"},
        status=403,
    )


def test_x_forwarded_for_through_a_chain_of_trusted_proxies(make_client: ClientFactory) -> None:
    client = make_client(allow_posting_from="192.0.2.10", trusted_proxies="10.0.0.0/8")

    response = client.post(
        "/connect",
        CONNECT,
        environ={"REMOTE_ADDR": "10.0.0.5"},
        headers={"X-Forwarded-For": "192.0.2.10, 10.0.0.9"},
    )

    assert response.json["username"] == "alice"


def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(make_client: ClientFactory) -> None:
    client = make_client(allow_posting_from="127.0.0.1", trusted_proxies="10.0.0.0/8")

    client.post(
        "/connect",
        CONNECT,
        environ={"REMOTE_ADDR": "198.51.100.1"},
        headers={"X-Forwarded-For": "127.0.0.1"},
        status=403,
    )


def test_x_forwarded_for_is_ignored_without_trusted_proxies(client: ApiClient) -> None:
    client.post(
        "/connect",
        CONNECT,
        environ={"REMOTE_ADDR": "198.51.100.1"},
        headers={"X-Forwarded-For": "127.0.0.1"},
        status=403,
    )


# ---------------------------------------------------------------------------------- custom checker


@pytest.fixture
def custom_checker_calls() -> list[tuple[str, Any]]:
    AcceptsOpenSesame.calls.clear()
    return AcceptsOpenSesame.calls


def test_a_custom_signature_checker_decides(
    make_client: ClientFactory, custom_checker_calls: list[tuple[str, Any]]
) -> None:
    client = make_client(signature_checker=CUSTOM_CHECKER)

    accepted = client.post("/connect", CONNECT, token=f"open-sesame:{SECRET}")
    refused = client.post("/connect", CONNECT, status=401)

    assert accepted.json["username"] == "alice"
    assert refused.json == BAD_SIGNATURE
    assert custom_checker_calls[0] == (f"open-sesame:{SECRET}", 60)
    assert len(custom_checker_calls) == 2


def test_a_custom_signature_checker_gets_no_max_age_without_validate_requests(
    make_client: ClientFactory, custom_checker_calls: list[tuple[str, Any]]
) -> None:
    client = make_client(signature_checker=CUSTOM_CHECKER, validate_requests=False)

    client.post("/connect", CONNECT, token=f"open-sesame:{SECRET}")

    assert custom_checker_calls == [(f"open-sesame:{SECRET}", None)]


def test_a_custom_signature_checker_value_must_name_the_path(
    make_client: ClientFactory, custom_checker_calls: list[tuple[str, Any]]
) -> None:
    client = make_client(signature_checker=CUSTOM_CHECKER)

    response = client.post("/connect", CONNECT, token="wrong-path", status=401)

    assert response.json == BAD_SIGNATURE


def test_a_signature_checker_that_cannot_be_imported_fails_at_start(
    make_client: ClientFactory,
) -> None:
    with pytest.raises(ValueError, match="signature_checker"):
        make_client(signature_checker="no.such.module.Checker")


def test_a_token_in_a_utf8_form_field_is_accepted_as_in_071(client: ApiClient) -> None:
    """0.7.1 read the token from a `secret` form field too (its body is then not JSON)."""
    response = client.testapp.post(
        "/info",
        {"secret": client.token("/info")},
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        expect_errors=True,
    )

    # past the security check (else 403 or 401): then refused as a body that is not JSON
    assert response.status_int == 400
    assert response.json["message"].startswith("Request body is not valid JSON")
