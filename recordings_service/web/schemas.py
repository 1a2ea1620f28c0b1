"""marshmallow schemas of the recordings API's request bodies, queries and pages.

The recording's own body is ``recordings.public.RecordingSchema``; the callback form is
``integrations.africastalking.callbacks.CallbackSchema``.
"""

import base64
import json
from datetime import UTC, datetime

import marshmallow as ma

from ..domain.recordings import Status
from ..fields import (
    PHONE_NUMBER_DOC,
    RECORDING_ID_DOC,
    Timestamp,
    WholeNumber,
    validate_phone_number,
    validate_recording_id,
)
from ..recordings.public import PagePosition, RecordingSchema


def _storable(value: datetime) -> None:
    """Refuse a time that has no UTC equivalent the database can hold (0001-01-01T00:00+14:00)."""
    try:
        utc = value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ma.ValidationError("Not a time that can be compared: out of range.") from None
    if not 1 <= utc.year <= 9999:
        raise ma.ValidationError("Not a time that can be compared: out of range.")


_BAD_CURSOR = "Not a valid cursor: use next_cursor from a previous page."
# Keys are 64-bit on PostgreSQL.
_MAX_KEY = 2**63 - 1


class Cursor(ma.fields.Field):
    """An opaque position in the listing (base64 of the last row's creation time and key)."""

    def _serialize(self, value: PagePosition | None, attr, obj, **kwargs):
        if value is None:
            return None
        raw = json.dumps([value.created_at.isoformat(), value.pk]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _deserialize(self, value, attr, data, **kwargs) -> PagePosition | None:
        if value == "":
            # The first page is asked for by leaving the cursor out: an empty one is a client's bug
            # (a null next_cursor pasted in), which would otherwise start over from the top, forever.
            raise ma.ValidationError("Not a valid cursor: empty. Leave cursor out for the first page.")
        try:
            created_at, pk = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
            position = PagePosition(datetime.fromisoformat(created_at), pk)
        except (ValueError, TypeError, RecursionError) as error:
            raise ma.ValidationError(_BAD_CURSOR) from error
        if position.created_at.tzinfo is None or type(pk) is not int or not 0 <= pk <= _MAX_KEY:
            raise ma.ValidationError(_BAD_CURSOR)
        _storable(position.created_at)
        return position


class ListQuerySchema(ma.Schema):
    """Which recordings to list, newest first."""

    status = ma.fields.Enum(Status, by_value=True)
    created_after = ma.fields.AwareDateTime(
        default_timezone=UTC, validate=_storable, metadata={"example": "2024-01-15T10:00:00.000Z"}
    )
    created_before = ma.fields.AwareDateTime(default_timezone=UTC, validate=_storable)
    limit = WholeNumber(load_default=50, validate=ma.validate.Range(min=1, max=200))
    cursor = Cursor(
        metadata={
            "description": "next_cursor of the previous page; left out for the first page (empty: 400)",
            "type": "string",
            "minLength": 1,
        }
    )


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
    status_callback_url = ma.fields.Url(
        schemes={"http", "https"},
        require_tld=False,
        validate=ma.validate.Length(max=2048),
        metadata={
            "description": "Where to post this recording's signed status events (Standard Webhooks), "
            "besides the service's WEBHOOK_URL",
            "example": "https://client.example/hooks/recordings",
        },
    )


class DeliverySchema(ma.Schema):
    """One event posted (or to post) to one endpoint: attempts and the last answer."""

    id = ma.fields.Integer(required=True)
    event_id = ma.fields.String(
        required=True, metadata={"description": "Its webhook-id, the same on every attempt"}
    )
    type = ma.fields.String(required=True, metadata={"example": "recording.completed"})
    url = ma.fields.String(required=True)
    state = ma.fields.String(required=True, metadata={"enum": ["pending", "done", "failed"]})
    attempts = ma.fields.Integer(required=True)
    last_status = ma.fields.Integer(required=True, allow_none=True, metadata={"description": "HTTP status"})
    last_error = ma.fields.String(required=True, allow_none=True)
    next_attempt_at = Timestamp(required=True, allow_none=True)
    created_at = Timestamp(required=True)


class DeliveriesSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(DeliverySchema), required=True)
