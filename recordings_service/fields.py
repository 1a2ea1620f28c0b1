"""marshmallow fields and validators that every schema shares: ids, phone numbers, timestamps.

Each rule is written once here and documented from the same source in the OpenAPI spec.
"""

import re

import marshmallow as ma

from .domain.clock import format_timestamp
from .domain.rules import RECORDING_ID_MAX_LENGTH, RECORDING_ID_PATTERN, is_valid_recording_id

RECORDING_ID_DOC = {"pattern": f"^{RECORDING_ID_PATTERN.pattern}$", "maxLength": RECORDING_ID_MAX_LENGTH}


def validate_recording_id(value: str) -> None:
    """Refuse what cannot name a recording or an AT session."""
    if not is_valid_recording_id(value):
        raise ma.ValidationError(
            f"Must be 1 to {RECORDING_ID_MAX_LENGTH} characters: letters, digits and _ . : - (not first)."
        )


PHONE_NUMBER = re.compile(r"\+[1-9][0-9]{6,14}")
PHONE_NUMBER_DOC = {"pattern": f"^{PHONE_NUMBER.pattern}$", "example": "+254711082111"}


def validate_phone_number(value: str) -> None:
    if not PHONE_NUMBER.fullmatch(value):
        raise ma.ValidationError("Must be an E.164 number such as +254711082111.")


class WholeNumber(ma.fields.Integer):
    """An integer written in ASCII digits (``-`` first where negatives are allowed): Python's ``int``
    also reads "+5", " 5", "5_000" and other scripts' digits ("٣"), which no client means as numbers."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and not (
            value.removeprefix("-").isascii() and value.removeprefix("-").isdigit()
        ):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class Timestamp(ma.fields.DateTime):
    """A UTC timestamp in the API's form, ``2024-01-15T10:00:00.000Z``."""

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else format_timestamp(value)
