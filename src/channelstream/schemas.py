"""Marshmallow schemas: the single source of truth for request validation, response shapes and
the OpenAPI document (`channelstream.api.openapi`).

Request schemas (`*BodySchema`, `ListenQuerySchema`) validate what the views load. Field names,
defaults and limits follow Channelstream 0.7.1 (reference §1.4). Unknown keys are dropped, as
0.7.1 did. Errors keep marshmallow's field-error dict shape, which is the 422 body. UUIDs load
as strings and timestamps as naive UTC datetimes (fix F14).

Response schemas (`*ResponseSchema` and the objects they nest) describe what the views answer;
they only feed the OpenAPI document, which the test suite checks real answers against.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

from marshmallow import (
    EXCLUDE,
    Schema,
    ValidationError,
    fields,
    missing,
    validate,
    validates_schema,
)
from marshmallow.decorators import VALIDATES_SCHEMA

from channelstream.core.model import CHANNEL_FRAMES_KEPT, ChannelConfigChanges

USERNAME_LENGTH = validate.Length(min=1, max=512)
CHANNEL_LENGTH = validate.Length(min=1, max=256)
JSONP_CALLBACK = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$.]{0,63}$")
MAX_CATCHUP_SIZE = 10_000  # frames per channel: bounds what one channel holds in memory
IDEMPOTENCY_KEY_LENGTH = validate.Length(min=1, max=64)
MAX_HISTORY_LIMIT = 1000
USER_DISCONNECT_REASON_MAX = 123  # characters; a websocket close frame holds 123 bytes of it
NO_CONTROL_CHARACTERS = re.compile(r"^[^\x00-\x1f\x7f]*$")


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def new_uuid() -> str:
    return str(uuid.uuid4())


class WholeMatch(validate.Regexp):
    """A pattern the whole value must match: `re.match` with `...$` lets a trailing newline
    through ("cb" and a newline). The pattern stays `^...$` for the OpenAPI document, which
    JavaScript reads (its regexes have no end-of-text anchor but `$`)."""

    regex: re.Pattern[str]

    def __call__(self, value: Any) -> Any:
        if not isinstance(value, str) or self.regex.fullmatch(value) is None:
            raise ValidationError(self.error.format(input=value, regex=self.regex.pattern))
        return value


class UUIDString(fields.UUID):
    """A UUID, validated, loaded in its canonical string form."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:  # type: ignore[override]
        return str(super()._deserialize(value, attr, data, **kwargs))


class UTCDateTime(fields.DateTime):
    """An ISO-8601 datetime; an offset is converted to naive UTC (fix F14). A time whose UTC
    falls outside years 1-9999 (`9999-12-31T23:59:59-14:00`) is invalid, not an overflow."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> datetime:
        moment = super()._deserialize(value, attr, data, **kwargs)
        if moment.tzinfo is not None:
            try:
                moment = moment.astimezone(UTC).replace(tzinfo=None)
            except OverflowError:
                raise self.make_error("invalid", input=value, obj_type=self.OBJ_TYPE) from None
        return moment


class StateValue(fields.Field):
    """A user-state value: string, number, boolean or null."""

    # its OpenAPI 3.0 description (see channelstream.api.openapi)
    openapi = {  # noqa: RUF012
        "anyOf": [{"type": "string", "nullable": True}, {"type": "number"}, {"type": "boolean"}]
    }

    default_error_messages = {  # noqa: RUF012
        "invalid": "Value is not type of string, integer, boolean or float."
    }

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if value is None or isinstance(value, str | int | float | bool):
            return value
        raise self.make_error("invalid")


def channel_list(**kwargs: Any) -> fields.List:
    return fields.List(fields.String(validate=CHANNEL_LENGTH), **kwargs)


def username_list(**kwargs: Any) -> fields.List:
    return fields.List(fields.String(validate=USERNAME_LENGTH), **kwargs)


def state_dict(**kwargs: Any) -> fields.Dict:
    return fields.Dict(keys=fields.String(), values=StateValue(allow_none=True), **kwargs)


class Declined(Exception):
    """The lean loader does not take this input as it is: marshmallow loads it instead."""


FieldLoader = Callable[[Any], Any]


def _run_validators(field: fields.Field, value: Any) -> Any:
    for validator in field.validators:
        try:
            validator(value)
        except ValidationError:
            raise Declined from None
    return value


def _leaf_loader(field: fields.Field) -> FieldLoader:
    """A present, non-null value of `field`: the common cases done directly (exactly as
    marshmallow converts them), anything else through the field's own `deserialize`."""
    kind = type(field)
    converted: FieldLoader | None = None
    if kind is fields.String:

        def converted(value: Any) -> Any:
            if type(value) is not str:
                raise Declined
            return value

    elif kind is UUIDString:

        def converted(value: Any) -> Any:
            if type(value) is not str:
                raise Declined
            try:
                return str(uuid.UUID(value))
            except ValueError:
                raise Declined from None

    elif kind is fields.Boolean:

        def converted(value: Any) -> Any:
            if value is not True and value is not False:
                raise Declined
            return value

    elif isinstance(field, fields.Integer) and kind is fields.Integer and not field.strict:

        def converted(value: Any) -> Any:
            if type(value) is not int:
                raise Declined
            return value

    elif isinstance(field, fields.List) and kind is fields.List:
        inner = _value_loader(field.inner)

        def converted(value: Any) -> Any:
            if type(value) is not list:
                raise Declined
            return [inner(item) for item in value]

    elif isinstance(field, fields.Dict) and kind is fields.Dict:
        keys = _value_loader(field.key_field) if field.key_field is not None else None
        values = _value_loader(field.value_field) if field.value_field is not None else None

        def converted(value: Any) -> Any:
            if type(value) is not dict:
                raise Declined
            if keys is None and values is None:
                return dict(value)
            return {
                (keys(key) if keys else key): (values(item) if values else item)
                for key, item in value.items()
            }

    elif (
        isinstance(field, fields.Nested)
        and kind is fields.Nested
        and not field.many
        and field.only is None
        and not field.exclude
    ):
        nested_schema = field.schema
        if not isinstance(nested_schema, BaseSchema) or field.unknown not in (None, EXCLUDE):
            return _deserialized(field)
        nested = LeanLoader(nested_schema)

        def converted(value: Any) -> Any:
            return nested(value)

    if converted is None:
        return _deserialized(field)
    if not field.validators:
        return converted
    load = converted
    return lambda value: _run_validators(field, load(value))


