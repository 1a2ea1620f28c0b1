"""The callback Africa's Talking posts (a form of strings) and the XML it expects in answer.

See shared/docs/africastalking-voice.md for what AT really sends.
"""

from collections.abc import Mapping
from xml.etree.ElementTree import Element, SubElement, tostring

import marshmallow as ma

from ...domain.recordings import DURATION_MAX_SECONDS, CallReport
from ...fields import RECORDING_ID_DOC, WholeNumber, validate_recording_id


def _http_url_or_empty(value: str) -> None:
    # AT sends an empty recordingUrl when nothing was recorded; anything else must be a web address.
    if value:
        ma.validate.URL(schemes={"http", "https"}, require_tld=False)(value)


_DURATION = ma.validate.Range(min=0, max=DURATION_MAX_SECONDS)


class CallbackSchema(ma.Schema):
    """The fields of an Africa's Talking voice callback that decide a recording's status.

    AT posts a form; every value is a string. Fields not named here are stored with the callback,
    not rejected.
    """

    class Meta:
        unknown = ma.EXCLUDE

    session_id = ma.fields.String(
        data_key="sessionId", required=True, validate=validate_recording_id, metadata=RECORDING_ID_DOC
    )
    active = ma.fields.String(
        data_key="isActive", required=True, validate=ma.validate.OneOf(["0", "1"], error="Must be 0 or 1.")
    )
    call_status = ma.fields.String(data_key="status", load_default=None)
    hangup_cause = ma.fields.String(data_key="hangupCause", load_default=None)
    duration = WholeNumber(data_key="durationInSeconds", load_default=None, validate=_DURATION)
    dial_duration = WholeNumber(data_key="dialDurationInSeconds", load_default=None, validate=_DURATION)
    recording_url = ma.fields.String(data_key="recordingUrl", load_default=None, validate=_http_url_or_empty)

    @ma.pre_load
    def blank_numbers_are_absent(self, data, **kwargs):
        # An empty duration says "not known", like a missing one; refusing it would drop the callback.
        return {key: value for key, value in data.items() if not (key.endswith("InSeconds") and value == "")}

    @ma.post_load
    def make_report(self, data, **kwargs) -> CallReport:
        return CallReport(
            session_id=data["session_id"],
            active=data["active"] == "1",
            call_status=data["call_status"] or None,
            hangup_cause=data["hangup_cause"] or None,
            # The bridged leg is what Dial recorded; the whole call includes ringing.
            duration=data["dial_duration"] if data["dial_duration"] is not None else data["duration"],
            recording_url=data["recording_url"] or None,
        )


_schema = CallbackSchema()


def parse_callback(fields: Mapping[str, str]) -> CallReport:
    """Return what the callback ``fields`` say; raises ``marshmallow.ValidationError`` naming bad fields."""
    return _schema.load(fields)


def actions_xml(dial: list[str]) -> str:
    """Return AT's XML answer: dial ``dial`` and record the call, or no action when empty."""
    root = Element("Response")
    if dial:
        SubElement(root, "Dial", record="true", phoneNumbers=",".join(dial))
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
