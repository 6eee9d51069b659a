"""Request schemas: the single source of truth for validation (and, later, the OpenAPI document).

Field names, defaults and limits follow Channelstream 0.7.1 (reference §1.4). Unknown keys are
dropped, as 0.7.1 did. Errors keep marshmallow's field-error dict shape, which is the 422 body.
UUIDs load as strings and timestamps as naive UTC datetimes (fix F14).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

USERNAME_LENGTH = validate.Length(min=1, max=512)
CHANNEL_LENGTH = validate.Length(min=1, max=256)
JSONP_CALLBACK = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$.]{0,63}$")


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def new_uuid() -> str:
    return str(uuid.uuid4())


class UUIDString(fields.UUID):
    """A UUID, validated, loaded in its canonical string form."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:  # type: ignore[override]
        return str(super()._deserialize(value, attr, data, **kwargs))


class UTCDateTime(fields.DateTime):
    """An ISO-8601 datetime; an offset is converted to naive UTC (fix F14)."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> datetime:
        moment = super()._deserialize(value, attr, data, **kwargs)
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
        return moment


class StateValue(fields.Field):
    """A user-state value: string, number, boolean or null."""

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


class BaseSchema(Schema):
    class Meta:
        unknown = EXCLUDE


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
    loaded: dict[str, Any] = InfoResolutionSchema().load({})
    return loaded


def info_field(**kwargs: Any) -> fields.Nested:
    return fields.Nested(InfoResolutionSchema, load_default=default_info, **kwargs)


class ConnectBodySchema(BaseSchema):
    username = fields.String(required=True, validate=USERNAME_LENGTH)
    conn_id = UUIDString(load_default=new_uuid)
    channels = channel_list(load_default=list)
    state_public_keys = fields.List(fields.String(validate=CHANNEL_LENGTH), load_default=list)
    fresh_user_state = state_dict(load_default=dict)
    user_state = state_dict(load_default=dict)
    channel_configs = channel_configs()
    info = info_field()


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
    conn_id = UUIDString(required=True)
    callback = fields.String(
        validate=validate.Regexp(JSONP_CALLBACK, error="Not a valid JSONP callback name.")
    )


def load_channel_configs(body: Any) -> dict[str, dict[str, Any]]:
    """Validate a /channel_config body: `{channel: ChannelConfig}`.

    As in 0.7.1, the first invalid entry's own error dict is the 422 body (not prefixed by
    the channel name), and nothing is applied unless every entry is valid.
    """
    if not isinstance(body, dict):
        raise ValidationError({"_schema": ["Invalid input type."]})
    loaded: dict[str, dict[str, Any]] = {}
    schema = ChannelConfigSchema()
    for name, config in body.items():
        if not isinstance(name, str) or not 1 <= len(name) <= 256:
            raise ValidationError({"_schema": ["Channel names must be 1 to 256 characters."]})
        loaded[name] = schema.load(config if config is not None else {})
    return loaded
