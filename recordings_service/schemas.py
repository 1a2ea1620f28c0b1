"""marshmallow schemas of every JSON body the API takes or gives: requests, queries, responses, errors.

Africa's Talking's callback is a form, not JSON: its schema is AT's, in
``integrations.africastalking.callback_form``.
"""

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime

import marshmallow as ma

from .domain.rules import AudioStatus, Status
from .fields import (
    PHONE_NUMBER_DOC,
    RECORDING_ID_DOC,
    Timestamp,
    WholeNumber,
    validate_phone_number,
    validate_recording_id,
)


class ErrorSchema(ma.Schema):
    """The body of every error response."""

    detail = ma.fields.String(required=True, metadata={"description": "What went wrong"})


class RecordingSchema(ma.Schema):
    """A recording as clients see it (the documented lookup)."""

    recording_id = ma.fields.String(required=True, metadata={"example": "conf_1234567890"})
    status = ma.fields.Enum(Status, by_value=True, required=True, metadata={"example": "completed"})
    duration = ma.fields.Integer(
        required=True, allow_none=True, metadata={"description": "Whole seconds; null until known"}
    )
    recording_url = ma.fields.String(required=True, allow_none=True)
    created_at = Timestamp(required=True, metadata={"example": "2024-01-15T10:00:00.000Z"})
    processed_at = Timestamp(required=True, allow_none=True, metadata={"example": "2024-01-15T10:05:42.000Z"})
    failure_reason = ma.fields.String(
        required=True, allow_none=True, metadata={"description": "Null unless failed"}
    )
    audio_url = ma.fields.String(
        required=True,
        allow_none=True,
        metadata={
            "description": "The service's own URL of the stored audio (the primary leg's); null until stored, "
            "and again once retention has removed it",
            "example": "https://recordings.example.com/api/v1/voice/recordings/conf_1234567890/audio",
        },
    )
    audio_removed_at = Timestamp(
        required=True,
        allow_none=True,
        metadata={"description": "When retention removed the audio; null until then"},
    )
    updated_at = Timestamp(
        required=True,
        metadata={
            "description": "When the recording last changed: of two bodies (or webhooks), the later one wins"
        },
    )


class LegAudioSchema(ma.Schema):
    """What became of one leg's recording: fetched, verified and stored, or why not yet (or not)."""

    status = ma.fields.Enum(AudioStatus, by_value=True, required=True)
    url = ma.fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "The service's URL of the leg's audio, once stored"},
    )
    content_type = ma.fields.String(required=True, allow_none=True)
    size = ma.fields.Integer(required=True, allow_none=True, metadata={"description": "Bytes"})
    sha256 = ma.fields.String(required=True, allow_none=True)
    duration = ma.fields.Integer(required=True, allow_none=True, metadata={"description": "Whole seconds"})
    stored_at = Timestamp(required=True, allow_none=True)
    removed_at = Timestamp(
        required=True, allow_none=True, metadata={"description": "When retention removed the stored audio"}
    )
    failure = ma.fields.String(
        required=True, allow_none=True, metadata={"description": "recording_unavailable or recording_invalid"}
    )
    attempts = ma.fields.Integer(required=True, metadata={"description": "Fetch attempts so far"})
    next_attempt_at = Timestamp(required=True, allow_none=True)
    last_error = ma.fields.String(required=True, allow_none=True)


class LegSchema(ma.Schema):
    """One AT call (session) of a recording, and its recording."""

    session_id = ma.fields.String(
        required=True,
        allow_none=True,
        metadata={
            "description": "AT's sessionId; null for a call the service started that AT has not named",
            "example": "ATVId_5f1c2e9a7b3d4c60a1e2f3b4c5d6e7f8",
        },
    )
    number = ma.fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "The number called, for a call the service started"},
    )
    primary = ma.fields.Boolean(
        required=True, metadata={"description": "Whether the lookup shows this leg's audio"}
    )
    ended = ma.fields.Boolean(required=True)
    duration = ma.fields.Integer(
        required=True, allow_none=True, metadata={"description": "AT's, whole seconds"}
    )
    recording_url = ma.fields.String(
        required=True, allow_none=True, metadata={"description": "As AT sent it"}
    )
    failure_reason = ma.fields.String(required=True, allow_none=True)
    audio = ma.fields.Nested(LegAudioSchema, required=True, allow_none=True)


class LegsSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(LegSchema), required=True)


@dataclass(frozen=True)
class PagePosition:
    """Where a page of the newest-first listing ended: the last row's creation time and key."""

    created_at: datetime
    pk: int


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
