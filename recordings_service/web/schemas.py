"""marshmallow schemas of the recordings API's request bodies, queries and pages.

The recording's own body is ``recordings.public.RecordingSchema``; the callback form is
``integrations.africastalking.callback_form.CallbackSchema``.
"""

import base64
import json
from datetime import UTC, datetime

import marshmallow as ma

from ..domain.rules import Status
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


class RecordedCallsSchema(ma.Schema):
    """How a recording's calls are put through and who is told of it: what registration and call start share."""

    recording_id = ma.fields.String(
        validate=validate_recording_id, metadata={"example": "conf_1234567890", **RECORDING_ID_DOC}
    )
    dial = ma.fields.List(
        ma.fields.String(validate=validate_phone_number, metadata=PHONE_NUMBER_DOC),
        validate=ma.validate.Length(min=1, max=20),
        metadata={
            "description": "The numbers each answered call of this recording is put through to, recorded "
            "(AT's Dial): AT rings them all at once (one after another with `sequential`), bridges the first "
            "to answer and records that conversation; the others end with LOSE_RACE. Not a conference: AT "
            "has none. Without it, VOICE_DIAL_NUMBERS"
        },
    )
    sequential = ma.fields.Boolean(
        metadata={"description": "Ring the `dial` numbers one after another instead of all at once"}
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


class RegistrationSchema(RecordedCallsSchema):
    """Register a recording and the Africa's Talking calls (sessions) that make it up."""

    session_ids = ma.fields.List(
        ma.fields.String(validate=validate_recording_id, metadata=RECORDING_ID_DOC),
        load_default=list,
        validate=ma.validate.Length(max=50),
        metadata={
            "description": "AT sessionIds of the recording's calls (one per participant's call); a session a "
            "callback got to first is taken from the provisional recording it made",
            "example": ["ATVId_5f1c2e9a"],
        },
    )


class CallStartSchema(RecordedCallsSchema):
    """Start recorded calls through Africa's Talking: AT calls each of ``to``; each answered call is put
    through to ``dial`` and recorded."""

    to = ma.fields.List(
        ma.fields.String(validate=validate_phone_number, metadata=PHONE_NUMBER_DOC),
        required=True,
        validate=ma.validate.Length(min=1, max=20),
        metadata={"description": "The numbers AT calls, one call (one leg of the recording) each"},
    )
    from_number = ma.fields.String(
        data_key="from",
        validate=validate_phone_number,
        metadata={
            **PHONE_NUMBER_DOC,
            "description": "The AT number calls come from (default AT_VOICE_NUMBER)",
        },
    )

    @ma.validates("to")
    def different_numbers(self, value: list[str], **kwargs) -> None:
        if len(set(value)) != len(value):
            raise ma.ValidationError("Each number once.")


class StartedLegSchema(ma.Schema):
    """One number AT was asked to call: its status as AT answered, and the call's session."""

    number = ma.fields.String(required=True, metadata={"example": "+254711082111"})
    status = ma.fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "AT's: Queued when the call was placed", "example": "Queued"},
    )
    session_id = ma.fields.String(required=True, allow_none=True, metadata={"example": "ATVId_5f1c2e9a"})


class CallStartedSchema(RecordingSchema):
    """The recording the calls make up, as the lookup shows it, and each call started."""

    legs = ma.fields.List(ma.fields.Nested(StartedLegSchema), required=True)


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
