"""The lean loader gives what marshmallow gives: the same result for input it takes, and it
hands everything else (every refusal) to marshmallow."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError, fields

from channelstream.schemas import (
    BaseSchema,
    ConnectBodySchema,
    Declined,
    DisconnectBodySchema,
    HistoryBodySchema,
    LeanDumper,
    LeanLoader,
    ListenQuerySchema,
    SubscribeBodySchema,
    UserStateBodySchema,
    UUIDString,
)

SCHEMAS = [
    ConnectBodySchema,
    ListenQuerySchema,
    SubscribeBodySchema,
    DisconnectBodySchema,
    HistoryBodySchema,
    UserStateBodySchema,
]
# Values near the ones the schemas take, and some that they refuse.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=2000),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    st.sampled_from(["", "lobby", "a" * 257, "a" * 600, "true", "1", "cb(", "ok_cb"]),
    st.builds(lambda: str(uuid.uuid4())),
    st.builds(lambda: uuid.uuid4().hex),
    st.just("2026-11-27T18:29:03+02:00"),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)


def value_of(field: fields.Field) -> st.SearchStrategy[Any]:
    """Values for `field`: mostly of its type (valid or near it), now and then anything."""
    if isinstance(field, UUIDString):
        typed: st.SearchStrategy[Any] = st.one_of(
            st.uuids().map(str), st.uuids().map(lambda value: value.hex.upper())
        )
    elif isinstance(field, fields.String):
        typed = st.one_of(
            st.text(min_size=1, max_size=8),
            st.text(min_size=1, max_size=8),
            st.sampled_from(["", "a" * 257, "cb(", "ok_cb"]),
        )
    elif isinstance(field, fields.Boolean):
        typed = st.one_of(st.booleans(), st.sampled_from(["true", 1, 0]))
    elif isinstance(field, fields.Integer):
        typed = st.one_of(st.integers(min_value=-2, max_value=2000), st.just(1.0))
    elif isinstance(field, fields.List):
        typed = st.lists(value_of(field.inner), max_size=3)
    elif isinstance(field, fields.Dict):
        keys = value_of(field.key_field) if field.key_field is not None else st.text(max_size=3)
        values = value_of(field.value_field) if field.value_field is not None else json_values
        typed = st.dictionaries(keys.filter(lambda key: isinstance(key, str)), values, max_size=3)
    elif isinstance(field, fields.Nested) and isinstance(field.schema, BaseSchema):
        typed = bodies(type(field.schema))
    else:
        typed = scalars
    return _mostly(typed)


def _mostly(typed: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`typed` nine times in ten, anything else the tenth."""
    return st.integers(min_value=0, max_value=9).flatmap(
        lambda roll: json_values if roll == 0 else typed
    )


def bodies(schema: type[BaseSchema]) -> st.SearchStrategy[dict[str, Any]]:
    """Bodies of `schema`: its required keys most of the time, some optional ones, an unknown
    key now and then."""
    loaded = schema.shared().load_fields
    required = {name: value_of(field) for name, field in loaded.items() if field.required}
    optional = {name: value_of(field) for name, field in loaded.items() if not field.required}
    optional["unknown_key"] = json_values
    return st.deferred(
        lambda: st.one_of(
            st.fixed_dictionaries(required, optional=optional),
            st.fixed_dictionaries({}, optional={**required, **optional}),
        )
    )


def outcome(load: Any, data: Any) -> tuple[str, Any]:
    try:
        return "loaded", load(data)
    except ValidationError as error:
        return "refused", error.messages


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda schema: schema.__name__)
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_lean_load_matches_marshmallow(schema: type[BaseSchema], data: st.DataObject) -> None:
    body = data.draw(st.one_of(bodies(schema), json_values))
    lean = LeanLoader(schema.shared())
    full = outcome(schema.shared().load, body)
    try:
        taken = lean(body)
    except Declined:
        taken = None
    if taken is not None:
        assert full[0] == "loaded"
        expected = dict(full[1])
        if "conn_id" in expected and "conn_id" not in body:
            expected["conn_id"] = taken["conn_id"]  # a new random uuid each load
        assert taken == expected
        assert list(taken) == list(expected)  # the same keys in the same order
    assert outcome(schema.lean_load, body)[0] == full[0]


