"""Recordings in plain Python: their statuses, their ids, and the rules that move them along."""

import enum
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

# A recording id is what clients put in a URL: short, ASCII, no slashes. AT session ids
# (``ATVId_...``) fit, because a callback for an unknown session creates a recording named after it.
RECORDING_ID_MAX_LENGTH = 64
RECORDING_ID_PATTERN = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.:-]{{0,{RECORDING_ID_MAX_LENGTH - 1}}}")


def is_valid_recording_id(value: str) -> bool:
    """Tell whether ``value`` can name a recording (anything else cannot exist)."""
    return RECORDING_ID_PATTERN.fullmatch(value) is not None


class Status(enum.StrEnum):
    """Where a recording is in its life; the values are part of the API."""

    RECORDING = "recording"  # the call is live and being recorded
    PROCESSING = "processing"  # the call is over: its audio is awaited, fetched, verified and stored
    COMPLETED = "completed"  # the audio is stored here and available
    FAILED = "failed"  # nothing was recorded, or the recording could not be had

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
# A call the service started: AT's direction for it, and AT's status for a call it placed.
OUTBOUND = "Outbound"
AT_QUEUED = "Queued"
# A callback of an outbound call that AT has not yet named to the service (its answer to the start is
# still on its way) is matched to the call started this recently to its number, and no earlier one.
STARTED_CALL_MATCH_WINDOW = timedelta(minutes=10)
# The failure reasons of a start AT never answered (it may or may not have placed the call).
AT_TIMEOUT = "at_timeout"
AT_UNREACHABLE = "at_unreachable"
# The failure reason the sweep gives a recording whose URL never came.
URL_TIMEOUT = "recording_url_timeout"
# Why a leg's audio could not be kept: its URL never served it, or what it served was not audio.
RECORDING_UNAVAILABLE = "recording_unavailable"
RECORDING_INVALID = "recording_invalid"


@dataclass(frozen=True)
class CallReport:
    """What one Africa's Talking callback says about its call, once validated."""

    session_id: str
    active: bool
    call_status: str | None = None  # AT's ``status`` of the call (Success, NotAnswered...), not a Status
    hangup_cause: str | None = None
    duration: int | None = None  # dialDurationInSeconds (the bridged, recorded leg) when present
    call_duration: int | None = None  # durationInSeconds: the whole call, ringing included
    recording_url: str | None = None  # None when AT sent nothing or an empty string
    direction: str | None = None  # Inbound, or Outbound for a call placed through AT's Voice API
    # callerNumber and destinationNumber as AT sent them. AT's documentation puts the phone user's
    # number in callerNumber and the AT number in destinationNumber; a call the service started is
    # matched on either, so that the match does not hang on which is which.
    numbers: tuple[str, ...] = ()


@dataclass(frozen=True)
class LegFacts:
    """What the service has learned about one call leg (one AT session), from all its callbacks so far.

    Learning only ever adds: a call that ended stays ended, a URL once seen stays, so the facts come
    out the same whatever order the callbacks arrive in and however often.
    """

    heard: bool = False  # a session bound by registration counts only once AT has called back
    ended: bool = False
    ended_well: bool = False
    duration: int | None = None
    call_duration: int | None = None
    recording_url: str | None = None
    failure_reason: str | None = None

    def learn(self, report: CallReport) -> "LegFacts":
        ended_now = not report.active
        well = ended_now and _ended_well(report)
        return LegFacts(
            heard=True,
            ended=self.ended or ended_now,
            ended_well=self.ended_well or well,
            duration=_max(self.duration, report.duration),
            call_duration=_max(self.call_duration, report.call_duration),
            recording_url=self.recording_url or report.recording_url,
            failure_reason=self.failure_reason
            or (_failure_reason(report) if ended_now and not well else None),
        )


def longer_than_its_call(seconds: float, call_duration: int | None) -> bool:
    """Whether audio of ``seconds`` cannot be a recording of a call AT says lasted ``call_duration``."""
    # AT counts whole seconds, and no recording outlasts its call: a margin for rounding, no more.
    return call_duration is not None and seconds > call_duration * 1.1 + 5


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


class AudioStatus(enum.StrEnum):
    """What the service has done with one leg's recording, once AT gave its URL."""

    PENDING = "pending"  # being fetched, verified and stored (retried until it is, or until the give-up)
    STORED = "stored"
    FAILED = "failed"  # given up: RECORDING_UNAVAILABLE or RECORDING_INVALID


@dataclass(frozen=True)
class LegAudio:
    """One leg's audio as the service holds it."""

    status: AudioStatus = AudioStatus.PENDING
    duration: int | None = None  # whole seconds of the stored audio
    stored_at: datetime | None = None
    failure: str | None = None


