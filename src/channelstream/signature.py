"""Checking the `x-channelstream-secret` token of server API calls.

Tokens are itsdangerous `TimestampSigner` tokens (`value.timestamp.signature`, HMAC-SHA1,
the format 0.7.1 and its clients produce with itsdangerous 1.x or 2.x). Fix F9: the signed
value must be the request path (`/connect`), or the literal `channelstream` that 0.7 clients
sign while `legacy_signatures` is on; tokens dated more than a minute ahead are refused.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import itsdangerous

from channelstream.exceptions import BadSignature

LEGACY_SIGNED_VALUE = "channelstream"
MAX_AGE_SECONDS = 60
MAX_CLOCK_SKEW_SECONDS = 60
VERIFIED_TOKENS_KEPT = 1024  # the cache of matched signatures is emptied when it holds this many


class SignatureChecker(Protocol):
    def check(self, token: str, paths: Iterable[str]) -> None:
        """Raise BadSignature unless `token` is valid for one of `paths` (read lazily, and
        only as far as needed: a path may be costly to make)."""


class TimestampSignatureChecker:
    """The built-in checker."""

    def __init__(
        self,
        secret: str,
        *,
        validate_age: bool = True,
        legacy_signatures: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._signer = itsdangerous.TimestampSigner(secret)
        self._validate_age = validate_age
        self._legacy = legacy_signatures
        self._clock = clock
        # Tokens whose signature matched: (signed value, signed at). Timestamps are whole
        # seconds, so a web app signing each call sends the same token for a path all second
        # long; the HMAC is then computed once. Age and path are checked on every call.
        self._verified: dict[str, tuple[str, float]] = {}

    def check(self, token: str, paths: Iterable[str]) -> None:
        verified = self._verified.get(token)
        if verified is None:
            try:
                raw, signed_at = self._signer.unsign(token, return_timestamp=True)
            except itsdangerous.BadData as error:
                raise BadSignature(refusal_reason(error)) from None
            if len(self._verified) >= VERIFIED_TOKENS_KEPT:
                self._verified.clear()
            verified = (raw.decode("utf-8", "replace"), signed_at.timestamp())
            self._verified[token] = verified
        value, signed_at_seconds = verified
        age = self._clock() - signed_at_seconds
        if age < -MAX_CLOCK_SKEW_SECONDS:
            raise BadSignature("signature is dated in the future")
        if self._validate_age and age > MAX_AGE_SECONDS:
            raise BadSignature("signature expired")
        if not (self._legacy and value == LEGACY_SIGNED_VALUE) and value not in paths:
            raise BadSignature("signature is for another path")


def refusal_reason(error: itsdangerous.BadData) -> str:
    """Why itsdangerous refused a token, in words of our own: its messages quote the token's
    signature, which must not reach the log (a token signed with another environment's secret
    is that environment's secret at work)."""
    if isinstance(error, itsdangerous.SignatureExpired):
        return "signature expired"
    if isinstance(error, itsdangerous.BadTimeSignature) and error.date_signed is None:
        return "token without a timestamp"
    if isinstance(error, itsdangerous.BadSignature):
        return "signature does not match"
    return "malformed token"


class CustomSignatureChecker:
    """Adapts a 0.7.1-style `signature_checker` class: `Cls(secret).unsign(token, max_age=...)`.

    Such classes raise `channelstream.exceptions.BadSignature` (or an itsdangerous error) on a
    bad token. Their returned value, when it is text or bytes, is checked like ours.
    """

    def __init__(self, checker: Any, *, validate_age: bool, legacy_signatures: bool) -> None:
        self._checker = checker
        self._max_age = MAX_AGE_SECONDS if validate_age else None
        self._legacy = legacy_signatures

    def check(self, token: str, paths: Iterable[str]) -> None:
        try:
            value = self._checker.unsign(token, max_age=self._max_age)
        except itsdangerous.BadData as error:
            raise BadSignature(refusal_reason(error)) from None
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        legacy = self._legacy and value == LEGACY_SIGNED_VALUE
        if isinstance(value, str) and not legacy and value not in paths:
            raise BadSignature("signature is for another path")


def build_checker(
    secret: str, dotted_path: str, *, validate_age: bool, legacy_signatures: bool
) -> SignatureChecker:
    """The checker the settings ask for; a bad dotted path fails at start."""
    if not dotted_path:
        return TimestampSignatureChecker(
            secret, validate_age=validate_age, legacy_signatures=legacy_signatures
        )
    module_name, _, class_name = dotted_path.rpartition(".")
    try:
        checker_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as error:
        raise ValueError(f"cannot import signature_checker {dotted_path!r}: {error}") from None
    return CustomSignatureChecker(
        checker_class(secret), validate_age=validate_age, legacy_signatures=legacy_signatures
    )


def sign(secret: str, value: str) -> str:
    """Make a token for `value` (a request path): what web apps do to call the API."""
    return itsdangerous.TimestampSigner(secret).sign(value).decode("ascii")