def _deserialized(field: fields.Field) -> FieldLoader:
    """Any other field: its own `deserialize` (validators included)."""

    def load(value: Any) -> Any:
        try:
            return field.deserialize(value)
        except ValidationError:
            raise Declined from None

    return load


def _value_loader(field: fields.Field) -> FieldLoader:
    """A value that is present (an item of a list or dict, or a given key): null or not."""
    load = _leaf_loader(field)
    allow_none = field.allow_none

    def value_loader(value: Any) -> Any:
        if value is None:
            if allow_none:
                return None
            raise Declined
        return load(value)

    return value_loader


class LeanLoader:
    """A schema's load, made once from its fields, for input it can take as plainly valid.

    It raises Declined for everything else: a missing required key, a value of another type
    or failing a validator, a schema with hooks it does not run. For the input it accepts,
    the result is what marshmallow's `load` gives (`tests/unit/test_lean_load.py` compares
    them on generated input)."""

    def __init__(self, schema: BaseSchema) -> None:
        self.checks: list[Callable[..., Any]] = []
        hooks = type(schema).resolve_hooks()
        for tag, entries in hooks.items():
            for name, many, options in entries:
                if tag != VALIDATES_SCHEMA or many or options.get("pass_original"):
                    raise TypeError(f"{type(schema).__name__}: hook {name} is not supported")
                self.checks.append(getattr(schema, name))
        if schema.unknown != EXCLUDE or schema.many or schema.partial:
            raise TypeError(f"{type(schema).__name__}: only plain EXCLUDE schemas")
        self.fields: list[tuple[str, fields.Field, FieldLoader, bool]] = []
        for name, field in schema.load_fields.items():
            key = field.data_key if field.data_key is not None else name
            if (field.attribute or name) != name or key != name:
                raise TypeError(f"{type(schema).__name__}.{name}: renamed fields unsupported")
            self.fields.append((name, field, _value_loader(field), field.required))

    def __call__(self, data: Any) -> dict[str, Any]:
        if type(data) is not dict:
            raise Declined
        result: dict[str, Any] = {}
        for name, field, load, required in self.fields:
            if name in data:
                result[name] = load(data[name])
            elif required:
                raise Declined
            else:
                default = field.load_default
                if default is not missing:
                    result[name] = default() if callable(default) else default
        for check in self.checks:
            try:
                check(result, partial=None, many=False, unknown=EXCLUDE)
            except ValidationError:
                raise Declined from None
        return result


def _same(value: Any) -> Any:
    return value


