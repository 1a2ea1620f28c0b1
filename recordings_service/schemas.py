"""marshmallow schemas for every JSON body the service reads or writes."""

import marshmallow as ma

from .domain import Status
from .timeutil import format_timestamp


class Timestamp(ma.fields.DateTime):
    """A UTC timestamp in the contract's form, ``2024-01-15T10:00:00.000Z``."""

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else format_timestamp(value)


class RecordingSchema(ma.Schema):
    """A recording as clients see it (the lookup contract)."""

    recording_id = ma.fields.String(required=True, metadata={"example": "conf_1234567890"})
    status = ma.fields.String(
        required=True, metadata={"enum": [s.value for s in Status], "example": "completed"}
    )
    duration = ma.fields.Integer(
        required=True, allow_none=True, metadata={"description": "Whole seconds; null until known"}
    )
    recording_url = ma.fields.String(required=True, allow_none=True)
    created_at = Timestamp(required=True, metadata={"example": "2024-01-15T10:00:00.000Z"})
    processed_at = Timestamp(required=True, allow_none=True, metadata={"example": "2024-01-15T10:05:42.000Z"})
    failure_reason = ma.fields.String(required=True, allow_none=True, metadata={"description": "Null unless failed"})


recording_schema = RecordingSchema()
