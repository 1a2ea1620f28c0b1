"""marshmallow schemas for every JSON body the service reads or writes."""

import base64
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

import marshmallow as ma
from werkzeug.http import generate_etag

from .domain import RECORDING_ID_MAX_LENGTH, RECORDING_ID_PATTERN, Callback, Status, is_valid_recording_id
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
    failure_reason = ma.fields.String(
        required=True, allow_none=True, metadata={"description": "Null unless failed"}
    )


recording_schema = RecordingSchema()


@dataclass(frozen=True)
class PagePosition:
    """Where a page of the newest-first listing ended: the last row's creation time and key."""

    created_at: datetime
    pk: int


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

    status = ma.fields.String(validate=ma.validate.OneOf([s.value for s in Status]))
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


def _recording_id(value: str) -> None:
    if not is_valid_recording_id(value):
        raise ma.ValidationError(
            f"Must be 1 to {RECORDING_ID_MAX_LENGTH} characters: letters, digits and _ . : - (not first)."
        )


def _http_url_or_empty(value: str) -> None:
    # AT sends an empty recordingUrl when nothing was recorded; anything else must be a web address.
    if value:
        ma.validate.URL(schemes={"http", "https"}, require_tld=False)(value)


_PHONE_NUMBER = re.compile(r"\+[1-9][0-9]{6,14}")


def _phone_number(value: str) -> None:
    if not _PHONE_NUMBER.fullmatch(value):
        raise ma.ValidationError("Must be an E.164 number such as +254711082111.")


# The same rules as the validators, for the OpenAPI spec (and so for clients and the fuzz test).
RECORDING_ID_DOC = {"pattern": f"^{RECORDING_ID_PATTERN.pattern}$", "maxLength": RECORDING_ID_MAX_LENGTH}
PHONE_NUMBER_DOC = {"pattern": f"^{_PHONE_NUMBER.pattern}$", "example": "+254711082111"}


class RegistrationSchema(ma.Schema):
    """Register a recording and the Africa's Talking calls (sessions) that make it up."""

    recording_id = ma.fields.String(
        validate=_recording_id, metadata={"example": "conf_1234567890", **RECORDING_ID_DOC}
    )
    session_ids = ma.fields.List(
        ma.fields.String(validate=_recording_id, metadata=RECORDING_ID_DOC),
        load_default=list,
        validate=ma.validate.Length(max=50),
        metadata={"description": "AT sessionIds of the conference's calls", "example": ["ATVId_5f1c2e9a"]},
    )
    dial = ma.fields.List(
        ma.fields.String(validate=_phone_number, metadata=PHONE_NUMBER_DOC),
        validate=ma.validate.Length(min=1, max=20),
        metadata={"description": "Numbers AT dials, recording, when a call of this recording comes in"},
    )


class CallbackSchema(ma.Schema):
    """The fields of an Africa's Talking voice callback that decide a recording's status.

    AT posts a form; every value is a string. Fields not named here are stored with the callback,
    not rejected.
    """

    class Meta:
        unknown = ma.EXCLUDE

    session_id = ma.fields.String(
        data_key="sessionId", required=True, validate=_recording_id, metadata=RECORDING_ID_DOC
    )
    active = ma.fields.Boolean(
        data_key="isActive",
        required=True,
        truthy={"1"},
        falsy={"0"},
        error_messages={"invalid": "Must be 0 or 1."},
    )
    status = ma.fields.String(load_default=None)
    hangup_cause = ma.fields.String(data_key="hangupCause", load_default=None)
    duration = ma.fields.Integer(
        data_key="durationInSeconds", load_default=None, validate=ma.validate.Range(min=0)
    )
    dial_duration = ma.fields.Integer(
        data_key="dialDurationInSeconds", load_default=None, validate=ma.validate.Range(min=0)
    )
    recording_url = ma.fields.String(data_key="recordingUrl", load_default=None, validate=_http_url_or_empty)

    @ma.pre_load
    def blank_numbers_are_absent(self, data, **kwargs):
        # An empty duration says "not known", like a missing one; refusing it would drop the callback.
        return {key: value for key, value in data.items() if not (key.endswith("InSeconds") and value == "")}

    @ma.post_load
    def make_callback(self, data, **kwargs) -> Callback:
        return Callback(
            session_id=data["session_id"],
            active=data["active"],
            status=data["status"] or None,
            hangup_cause=data["hangup_cause"] or None,
            # The bridged leg is what Dial recorded; the whole call includes ringing.
            duration=data["dial_duration"] if data["dial_duration"] is not None else data["duration"],
            recording_url=data["recording_url"] or None,
        )


@dataclass(frozen=True)
class Rendered:
    """A recording's lookup body as sent, with its strong ETag (a hash of exactly these bytes)."""

    body: bytes
    etag: str
    status: Status


def render_recording(recording) -> Rendered:
    """Serialise ``recording`` as the lookup answers it; equal bodies give equal ETags."""
    body = json.dumps(recording_schema.dump(recording), separators=(",", ":")).encode()
    return Rendered(body, generate_etag(body), Status(recording.status))
