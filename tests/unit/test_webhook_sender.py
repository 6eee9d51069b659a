"""The webhook sender's pure parts: the backoff schedule and the URL it shows. (Sending itself
is tried against a real receiver in tests/e2e/test_webhooks.py and tests/multinode.)"""

from __future__ import annotations

import pytest

from channelstream.webhooks import BACKOFF_MAX_SECONDS, backoff_delay, displayed_url


@pytest.mark.parametrize(
    ("failures", "base"),
    [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (30, 60.0), (10_000, 60.0)],
)
def test_the_backoff_doubles_from_one_second_to_a_minute_with_equal_jitter(
    failures: int, base: float
) -> None:
    assert backoff_delay(failures, rand=lambda: 0.0) == base / 2
    assert backoff_delay(failures, rand=lambda: 0.999999) == pytest.approx(base, rel=1e-5)
    assert backoff_delay(failures) <= BACKOFF_MAX_SECONDS


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://user:secret@hooks.example.com:8443/a/b?token=x#f",
            "https://hooks.example.com:8443/a/b",
        ),
        ("http://127.0.0.1/hook", "http://127.0.0.1/hook"),
        ("http://[::1]:9000/h?k=v", "http://[::1]:9000/h"),
    ],
)
def test_the_shown_url_leaves_out_credentials_query_and_fragment(url: str, shown: str) -> None:
    assert displayed_url(url) == shown
