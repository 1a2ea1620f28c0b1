"""The recording domain in plain Python: statuses, identifiers and the lifecycle rules.

Nothing here imports Flask or SQLAlchemy, so the rules can be read and tested on their own.
"""

import enum
import re

# A recording id is what clients put in a URL: short, ASCII, no slashes. AT session ids
# (``ATVId_...``) fit, because a callback for an unknown session creates a recording named after it.
RECORDING_ID_MAX_LENGTH = 64
RECORDING_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


def is_valid_recording_id(value: str) -> bool:
    """Tell whether ``value`` can name a recording (anything else cannot exist)."""
    return RECORDING_ID_PATTERN.fullmatch(value) is not None


class Status(enum.StrEnum):
    """Where a recording is in its life; the values are the public contract."""

    RECORDING = "recording"  # the conference call is live and being recorded
    PROCESSING = "processing"  # the call is over; its recording URL is awaited
    COMPLETED = "completed"  # the recording is available at its URL
    FAILED = "failed"  # nothing was or will be recorded

    @property
    def is_terminal(self) -> bool:
        return self in (Status.COMPLETED, Status.FAILED)