@dataclass(frozen=True)
class LegState:
    """One leg of a recording (one AT session): what its callbacks said, and what became of its audio."""

    session_id: str | None  # None for a call the service started, until AT names it
    facts: LegFacts = LegFacts()
    audio: LegAudio | None = None  # None until the leg's recording URL came


@dataclass(frozen=True)
class RecordingState:
    """The part of a recording that its legs decide."""

    status: Status = Status.RECORDING
    duration: int | None = None
    recording_url: str | None = None
    failure_reason: str | None = None
    processed_at: datetime | None = None
    audio_session_id: str | None = None  # the leg whose stored audio the recording shows


def derive(legs: Iterable[LegState]) -> RecordingState:
    """What the legs say the recording is, regardless of what it was.

    A leg that brought a URL decides. The longest such leg whose audio has not failed is the
    recording's (the others are kept too). Once its audio is stored, the recording is completed, with
    the stored audio's length.
    """
    heard = [leg for leg in legs if leg.facts.heard]
    recorded = [leg for leg in heard if leg.facts.recording_url]
    if recorded:
        return _recorded(recorded)
    if not heard or any(not leg.facts.ended for leg in heard):
        return RecordingState(Status.RECORDING)
    well = [leg.facts for leg in heard if leg.facts.ended_well]
    if well:
        return RecordingState(Status.PROCESSING, duration=max(call.duration or 0 for call in well))
    reasons = sorted({leg.facts.failure_reason or "unknown" for leg in heard})
    return RecordingState(Status.FAILED, failure_reason=_joined(reasons))


def _recorded(recorded: list[LegState]) -> RecordingState:
    def longest(leg: LegState):  # deterministic when legs bring several URLs
        return (leg.facts.duration or 0, leg.facts.recording_url)

    usable = [leg for leg in recorded if leg.audio is None or leg.audio.status is not AudioStatus.FAILED]
    if not usable:
        best = max(recorded, key=longest)
        reasons = sorted({leg.audio.failure or RECORDING_UNAVAILABLE for leg in recorded if leg.audio})
        return RecordingState(
            Status.FAILED, best.facts.duration, best.facts.recording_url, failure_reason=_joined(reasons)
        )
    best = max(usable, key=longest)
    if best.audio is None or best.audio.status is AudioStatus.PENDING:
        return RecordingState(Status.PROCESSING, best.facts.duration, best.facts.recording_url)
    return RecordingState(
        Status.COMPLETED,
        best.audio.duration,
        best.facts.recording_url,
        processed_at=best.audio.stored_at,
        audio_session_id=best.session_id,
    )


def _joined(reasons: list[str]) -> str:
    return ", ".join(reasons)[:FAILURE_REASON_MAX_LENGTH]


# Forward only: recording -> processing -> completed or failed. Completed is the end of the line;
# failed gives way only to completed, because a recording that exists must never be hidden.
_RANK = {Status.RECORDING: 0, Status.PROCESSING: 1, Status.FAILED: 2, Status.COMPLETED: 3}


def advance(current: RecordingState, legs: Iterable[LegState]) -> RecordingState:
    """Return the recording's next state once ``legs`` are known: never backwards, completed for good."""
    if current.status is Status.COMPLETED:
        return current
    derived = derive(legs)
    # The same status may still learn more: another leg's duration, another leg's failure reason.
    return derived if _RANK[derived.status] >= _RANK[current.status] else current


def start_refused(current: RecordingState, legs: Iterable[LegState], reason: str) -> RecordingState:
    """AT placed none of the calls a start asked for (``reason``, AT's): the recording failed, unless
    a call of it has been heard from already (then its calls decide, as ever)."""
    if any(leg.facts.heard for leg in legs) or current.status is not Status.RECORDING:
        return current
    return replace(current, status=Status.FAILED, failure_reason=reason[:FAILURE_REASON_MAX_LENGTH])


def awaits_url(legs: Iterable[LegState]) -> bool:
    """Whether the recording's calls ended well but no leg has brought a recording URL (yet)."""
    return not any(leg.facts.recording_url for leg in legs if leg.facts.heard)


def time_out(current: RecordingState, legs: Iterable[LegState]) -> RecordingState:
    """Fail a recording whose call ended well but whose URL never came (the sweep's verdict)."""
    if current.status is not Status.PROCESSING or not awaits_url(legs):
        return current
    return replace(current, status=Status.FAILED, failure_reason=URL_TIMEOUT)


def retry_delay(attempt: int, base: float, most: float, rng: random.Random) -> float:
    """Seconds before retry number ``attempt`` (1 for the first): exponential from ``base``, at most
    ``most``, with full jitter, so that many items failing together do not retry together."""
    ceiling = min(most, base * 2 ** min(attempt - 1, 62))
    return rng.uniform(ceiling / 2, ceiling)