def test_lean_load_takes_the_hot_bodies() -> None:
    """What the browser and web app send on every connection goes the lean way."""
    conn_id = str(uuid.uuid4())
    assert LeanLoader(ListenQuerySchema.shared())({"conn_id": conn_id}) == {"conn_id": conn_id}
    body = {
        "username": "alice",
        "channels": ["lobby"],
        "user_state": {"status": "online", "n": 1.5},
        "info": {"exclude_channels": ["lobby"], "include_users": False},
        "recover": {"epoch": "e", "seq": 3},
    }
    loaded = LeanLoader(ConnectBodySchema.shared())(body)
    full = ConnectBodySchema.shared().load(body)
    assert loaded == {**full, "conn_id": loaded["conn_id"]}


def test_lean_load_refusals_are_marshmallows() -> None:
    with pytest.raises(ValidationError) as lean:
        ListenQuerySchema.lean_load({"conn_id": str(uuid.uuid4()), "token": "t"})
    with pytest.raises(ValidationError) as full:
        ListenQuerySchema.shared().load({"conn_id": str(uuid.uuid4()), "token": "t"})
    assert lean.value.messages == full.value.messages
    with pytest.raises(ValidationError) as lean:
        ConnectBodySchema.lean_load({"username": "", "channels": "lobby"})
    with pytest.raises(ValidationError) as full:
        ConnectBodySchema.shared().load({"username": "", "channels": "lobby"})
    assert lean.value.messages == full.value.messages


def response_schemas() -> list[type[BaseSchema]]:
    """Every schema an answer is dumped through (and the objects they nest)."""
    import channelstream.schemas as module

    found = []
    for value in vars(module).values():
        if isinstance(value, type) and issubclass(value, BaseSchema) and value is not BaseSchema:
            try:
                LeanDumper(value.shared())
            except TypeError:
                continue
            found.append(value)
    return found


def answers(schema: type[BaseSchema]) -> st.SearchStrategy[dict[str, Any]]:
    """Answer-like dicts: the schema's keys with plain values, nested ones, and datetimes."""
    names = sorted(schema.shared().dump_fields) + ["extra", "items"]
    nested = st.deferred(
        lambda: st.dictionaries(st.sampled_from(names + ["uuid", "name", "seq"]), plain, max_size=6)
    )
    plain = st.one_of(
        json_values,
        st.datetimes(),
        nested,
        st.lists(nested, max_size=2),
        st.dictionaries(st.text(max_size=3), nested, max_size=2),
    )
    return st.dictionaries(st.sampled_from(names), plain, max_size=len(names))


@pytest.mark.parametrize("schema", response_schemas(), ids=lambda schema: schema.__name__)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_lean_dump_matches_marshmallow(schema: type[BaseSchema], data: st.DataObject) -> None:
    value = data.draw(answers(schema))
    try:
        full: Any = ("dumped", schema.shared().dump(value))
    except Exception as error:  # noqa: BLE001 (marshmallow's own failure, whatever it is)
        full = ("failed", type(error))
    try:
        lean = LeanDumper(schema.shared())(value)
    except Declined:
        return
    except Exception as error:  # noqa: BLE001
        assert full == ("failed", type(error))
        return
    assert full == ("dumped", lean)
    assert list(lean) == list(full[1])


def test_lean_dump_takes_the_connect_answer() -> None:
    from channelstream.schemas import ConnectResponseSchema

    answer = {
        "conn_id": str(uuid.uuid4()),
        "state": {"a": 1},
        "username": "alice",
        "public_state": {},
        "channels": ["lobby"],
        "channels_info": {"channels": {}, "users": []},
        "epoch": "e",
        "seq": 0,
    }
    lean = LeanDumper(ConnectResponseSchema.shared())(answer)
    assert lean == ConnectResponseSchema.shared().dump(answer)
    assert list(lean) == list(ConnectResponseSchema.shared().dump(answer))