def _answer_converter(field: fields.Field) -> FieldLoader | None:
    """How marshmallow writes a value of `field` into an answer, for the common cases (None
    where not known: the field is then dumped by marshmallow itself). Declined for values
    of other types."""
    kind = type(field)
    if kind in (fields.String, UUIDString, fields.UUID):
        wanted: type = str
    elif kind is fields.Integer and isinstance(field, fields.Integer) and not field.as_string:
        wanted = int
    elif kind is fields.Boolean:
        wanted = bool
    elif kind in (fields.Raw, StateValue):
        return _same
    elif isinstance(field, fields.List) and kind is fields.List:
        inner = _answer_converter(field.inner)
        if inner is None:
            return None
        item = inner

        def listed(value: Any) -> Any:
            if value is None:
                return None
            if type(value) is not list:
                raise Declined
            return [item(each) for each in value]

        return listed
    elif isinstance(field, fields.Dict) and kind is fields.Dict:
        keys = _answer_converter(field.key_field) if field.key_field is not None else _same
        values = _answer_converter(field.value_field) if field.value_field is not None else _same
        if keys is None or values is None:
            return None
        key_of, value_of = keys, values

        def mapped(value: Any) -> Any:
            if value is None:
                return None
            if type(value) is not dict:
                raise Declined
            return {key_of(key): value_of(item) for key, item in value.items()}

        return mapped
    elif (
        isinstance(field, fields.Nested)
        and kind is fields.Nested
        and field.only is None
        and not field.exclude
        and isinstance(field.schema, BaseSchema)
        and not field.schema.many
    ):
        nested = LeanDumper(field.schema)
        many = field.many

        def nested_answer(value: Any) -> Any:
            if value is None:
                return None
            if many:
                if type(value) is not list:
                    raise Declined
                return [nested(each) for each in value]
            return nested(value)

        return nested_answer
    else:
        return None

    def typed(value: Any) -> Any:
        if value is None or type(value) is wanted:
            return value
        raise Declined

    return typed


class LeanDumper:
    """A response schema's dump, made once from its fields, for answers made of plain dicts,
    lists, strings, numbers and booleans (the views' answers): the same result as
    marshmallow's `dump`. Fields it has no shortcut for are dumped by marshmallow; a value
    of an unexpected type raises Declined, and the whole answer is then dumped by
    marshmallow (`tests/unit/test_lean_load.py` compares them)."""

    def __init__(self, schema: BaseSchema) -> None:
        if any(type(schema).resolve_hooks().values()) or schema.many:
            raise TypeError(f"{type(schema).__name__}: hooks are not supported")
        self.accessor = schema.get_attribute
        self.fields: list[tuple[str, fields.Field, FieldLoader | None]] = []
        for name, field in schema.dump_fields.items():
            key = field.data_key if field.data_key is not None else name
            if (
                (field.attribute or name) != name
                or key != name
                or field.dump_default is not missing
            ):
                raise TypeError(f"{type(schema).__name__}.{name}: not supported")
            self.fields.append((name, field, _answer_converter(field)))

    def __call__(self, value: Any) -> dict[str, Any]:
        if type(value) is not dict:
            raise Declined
        answer: dict[str, Any] = {}
        for name, field, convert in self.fields:
            if name not in value:
                if hasattr(value, name):  # marshmallow would read the dict's attribute
                    raise Declined
                continue
            if convert is None:
                answer[name] = field.serialize(name, value, accessor=self.accessor)
            else:
                answer[name] = convert(value[name])
        return answer


class BaseSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    # made on first use, per class (not inherited: see lean_load, lean_dump)
    _lean_loader: ClassVar[LeanLoader]
    _lean_dumper: ClassVar[LeanDumper]

    @classmethod
    def shared(cls, many: bool = False) -> Self:
        """One reusable instance per schema class (and `many`). Building a schema deep-copies
        its fields, which costs more than loading a typical body; loading keeps no state on
        the instance, so requests can share it."""
        key = "_shared_many" if many else "_shared_one"
        instance = cls.__dict__.get(key)
        if instance is None:
            instance = cls(many=many)
            setattr(cls, key, instance)
        return instance

    @classmethod
    def lean_load(cls, data: Any) -> dict[str, Any]:
        """What `shared().load(data)` returns, in a fraction of its time for valid input.

        Hot endpoints (`/connect`, `/ws`, connection tokens) load through this: marshmallow's
        per-field machinery cost more than the rest of their view. The lean loader is made
        from this schema's own fields (`LeanLoader`); whatever it does not take as plainly
        valid, it hands to marshmallow, so every refusal and every unusual input is
        marshmallow's own answer."""
        loader = cls.__dict__.get("_lean_loader")
        if loader is None:
            loader = LeanLoader(cls.shared())
            cls._lean_loader = loader
        try:
            return loader(data)
        except Declined:
            loaded: dict[str, Any] = cls.shared().load(data)
            return loaded

    @classmethod
    def lean_dump(cls, value: Any) -> Any:
        """What `shared().dump(value)` returns, made faster the same way as `lean_load`: an
        answer of plain values is written by a `LeanDumper` made from this schema's fields,
        anything else by marshmallow."""
        dumper = cls.__dict__.get("_lean_dumper")
        if dumper is None:
            dumper = LeanDumper(cls.shared())
            cls._lean_dumper = dumper
        try:
            return dumper(value)
        except Declined:
            return cls.shared().dump(value)


