"""marshmallow schemas of the recordings API's request bodies, queries and pages.

The recording's own body is ``recordings.public.RecordingSchema``; the callback form is
``integrations.africastalking.callbacks.CallbackSchema``.
"""

import base64
import json
from datetime import UTC, datetime

import marshmallow as ma

from ..domain.recordings import Status
from ..fields import PHONE_NUMBER_DOC, RECORDING_ID_DOC, validate_phone_number, validate_recording_id
from ..recordings.public import PagePosition, RecordingSchema


class Cursor(ma.fields.Field):
    """An opaque position in the listing (base64 of the last row's creation time and key)."""

    def _serialize(self, value: PagePosition | None, attr, obj, **kwargs):
        if value is None:
            return None
        raw = json.dumps([value.created_at.isoformat(), value.pk]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _deserialize(self, value, attr, data, **kwargs) -> PagePosition:
        try:
            created_at, pk = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
            position = PagePosition(datetime.fromisoformat(created_at), int(pk))
        except (ValueError, TypeError) as error:
            raise ma.ValidationError("Not a valid cursor: use next_cursor from a previous page.") from error
        if position.created_at.tzinfo is None:
            raise ma.ValidationError("Not a valid cursor: use next_cursor from a previous page.")
        return position


class ListQuerySchema(ma.Schema):
    """Which recordings to list, newest first."""

    status = ma.fields.Enum(Status, by_value=True)
    created_after = ma.fields.AwareDateTime(
        default_timezone=UTC, metadata={"example": "2024-01-15T10:00:00.000Z"}
    )
    created_before = ma.fields.AwareDateTime(default_timezone=UTC)
    limit = ma.fields.Integer(load_default=50, validate=ma.validate.Range(min=1, max=200))
    cursor = Cursor(metadata={"description": "next_cursor of the previous page", "type": "string"})


class RecordingPageSchema(ma.Schema):
    """One page of the listing; ``next_cursor`` is null on the last page."""

    items = ma.fields.List(ma.fields.Nested(RecordingSchema), required=True)
    next_cursor = Cursor(required=True, allow_none=True, metadata={"type": "string", "nullable": True})


class RegistrationSchema(ma.Schema):
    """Register a recording and the Africa's Talking calls (sessions) that make it up."""

    recording_id = ma.fields.String(
        validate=validate_recording_id, metadata={"example": "conf_1234567890", **RECORDING_ID_DOC}
    )
    session_ids = ma.fields.List(
        ma.fields.String(validate=validate_recording_id, metadata=RECORDING_ID_DOC),
        load_default=list,
        validate=ma.validate.Length(max=50),
        metadata={"description": "AT sessionIds of the conference's calls", "example": ["ATVId_5f1c2e9a"]},
    )
    dial = ma.fields.List(
        ma.fields.String(validate=validate_phone_number, metadata=PHONE_NUMBER_DOC),
        validate=ma.validate.Length(min=1, max=20),
        metadata={"description": "Numbers AT dials, recording, when a call of this recording comes in"},
    )
