"""Recordings in plain Python: their statuses, their ids, and the rules that move them along."""

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

# A recording id is what clients put in a URL: short, ASCII, no slashes. AT session ids
# (``ATVId_...``) fit, because a callback for an unknown session creates a recording named after it.
RECORDING_ID_MAX_LENGTH = 64
RECORDING_ID_PATTERN = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.:-]{{0,{RECORDING_ID_MAX_LENGTH - 1}}}")


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


# A failure reason is AT's hangupCause or status, which AT does not bound: longer ones are cut to this
# (the stored callback keeps them whole).
FAILURE_REASON_MAX_LENGTH = 128
# The longest duration a callback may state: what a 32-bit column holds, some 68 years.
DURATION_MAX_SECONDS = 2**31 - 1

# What Africa's Talking reports for a call that connected and ended normally.
AT_SUCCESS = "Success"
AT_NORMAL_CLEARING = "NORMAL_CLEARING"
# The failure reason the sweep gives a recording whose URL never came.
URL_TIMEOUT = "recording_url_timeout"


@dataclass(frozen=True)
class CallReport:
    """What one Africa's Talking callback says about its call, once validated."""

    session_id: str
    active: bool
    call_status: str | None = None  # AT's ``status`` of the call (Success, NotAnswered...), not a Status
    hangup_cause: str | None = None
    duration: int | None = None  # dialDurationInSeconds (the bridged, recorded leg) when present
    recording_url: str | None = None  # None when AT sent nothing or an empty string


@dataclass(frozen=True)
class CallFacts:
    """What the service has learned about one AT call session, from all its callbacks so far.

    Learning only ever adds: a call that ended stays ended, a URL once seen stays, so the facts come
    out the same whatever order the callbacks arrive in and however often.
    """

    heard: bool = False  # a session bound by registration counts only once AT has called back
    ended: bool = False
    ended_well: bool = False
    duration: int | None = None
    recording_url: str | None = None
    failure_reason: str | None = None

    def learn(self, report: CallReport) -> "CallFacts":
        ended_now = not report.active
        well = ended_now and _ended_well(report)
        return CallFacts(
            heard=True,
            ended=self.ended or ended_now,
            ended_well=self.ended_well or well,
            duration=_max(self.duration, report.duration),
            recording_url=self.recording_url or report.recording_url,
            failure_reason=self.failure_reason
            or (_failure_reason(report) if ended_now and not well else None),
        )


def _ended_well(report: CallReport) -> bool:
    connected = report.call_status == AT_SUCCESS or report.hangup_cause == AT_NORMAL_CLEARING
    return connected and (report.duration or 0) > 0


def _failure_reason(report: CallReport) -> str:
    if report.hangup_cause and report.hangup_cause != AT_NORMAL_CLEARING:
        return report.hangup_cause[:FAILURE_REASON_MAX_LENGTH]
    if report.call_status and report.call_status != AT_SUCCESS:
        return report.call_status[:FAILURE_REASON_MAX_LENGTH]
    return "zero_duration"


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


@dataclass(frozen=True)
class RecordingState:
    """The part of a recording that callbacks decide."""

    status: Status = Status.RECORDING
    duration: int | None = None
    recording_url: str | None = None
    failure_reason: str | None = None
    processed_at: datetime | None = None


def derive(calls: Iterable[CallFacts]) -> RecordingState:
    """What the calls' facts say the recording is, regardless of what it was."""
    heard = [call for call in calls if call.heard]
    recorded = [call for call in heard if call.recording_url]
    if recorded:
        # Deterministic when legs bring several URLs: the longest recording.
        best = max(recorded, key=lambda call: (call.duration or 0, call.recording_url))
        return RecordingState(Status.COMPLETED, best.duration, best.recording_url)
    if not heard or any(not call.ended for call in heard):
        return RecordingState(Status.RECORDING)
    well = [call for call in heard if call.ended_well]
    if well:
        return RecordingState(Status.PROCESSING, duration=max(call.duration or 0 for call in well))
    reasons = sorted({call.failure_reason or "unknown" for call in heard})
    return RecordingState(Status.FAILED, failure_reason=", ".join(reasons)[:FAILURE_REASON_MAX_LENGTH])


# Forward only: recording -> processing -> completed or failed. Completed is the end of the line;
# failed gives way only to completed, because a recording that exists must never be hidden.
_RANK = {Status.RECORDING: 0, Status.PROCESSING: 1, Status.FAILED: 2, Status.COMPLETED: 3}


def advance(current: RecordingState, calls: Iterable[CallFacts], now: datetime) -> RecordingState:
    """Return the recording's next state once ``calls`` are known: never backwards, completed for good."""
    if current.status is Status.COMPLETED:
        return current
    derived = derive(calls)
    if derived.status is Status.COMPLETED:
        return replace(derived, processed_at=now)
    # The same status may still learn more: another leg's duration, another leg's failure reason.
    return derived if _RANK[derived.status] >= _RANK[current.status] else current


def time_out(current: RecordingState) -> RecordingState:
    """Fail a recording whose call ended well but whose URL never came (the sweep's verdict)."""
    if current.status is not Status.PROCESSING:
        return current
    return replace(current, status=Status.FAILED, failure_reason=URL_TIMEOUT)
