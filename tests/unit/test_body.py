"""The JSON shape checks of request bodies: nesting depth from the text, breadth from the value."""

from __future__ import annotations

import json
from typing import Any

import pytest

from channelstream.api.body import has_container_over, nesting_depth


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("1", 0),
        ('"text"', 0),
        ("[]", 1),
        ("{}", 1),
        ('{"a": [1, {"b": []}]}', 4),
        ('["[[[", "]]"]', 1),
        (r'["\"[[[", {"\\": "{"}]', 2),
        (r'["\\", [[]]]', 3),
        ("[[[", 3),  # unclosed: still counted (the parser refuses it afterwards)
        ('"unterminated [[[', 0),
        ('["ends in a backslash \\', 1),
    ],
)
def test_nesting_depth_counts_brackets_outside_strings(text: str, depth: int) -> None:
    assert nesting_depth(text) == depth


def test_nesting_depth_agrees_with_the_parsed_value() -> None:
    value: Any = "x"
    for level in range(200):
        value = [value, "]}"] if level % 2 else {"k": value, "[": "{"}
    assert nesting_depth(json.dumps(value)) == 200


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "text",
    [
        '"' + '\\"' * 500_000,  # one string that never ends, full of escaped quotes
        '"\\' * 500_000,
        '"' * 1_000_000,
        "[" * 1_000_000,
    ],
    ids=["escaped-quotes", "quote-backslash", "quotes", "brackets"],
)
def test_nesting_depth_is_linear_on_hostile_text(text: str) -> None:
    """A string pattern that can fail after its opening quote would rescan the rest of the text
    from every quote (quadratic: hours for a megabyte). This one cannot fail."""
    assert nesting_depth(text) >= 0


@pytest.mark.parametrize(
    ("value", "over"),
    [
        (1, False),
        ([1, 2, 3], False),
        ([1, 2, 3, 4], True),
        ({"a": 1, "b": 2, "c": 3, "d": 4}, True),
        ([[1, 2], {"a": [1, 2, 3]}, 3], False),
        ([[1, 2], {"a": [[1, 2, 3, 4]]}], True),
        ({"a": {"b": {"c": {"d": 1, "e": 2, "f": 3, "g": 4}}}}, True),
    ],
)
def test_has_container_over_looks_at_every_level(value: Any, over: bool) -> None:
    assert has_container_over(value, 3) is over


def test_has_container_over_walks_deep_values_without_recursion() -> None:
    value: Any = [1, 2, 3, 4]
    for _ in range(100_000):
        value = [value]
    assert has_container_over(value, 3) is True