class ChannelConfigSchema(BaseSchema):
    """Channel settings. No load defaults: only the keys given change an existing channel (F2).

    A new channel starts from the defaults documented here.
    """

    notify_presence = fields.Boolean(metadata={"default": False})
    store_history = fields.Boolean(metadata={"default": False})
    history_size = fields.Integer(
        validate=validate.Range(min=0, error="Must be at least {min}."), metadata={"default": 10}
    )
    broadcast_presence_with_user_lists = fields.Boolean(metadata={"default": False})
    notify_state = fields.Boolean(metadata={"default": False})
    store_frames = fields.Boolean(metadata={"default": True})
    history_ttl = fields.Integer(
        validate=validate.Range(min=0, error="Must be at least {min}."),
        metadata={
            "default": 0,
            "description": "Seconds a sent frame stays in history and catchup (0: no expiry)",
        },
    )
    catchup_size = fields.Integer(
        validate=validate.Range(min=0, max=MAX_CATCHUP_SIZE),
        metadata={
            "default": CHANNEL_FRAMES_KEPT,
            "description": "Frames kept for catchup and recovery; a client that missed more "
            "gets a `gap` frame",
        },
    )


def channel_configs(**kwargs: Any) -> fields.Dict:
    return fields.Dict(
        keys=fields.String(validate=CHANNEL_LENGTH),
        values=fields.Nested(ChannelConfigSchema),
        load_default=dict,
        **kwargs,
    )


class InfoResolutionSchema(BaseSchema):
    """What channel information to include in a response."""

    include_history = fields.Boolean(load_default=True)
    include_users = fields.Boolean(load_default=True)
    channels = channel_list()
    exclude_channels = channel_list(load_default=list)
    include_connections = fields.Boolean(load_default=False)
    return_public_state = fields.Boolean(load_default=False)


def default_info() -> dict[str, Any]:
    return InfoResolutionSchema.lean_load({})


def info_field(**kwargs: Any) -> fields.Nested:
    return fields.Nested(InfoResolutionSchema, load_default=default_info, **kwargs)


class PositionSchema(BaseSchema):
    """Where a client was: the epoch and the last seq it saw (from its frames)."""

    epoch = fields.String(required=True, metadata={"description": "From `/connect`'s answer"})
    seq = fields.Integer(
        required=True,
        validate=validate.Range(min=0),
        metadata={"description": "The greatest `seq` of the frames the client received"},
    )


class ConnectBodySchema(BaseSchema):
    username = fields.String(required=True, validate=USERNAME_LENGTH)
    conn_id = UUIDString(load_default=new_uuid)
    channels = channel_list(load_default=list)
    state_public_keys = fields.List(fields.String(validate=CHANNEL_LENGTH), load_default=list)
    fresh_user_state = state_dict(load_default=dict)
    user_state = state_dict(load_default=dict)
    channel_configs = channel_configs()
    info = info_field()
    recover = fields.Nested(
        PositionSchema,
        metadata={
            "description": "The position of a client that must connect anew: the new "
            "connection first receives what it missed in its channels and direct messages "
            "(`catchup: true`), after a `gap` frame for each channel where that is no longer "
            "all held (from `seq` 0 if the epoch differs)"
        },
    )


class SubscribeBodySchema(BaseSchema):
    conn_id = UUIDString(required=True)
    channels = channel_list(required=True, validate=validate.Length(min=1))
    channel_configs = channel_configs()
    info = info_field()


class UnsubscribeBodySchema(SubscribeBodySchema):
    """Same fields as subscribe; channel_configs is accepted and ignored (0.7.1)."""


class UserStateBodySchema(BaseSchema):
    user = fields.String(required=True, validate=USERNAME_LENGTH)
    user_state = state_dict(load_default=dict)
    state_public_keys = fields.List(
        fields.String(validate=CHANNEL_LENGTH), allow_none=True, load_default=None
    )


class UserDisconnectBodySchema(BaseSchema):
    users = username_list(required=True, validate=validate.Length(min=1, max=1000))
    reason = fields.String(
        load_default="",
        validate=[
            validate.Length(max=USER_DISCONNECT_REASON_MAX),
            WholeMatch(NO_CONTROL_CHARACTERS, error="Must not contain control characters."),
        ],
        metadata={
            "description": "The close frame's reason text (websockets: cut to 123 bytes of "
            "UTF-8); SSE streams get it on the close event's second data line"
        },
    )


class MessageRoutingSchema(BaseSchema):
    channel = fields.String(allow_none=True, load_default=None, validate=CHANNEL_LENGTH)
    pm_users = username_list(load_default=list)
    exclude_users = username_list(load_default=list)
    no_history = fields.Boolean(load_default=False)


class MessageBodySchema(MessageRoutingSchema):
    user = fields.String(required=True, validate=USERNAME_LENGTH)
    message = fields.Dict()
    uuid = UUIDString(load_default=new_uuid)
    timestamp = UTCDateTime(load_default=utc_now)
    idempotency_key = fields.String(
        validate=IDEMPOTENCY_KEY_LENGTH,
        metadata={
            "description": "A repeat of this key on the same channel (or to the same "
            "`pm_users`) within `idempotency_window` seconds is not sent again: it is "
            "answered with the first message (same `uuid`), on any node"
        },
    )


