"""Webhook signatures: the format (`t=<unix seconds>,v1=<hex HMAC-SHA256 over "<t>.<body>">`),
and every refusal `verify_webhook` makes, each with a message saying which check failed."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from channelstream.exceptions import ChannelstreamException, WebhookSignatureError
from channelstream.webhook_signature import SIGNATURE_HEADER, signature_header, verify_webhook

SECRET = "webhook-secret"
NOW = 1_714_816_502
EVENTS = [
    {
        "id": "0f8e2c57-4c1a-4f3e-9d1b-6a2f0c9e7b11",
        "name": "user_online",
        "time": "2024-05-04T09:55:02.123456",
        "user": "alice",
    },
    {
        "id": "5b1d7e0a-2f6c-4a8e-b3d4-9c0e1f2a3b4c",
        "name": "member_added",
        "time": "2024-05-04T09:55:02.123456",
        "channel": "lobby",
        "user": "alice",
    },
]
BODY = json.dumps({"time_ms": NOW * 1000, "events": EVENTS}).encode("utf-8")


def refusal(body: bytes | str, header: str | None, **kwargs: float) -> str:
    """The message of the WebhookSignatureError that verifying raises."""
    kwargs.setdefault("now", NOW)
    with pytest.raises(WebhookSignatureError) as caught:
        verify_webhook(SECRET, body, header, **kwargs)
    return str(caught.value)


def test_the_header_name():
    assert SIGNATURE_HEADER == "X-Channelstream-Signature"


def test_a_signed_body_verifies_to_its_events():
    header = signature_header(SECRET, BODY, NOW)
    assert verify_webhook(SECRET, BODY, header, now=NOW) == EVENTS


def test_the_format_matches_an_hmac_computed_independently():
    body = b'{"time_ms":1714816502000,"events":[]}'
    expected = hmac.new(
        b"webhook-secret", b'1714816502.{"time_ms":1714816502000,"events":[]}', hashlib.sha256
    ).hexdigest()
    # the same vector as `openssl dgst -sha256 -hmac webhook-secret` prints it
    assert expected == "f8fd4a87cb3445c07748f7b4388006199f6c5dfff424ac90330315fbaaecfe27"
    assert signature_header("webhook-secret", body, 1714816502) == f"t=1714816502,v1={expected}"
    assert verify_webhook("webhook-secret", body, f"t=1714816502,v1={expected}", now=NOW) == []


def test_a_text_body_is_verified_as_its_utf8_bytes():
    body = json.dumps({"time_ms": 0, "events": [{"id": "1", "user": "zoë"}]}, ensure_ascii=False)
    header = signature_header(SECRET, body.encode("utf-8"), NOW)
    expected = [{"id": "1", "user": "zoë"}]
    assert verify_webhook(SECRET, body, header, now=NOW) == expected
    assert verify_webhook(SECRET, body.encode("utf-8"), header, now=NOW) == expected


def test_spaces_around_pairs_and_unknown_keys_are_tolerated():
    v1 = signature_header(SECRET, BODY, NOW).split(",v1=")[1]
    header = f" v0=legacy, t={NOW} , v2=future, v1={v1} "
    assert verify_webhook(SECRET, BODY, header, now=NOW) == EVENTS


def test_the_default_clock_is_this_machines(monkeypatch):
    monkeypatch.setattr("time.time", lambda: NOW + 10.5)
    assert verify_webhook(SECRET, BODY, signature_header(SECRET, BODY, NOW)) == EVENTS
    monkeypatch.setattr("time.time", lambda: NOW + 301.0)
    with pytest.raises(WebhookSignatureError, match="stale"):
        verify_webhook(SECRET, BODY, signature_header(SECRET, BODY, NOW))


def test_it_is_a_channelstream_exception():
    assert issubclass(WebhookSignatureError, ChannelstreamException)


# ---------------------------------------------------------------------- header refusals


@pytest.mark.parametrize("header", [None, "", "   "], ids=["none", "empty", "blank"])
def test_a_missing_header_is_refused(header):
    assert refusal(BODY, header) == "no X-Channelstream-Signature header"


@pytest.mark.parametrize(
    "header, why",
    [
        ("garbage", "expected comma-separated key=value pairs"),
        (f"t={NOW};v1=ab", "t is not an integer"),  # one pair: t is "<NOW>;v1=ab"
        ("v1=abcdef", "no t="),
        (f"t={NOW},t={NOW},v1=ab", "more than one t="),
        (f"t={NOW},=ab", "expected comma-separated key=value pairs"),
        (f"t={NOW},", "expected comma-separated key=value pairs"),
        (f"t={NOW}", "no v1="),
        (f"t={NOW},v2=abcdef", "no v1="),
    ],
    ids=[
        "no-pairs",
        "semicolons",
        "no-t",
        "two-t",
        "empty-key",
        "trailing-comma",
        "t-only",
        "only-v2",
    ],
)
def test_a_malformed_header_is_refused_saying_why(header, why):
    message = refusal(BODY, header)
    assert message.startswith("malformed X-Channelstream-Signature header")
    assert why in message


@pytest.mark.parametrize(
    "t", ["", "abc", "1714816502.5", "-1714816502", "+1714816502", "1_714_816_502", "١٢٣"]
)
def test_a_timestamp_that_is_not_an_integer_is_refused(t):
    v1 = signature_header(SECRET, BODY, NOW).split(",v1=")[1]
    message = refusal(BODY, f"t={t},v1={v1}")
    assert "t is not an integer" in message


# ---------------------------------------------------------------------- signature refusals


def test_another_secret_is_a_bad_signature():
    header = signature_header("another-secret", BODY, NOW)
    assert refusal(BODY, header).startswith("bad signature")


@pytest.mark.parametrize("position", [0, len(BODY) // 2, len(BODY) - 1])
def test_a_body_altered_by_one_byte_is_a_bad_signature(position):
    header = signature_header(SECRET, BODY, NOW)
    altered = bytearray(BODY)
    altered[position] ^= 0x01
    assert refusal(bytes(altered), header).startswith("bad signature")


def test_a_body_with_a_byte_more_is_a_bad_signature():
    header = signature_header(SECRET, BODY, NOW)
    assert refusal(BODY + b" ", header).startswith("bad signature")


def test_a_changed_timestamp_is_a_bad_signature():
    v1 = signature_header(SECRET, BODY, NOW).split(",v1=")[1]
    assert refusal(BODY, f"t={NOW + 1},v1={v1}").startswith("bad signature")


@pytest.mark.parametrize("v1", ["", "00", "zz", "é" * 64, "A" * 64], ids=str)
def test_junk_in_v1_is_a_bad_signature_not_a_crash(v1):
    assert refusal(BODY, f"t={NOW},v1={v1}").startswith("bad signature")


def test_the_refusal_does_not_quote_the_signatures():
    header = signature_header("another-secret", BODY, NOW)
    assert header.split(",v1=")[1] not in refusal(BODY, header)


# ---------------------------------------------------------------------- rotated secrets


def test_any_matching_v1_passes_so_a_secret_can_be_rotated():
    old = signature_header("old-secret", BODY, NOW).split(",v1=")[1]
    new = signature_header("new-secret", BODY, NOW).split(",v1=")[1]
    header = f"t={NOW},v1={old},v1={new}"
    assert verify_webhook("old-secret", BODY, header, now=NOW) == EVENTS
    assert verify_webhook("new-secret", BODY, header, now=NOW) == EVENTS
    assert refusal(BODY, header).startswith("bad signature")  # neither is SECRET


# ---------------------------------------------------------------------- stale timestamps


@pytest.mark.parametrize(
    "offset, words",
    [(301, "signed 301 s ago"), (-301, "signed 301 s in the future"), (86_400, "86400 s ago")],
)
def test_a_stale_timestamp_is_refused_either_way_saying_how_far(offset, words):
    header = signature_header(SECRET, BODY, NOW)
    message = refusal(BODY, header, now=NOW + offset)
    assert message.startswith("stale timestamp")
    assert words in message and "tolerance of 300 s" in message


@pytest.mark.parametrize("offset", [300, -300, 299.9, -299.9, 0])
def test_exactly_the_tolerance_away_still_passes(offset):
    header = signature_header(SECRET, BODY, NOW)
    assert verify_webhook(SECRET, BODY, header, now=NOW + offset) == EVENTS


@pytest.mark.parametrize("offset", [300.001, -300.001])
def test_just_past_the_tolerance_is_stale(offset):
    header = signature_header(SECRET, BODY, NOW)
    assert refusal(BODY, header, now=NOW + offset).startswith("stale timestamp")


def test_the_tolerance_is_the_callers():
    header = signature_header(SECRET, BODY, NOW)
    assert verify_webhook(SECRET, BODY, header, now=NOW + 50, tolerance=50) == EVENTS
    message = refusal(BODY, header, now=NOW + 51, tolerance=50)
    assert "signed 51 s ago" in message and "tolerance of 50 s" in message
    assert verify_webhook(SECRET, BODY, header, now=NOW + 3000, tolerance=3600) == EVENTS


def test_the_signature_is_checked_before_the_age():
    """A forger learns nothing from the clock: a bad signature is a bad signature."""
    header = signature_header("another-secret", BODY, NOW)
    assert refusal(BODY, header, now=NOW + 10_000).startswith("bad signature")


# ---------------------------------------------------------------------- body refusals


@pytest.mark.parametrize(
    "body, why",
    [
        (b"not json", "not UTF-8 JSON"),
        (b"", "not UTF-8 JSON"),
        (b'{"events": [}', "not UTF-8 JSON"),
        (b'{"events": ["\xff"]}', "not UTF-8 JSON"),
        (b"[]", "not a JSON object"),
        (b'"events"', "not a JSON object"),
        (b'{"time_ms": 1}', "no events list"),
        (b'{"events": {"id": "1"}}', "no events list"),
        (b'{"events": null}', "no events list"),
        (b'{"events": [{"id": "1"}, "user_online"]}', "an event is not an object"),
    ],
)
def test_a_signed_body_that_is_not_a_webhook_batch_is_refused(body, why):
    message = refusal(body, signature_header(SECRET, body, NOW))
    assert message.startswith("body is not a webhook batch") and why in message


def test_an_empty_events_list_is_a_batch():
    body = b'{"time_ms": 1, "events": []}'
    assert verify_webhook(SECRET, body, signature_header(SECRET, body, NOW), now=NOW) == []
