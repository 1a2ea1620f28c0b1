"""The callback Africa's Talking posts (a form of strings) and the XML it expects in answer.

What AT really sends: docs/africastalking.md.
"""

import re
from collections.abc import Mapping
from xml.etree.ElementTree import Element, SubElement, tostring

import marshmallow as ma

from ...domain.rules import DURATION_MAX_SECONDS, CallReport
from ...fields import RECORDING_ID_DOC, WholeNumber, validate_recording_id

# AT sends an empty recordingUrl when nothing was recorded; anything else must be an http(s) address: a
# host name or address, an optional port, then printable ASCII (AT's URLs are percent-encoded). One
# pattern, checked here and given in the OpenAPI spec, so the two cannot disagree.
RECORDING_URL = re.compile(
    r"(?:https?://[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(?::[0-9]{1,5})?(?:[/?#][!-~]*)?)?"
)


def _http_url_or_empty(value: str) -> None:
    if not RECORDING_URL.fullmatch(value):
        raise ma.ValidationError("Not a valid URL: http(s)://host/path, or empty.")


_DURATION = ma.validate.Range(min=0, max=DURATION_MAX_SECONDS)


class CallbackSchema(ma.Schema):
    """The fields of an Africa's Talking voice callback that decide a recording's status.

    AT posts a form; every value is a string. Fields not named here are stored with the callback,
    not rejected.
    """

    class Meta:
        unknown = ma.EXCLUDE
        # Other fields are stored with the callback as they came: one value each, a string. (A field
        # given twice is refused: it could not be stored as it came.)
        openapi = {"additionalProperties": {"type": "string"}}

    session_id = ma.fields.String(
        data_key="sessionId", required=True, validate=validate_recording_id, metadata=RECORDING_ID_DOC
    )
    active = ma.fields.String(
        data_key="isActive", required=True, validate=ma.validate.OneOf(["0", "1"], error="Must be 0 or 1.")
    )
    call_status = ma.fields.String(data_key="status")
    hangup_cause = ma.fields.String(data_key="hangupCause")
    duration = WholeNumber(data_key="durationInSeconds", validate=_DURATION)
    dial_duration = WholeNumber(data_key="dialDurationInSeconds", validate=_DURATION)
    recording_url = ma.fields.String(
        data_key="recordingUrl",
        validate=_http_url_or_empty,
        metadata={"pattern": f"^{RECORDING_URL.pattern}$"},
    )
    # Matched against the calls the service started, whose first callback may come before AT's answer.
    direction = ma.fields.String()
    caller_number = ma.fields.String(data_key="callerNumber")
    destination_number = ma.fields.String(data_key="destinationNumber")

    @ma.pre_load
    def blank_numbers_are_absent(self, data, **kwargs):
        # An empty duration says "not known", like a missing one; refusing it would drop the callback.
        return {key: value for key, value in data.items() if not (key.endswith("InSeconds") and value == "")}

    @ma.post_load
    def make_report(self, data, **kwargs) -> CallReport:
        # A form cannot say null: a field is there (a string, perhaps empty) or it is not.
        dial_duration = data.get("dial_duration")
        return CallReport(
            session_id=data["session_id"],
            active=data["active"] == "1",
            call_status=data.get("call_status") or None,
            hangup_cause=data.get("hangup_cause") or None,
            # The bridged leg is what Dial recorded; the whole call includes ringing.
            duration=dial_duration if dial_duration is not None else data.get("duration"),
            call_duration=data.get("duration"),
            recording_url=data.get("recording_url") or None,
            direction=data.get("direction") or None,
            numbers=tuple(n for n in (data.get("caller_number"), data.get("destination_number")) if n),
        )


_schema = CallbackSchema()


def parse_callback(fields: Mapping[str, str]) -> CallReport:
    """Return what the callback ``fields`` say; raises ``marshmallow.ValidationError`` naming bad fields."""
    return _schema.load(fields)


def actions_xml(dial: list[str], sequential: bool = False) -> str:
    """Return AT's XML answer: dial ``dial`` and record the call, or no action when empty.

    AT rings the numbers all at once (or one after another, ``sequential``) and bridges the first to
    answer, which is what is recorded; the others end with LOSE_RACE. It is not a conference.
    """
    root = Element("Response")
    if dial:
        attributes = {"record": "true", "phoneNumbers": ",".join(dial)}
        if sequential and len(dial) > 1:
            attributes["sequential"] = "true"
        SubElement(root, "Dial", attributes)
    return '<?xml version="1.0" encoding="UTF-8"?>' + tostring(root, encoding="unicode")


# What a callback may keep once its recording is deleted: AT's facts about the call, none about people.
# Anything else (phone numbers, carrier, the recording's URL, fields AT adds later) is redacted.
NOT_PERSONAL = frozenset(
    {
        "isActive",
        "sessionId",
        "direction",
        "callSessionState",
        "callStartTime",
        "dialStartTime",
        "status",
        "hangupCause",
        "lastBridgeHangupCause",
        "durationInSeconds",
        "dialDurationInSeconds",
        "currencyCode",
        "amount",
    }
)
REDACTED = "[redacted]"


def redacted(fields: Mapping[str, str]) -> dict[str, str]:
    """``fields`` with every value that may say something of a person replaced by ``[redacted]``."""
    return {key: value if key in NOT_PERSONAL else REDACTED for key, value in fields.items()}