class HistoryBodySchema(BaseSchema):
    channel = fields.String(required=True, validate=CHANNEL_LENGTH)
    since_seq = fields.Integer(
        load_default=0,
        validate=validate.Range(min=0),
        metadata={"description": "Only entries with a greater `seq` (exclusive)"},
    )
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=MAX_HISTORY_LIMIT))
    reverse = fields.Boolean(
        load_default=False, metadata={"description": "Newest first, within the range"}
    )
    user = fields.String(
        validate=USERNAME_LENGTH,
        metadata={
            "description": "Only what this user may see (`exclude_users` respected); without "
            "it, every stored entry"
        },
    )


class MessageEditBodySchema(MessageRoutingSchema):
    uuid = UUIDString(required=True)
    user = fields.String(validate=USERNAME_LENGTH)
    message = fields.Dict()
    timestamp = UTCDateTime()
    edited = UTCDateTime(load_default=utc_now)


class MessageDeleteBodySchema(MessageRoutingSchema):
    uuid = UUIDString(required=True)


class InfoBodySchema(BaseSchema):
    info = fields.Nested(InfoResolutionSchema, required=True)


class DisconnectBodySchema(BaseSchema):
    conn_id = UUIDString(required=True)


class ListenQuerySchema(BaseSchema):
    """A listener's query: `conn_id` (from /connect) or `token` (a connection token), one of
    the two. Missing both reads as a missing conn_id, as before tokens existed."""

    conn_id = UUIDString(
        metadata={"description": "From `/connect`'s answer; required unless `token` is given"}
    )
    token = fields.String(
        metadata={
            "description": "A connection token (JWT, HS256, signed with `secret`) instead of "
            "`conn_id`: the first use creates its connection as `/connect` would; the same "
            "token (or `sub` and `jti`) re-attaches to it. A bad, expired or wrongly signed "
            "token is a 401; claims `/connect` would refuse are a 422 or 413",
            "example": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MTd9.sig",
        }
    )
    callback = fields.String(
        validate=WholeMatch(JSONP_CALLBACK, error="Not a valid JSONP callback name.")
    )

    @validates_schema
    def one_credential(self, data: dict[str, Any], **kwargs: Any) -> None:
        if "conn_id" in data and "token" in data:
            raise ValidationError("Give either conn_id or token, not both.", "token")
        if "conn_id" not in data and "token" not in data:
            raise ValidationError("Missing data for required field.", "conn_id")


class PollQuerySchema(ListenQuerySchema):
    """`/listen`'s query: a listener's, and where the page is, if it says so."""

    epoch = fields.String(
        validate=validate.Length(max=64),
        metadata={
            "description": "The server state's epoch the page's `seq` belongs to (from "
            "`/connect`'s answer or a `position` frame). With `seq`, the poll is served "
            "without writing to the cluster's log; channelstream.js sends both",
            "example": "6b0d5e2c-4a0b-5d41-9f43-7c1f0e0f6a11",
        },
    )
    seq = fields.Integer(
        validate=validate.Range(min=0),
        metadata={
            "description": "The highest `seq` of the frames the page has received (0: none "
            "yet): the poll answers what came after it. Give it with `epoch`",
            "example": 42,
        },
    )

    @validates_schema
    def position_whole(self, data: dict[str, Any], **kwargs: Any) -> None:
        if ("epoch" in data) != ("seq" in data):
            raise ValidationError("Give epoch and seq together.", "seq")


class SignInReturnSchema(BaseSchema):
    """The sign-in form's query: the page to return to once signed in."""

    came_from = fields.String(
        load_default="",
        metadata={
            "description": "Where to go once signed in: a path of this server (the page that "
            "sent the browser to the form); anything else is ignored",
            "example": "/api-explorer",
        },
    )


class SignInFormSchema(SignInReturnSchema):
    """The admin sign-in form (`application/x-www-form-urlencoded`)."""

    username = fields.String(load_default="")
    password = fields.String(load_default="", metadata={"format": "password"})


def channel_config_map() -> fields.Dict:
    """A /channel_config body: `{channel name: ChannelConfig}` (checked by load_channel_configs)."""
    return fields.Dict(
        keys=fields.String(validate=CHANNEL_LENGTH), values=fields.Nested(ChannelConfigSchema)
    )


def load_channel_configs(body: Any) -> dict[str, ChannelConfigChanges]:
    """Validate a /channel_config body: `{channel: ChannelConfig}`.

    As in 0.7.1, the first invalid entry's own error dict is the 422 body (not prefixed by
    the channel name), and nothing is applied unless every entry is valid.
    """
    if not isinstance(body, dict):
        raise ValidationError({"_schema": ["Invalid input type."]})
    loaded: dict[str, ChannelConfigChanges] = {}
    schema = ChannelConfigSchema.shared()
    for name, config in body.items():
        if not isinstance(name, str) or not 1 <= len(name) <= 256:
            raise ValidationError({"_schema": ["Channel names must be 1 to 256 characters."]})
        loaded[name] = schema.load(config if config is not None else {})
    return loaded


# ---------------------------------------------------------------------------------- responses

SERVER_TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?$"


class ServerTime(fields.String):
    """A time in an answer: a datetime dumps as ISO-8601 (`T` between date and time, as the
    JSON renderer writes it), text as it is."""

    def _serialize(self, value: Any, attr: Any, obj: Any, **kwargs: Any) -> str | None:
        if isinstance(value, datetime):
            return value.isoformat()
        serialized: str | None = super()._serialize(value, attr, obj, **kwargs)
        return serialized


def server_time(**kwargs: Any) -> ServerTime:
    """A time the server answers with: naive UTC ISO-8601, no offset (fix F14)."""
    metadata = {
        "pattern": SERVER_TIME_PATTERN,
        "example": "2026-11-27T18:29:03.766868",
        "description": "UTC, ISO-8601 without an offset",
        **kwargs.pop("metadata", {}),
    }
    return ServerTime(metadata=metadata, **kwargs)


class ChannelSettingsSchema(BaseSchema):
    """A channel's settings as the server reports them: always all six keys."""

    notify_presence = fields.Boolean(required=True)
    store_history = fields.Boolean(required=True)
    history_size = fields.Integer(required=True, validate=validate.Range(min=0))
    broadcast_presence_with_user_lists = fields.Boolean(required=True)
    notify_state = fields.Boolean(required=True)
    store_frames = fields.Boolean(required=True)
    history_ttl = fields.Integer(required=True, validate=validate.Range(min=0))
    catchup_size = fields.Integer(required=True, validate=validate.Range(min=0))


class MessageObjectSchema(BaseSchema):
    """Fields every message object has, in history and in frames (base, not documented alone)."""

    uuid = UUIDString(required=True)
    channel = fields.String(allow_none=True)
    user = fields.String()
    message = fields.Dict()
    timestamp = server_time()
    edited = server_time(allow_none=True)
    catchup = fields.Boolean()


class HistoryEntrySchema(MessageObjectSchema):
    """A stored channel message, with the delivery fields 0.7.1 showed in history."""

    type = fields.String(required=True, metadata={"example": "message"})
    seq = fields.Integer(
        validate=validate.Range(min=1),
        metadata={"description": "Its position in the cluster's order (see `/history`)"},
    )
    pm_users = fields.List(fields.String())
    exclude_users = fields.List(fields.String())
    no_history = fields.Boolean()


class ChannelInfoSchema(BaseSchema):
    """One channel in `channels_info`, `/info`, `/channel_config` and the admin JSON."""

    uuid = UUIDString(required=True)
    name = fields.String(required=True)
    long_name = fields.String(required=True, allow_none=True)
    settings = fields.Nested(ChannelSettingsSchema, required=True)
    history = fields.List(fields.Nested(HistoryEntrySchema), required=True)
    last_active = server_time(required=True)
    total_connections = fields.Integer(required=True, validate=validate.Range(min=0))
    total_users = fields.Integer(required=True, validate=validate.Range(min=0))
    users = fields.List(fields.String(), required=True)


class UserStateEntrySchema(BaseSchema):
    """A user and their state (full, or public only when asked for `return_public_state`)."""

    user = fields.String(required=True)
    state = state_dict(required=True)


class ChannelsInfoSchema(BaseSchema):
    """`{"channels": {name: channel}, "users": [...]}`: what `/info` answers."""

    channels = fields.Dict(
        keys=fields.String(), values=fields.Nested(ChannelInfoSchema), required=True
    )
    users = fields.List(fields.Nested(UserStateEntrySchema), required=True)


class ConnectResponseSchema(BaseSchema):
    conn_id = UUIDString(required=True)
    username = fields.String(required=True)
    state = state_dict(required=True, metadata={"description": "The user's full state"})
    public_state = state_dict(required=True)
    channels = fields.List(fields.String(), required=True)
    channels_info = fields.Nested(ChannelsInfoSchema, required=True)
    epoch = fields.String(
        required=True,
        metadata={"description": "Names the state `seq` counts in; keep it for `recover`"},
    )
    seq = fields.Integer(
        required=True,
        metadata={
            "description": "The connection's position: frames with a greater `seq` reach it, "
            "live or as catchup. A page that has received no frame yet keeps this one for "
            "`recover`, so a later recover never replays what came before it connected"
        },
    )
    recovered = fields.Boolean(
        metadata={
            "description": "Only with `recover`: true when the connection's catchup holds "
            "every frame missed, false when the epoch differs or some are gone (`gap` "
            "frames follow)"
        }
    )


class HistoryResponseSchema(BaseSchema):
    epoch = fields.String(required=True)
    messages = fields.List(
        fields.Nested(HistoryEntrySchema),
        required=True,
        metadata={"description": "Each with its `seq`; an unknown channel has none"},
    )
    has_more = fields.Boolean(
        required=True, metadata={"description": "More entries in the range beyond `limit`"}
    )


class SubscribeResponseSchema(BaseSchema):
    channels = fields.List(
        fields.String(), required=True, metadata={"description": "All channels of the connection"}
    )
    channels_info = fields.Nested(ChannelsInfoSchema, required=True)
    subscribed_to = fields.List(
        fields.String(), required=True, metadata={"description": "Channels newly joined"}
    )


class UnsubscribeResponseSchema(BaseSchema):
    channels = fields.List(fields.String(), required=True)
    channels_info = fields.Nested(ChannelsInfoSchema, required=True)
    unsubscribed_from = fields.List(fields.String(), required=True)


class StateChangeSchema(BaseSchema):
    key = fields.String(required=True)
    value = StateValue(required=True, allow_none=True)


class UserStateResponseSchema(BaseSchema):
    user_state = state_dict(required=True)
    changed_state = fields.List(fields.Nested(StateChangeSchema), required=True)
    public_keys = fields.List(fields.String(), required=True)


class UserDisconnectResponseSchema(BaseSchema):
    disconnected = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        required=True,
        metadata={
            "description": "Every user asked for, with the number of connections ended (0: it "
            "had none, or is unknown)"
        },
    )


class MessageAcceptedSchema(BaseSchema):
    """A message `/message` accepted (items with no channel and no pm_users are left out)."""

    user = fields.String(required=True)
    message = fields.Dict()
    channel = fields.String(required=True, allow_none=True)
    pm_users = fields.List(fields.String(), required=True)
    exclude_users = fields.List(fields.String(), required=True)
    no_history = fields.Boolean(required=True)
    uuid = UUIDString(required=True)
    timestamp = server_time(required=True)
    edited = fields.Raw(
        required=True, allow_none=True, metadata={"description": "Always null: not edited yet"}
    )
    idempotency_key = fields.String()


class MessageEditAcceptedSchema(BaseSchema):
    uuid = UUIDString(required=True)
    channel = fields.String(required=True, allow_none=True)
    pm_users = fields.List(fields.String(), required=True)
    exclude_users = fields.List(fields.String(), required=True)
    no_history = fields.Boolean(required=True)
    user = fields.String()
    message = fields.Dict()
    timestamp = server_time()
    edited = server_time(required=True)


class MessageDeleteAcceptedSchema(BaseSchema):
    uuid = UUIDString(required=True)
    channel = fields.String(required=True, allow_none=True)
    pm_users = fields.List(fields.String(), required=True)
    exclude_users = fields.List(fields.String(), required=True)
    no_history = fields.Boolean(required=True)


FRAME_TYPES = (
    "message",
    "message:edit",
    "message:delete",
    "presence",
    "user_state_change",
    "gap",
    "position",  # first on a token connection's listener: its epoch and starting seq
)


class FrameSchema(MessageObjectSchema):
    """One message object in a frame sent to a browser (websocket, long poll)."""

    uuid = UUIDString(metadata={"description": "Every type but `gap`"})
    type = fields.String(required=True, validate=validate.OneOf(FRAME_TYPES))
    seq = fields.Integer(
        validate=validate.Range(min=0),
        metadata={
            "description": "On every channel and direct frame: its position in the "
            "cluster's order (keep the greatest for `recover`). On a `gap` frame, the "
            "client's position on that channel: the channel's frames after it and before "
            "the catchup that follows were lost (`/history` with `since_seq` = it returns "
            "what history kept of them); `channel` null: the direct messages. On a "
            "`position` frame (the first a listener opened with a token gets, with `epoch`), "
            "where its catchup starts: what `/connect` answers as `epoch` and `seq`"
        },
    )
    users = fields.List(
        fields.Nested(UserStateEntrySchema),
        metadata={"description": "presence: the channel's users, when it broadcasts them"},
    )
    state = state_dict(allow_none=True, metadata={"description": "presence: public state"})
    epoch = fields.String(
        metadata={"description": "position: the cluster state's epoch, for `recover`"}
    )
    conn_id = UUIDString(
        metadata={
            "description": "position: this listener's connection (what `/connect` answers as "
            "`conn_id`), for the web app's `/subscribe`, `/message` and `/disconnect` calls"
        }
    )


class ServerSentEventSchema(BaseSchema):
    """One event of `/sse` (`text/event-stream`): the fields an event may have."""

    event = fields.String(
        validate=validate.OneOf(["close"]), metadata={"description": "Only on the last event"}
    )
    data = fields.String(
        metadata={
            "description": "A JSON array of message objects (`Frame`); on `close`, the "
            "websocket close code"
        }
    )
    retry = fields.Integer()


class AdminUserSchema(BaseSchema):
    user = fields.String(required=True)
    uuid = UUIDString(required=True)
    state = state_dict(required=True, metadata={"description": "Public state only"})
    connections = fields.List(UUIDString(), required=True)


class AdminConnectionSchema(BaseSchema):
    conn_id = UUIDString(required=True)
    user = fields.String(required=True)
    channels = fields.List(fields.String(), required=True)
    created = server_time(required=True)
    last_active = server_time(required=True)
    listeners = fields.Integer(
        required=True, metadata={"description": "Open websockets and polls, cluster-wide"}
    )


class AdminWebhooksSchema(BaseSchema):
    """Webhooks as this node sees them: the queue is the cluster's, the rest this node's."""

    url = fields.String(
        required=True, metadata={"description": "webhook_url without user info or query"}
    )
    sending = fields.Boolean(
        required=True, metadata={"description": "Whether this node sends (the leader)"}
    )
    queue_length = fields.Integer(required=True)
    queue_max = fields.Integer(required=True)
    overflowed = fields.Integer(
        required=True, metadata={"description": "Events dropped for a full queue"}
    )
    last_delivered_at = server_time(
        required=True, allow_none=True, metadata={"description": "By whichever node sent"}
    )
    events_sent = fields.Integer(required=True, metadata={"description": "By this node"})
    events_dropped = fields.Integer(
        required=True, metadata={"description": "By this node, after webhook_retry_for"}
    )
    last_error = fields.String(required=True, allow_none=True)
    last_error_at = server_time(required=True, allow_none=True)


class AdminInfoSchema(BaseSchema):
    """`/admin/admin.json`: 0.7.1's keys, plus figures of this server."""

    remembered_user_count = fields.Integer(required=True)
    unique_user_count = fields.Integer(
        required=True, metadata={"description": "Users having at least one connection"}
    )
    total_connections = fields.Integer(required=True)
    total_channels = fields.Integer(required=True)
    total_messages = fields.Integer(
        required=True, metadata={"description": "Frames handed to connections (messages out)"}
    )
    total_unique_messages = fields.Integer(
        required=True, metadata={"description": "Messages accepted by /message (messages in)"}
    )
    channels = fields.Dict(
        keys=fields.String(), values=fields.Nested(ChannelInfoSchema), required=True
    )
    users = fields.List(
        fields.Nested(AdminUserSchema),
        required=True,
        metadata={"description": "Users having at least one connection"},
    )
    uptime = fields.String(required=True, metadata={"example": "2:03:04"})
    version = fields.String(required=True)
    # added by this server
    uptime_seconds = fields.Integer(required=True)
    started_at = server_time(required=True)
    frames_dropped = fields.Integer(
        required=True,
        metadata={"description": "This node: listeners closed for falling behind (4002)"},
    )
    listeners = fields.Integer(
        required=True, metadata={"description": "This node: open websockets and long polls"}
    )
    node_id = fields.String(required=True)
    broker = fields.Dict(required=True, metadata={"description": "The broker's own figures"})
    connections = fields.List(fields.Nested(AdminConnectionSchema), required=True)
    webhooks = fields.Nested(
        AdminWebhooksSchema,
        required=True,
        allow_none=True,
        metadata={"description": "null while webhooks are off (no webhook_url)"},
    )


class AdminDisconnectResponseSchema(BaseSchema):
    conn_id = UUIDString(required=True)
    disconnected = fields.Boolean(
        required=True, metadata={"description": "false if there was no such connection"}
    )


class SignOutResponseSchema(BaseSchema):
    signed_out = fields.Boolean(
        required=True, metadata={"description": "Whether a session was open"}
    )


class StatusSchema(BaseSchema):
    """`/health` and `/ready`."""

    status = fields.String(required=True, validate=validate.OneOf(["ok", "ready", "unavailable"]))
    reason = fields.String(
        validate=validate.OneOf(["broker unreachable", "draining", "unsupported command"])
    )


class ErrorSchema(BaseSchema):
    """The error envelope of every error but 401 and 422 (fix F5)."""

    error = fields.String(required=True, metadata={"example": "bad_request"})
    message = fields.String(required=True)
    code = fields.String(required=True, metadata={"example": "400 Bad Request"})
    title = fields.String(required=True, metadata={"example": "Bad Request"})
    limit = fields.String(
        metadata={
            "description": "The setting whose limit refused the request (413, 429, 503 only)",
            "example": "max_message_size",
        }
    )


class BadSignatureSchema(BaseSchema):
    """401: a missing-or-wrong signature's body, as in 0.7.1."""

    request = fields.String(required=True, validate=validate.OneOf(["Bad Signature"]))


class ValidationErrorSchema(BaseSchema):
    """422: marshmallow's field errors. Each key is a field (or a list index, or `_schema`);
    each value a list of messages, or the same shape again for nested fields."""
