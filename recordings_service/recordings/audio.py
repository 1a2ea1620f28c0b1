"""A leg's audio: the job that fetches it once Africa's Talking gives its URL, and what the job's outcome
does to the leg and its recording. (The fetching, verifying and storing is the worker's: work/audio.py.)
"""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from ..domain.clock import utcnow
from ..domain.recordings import AudioStatus, advance
from ..extensions import db
from ..persistence import queue
from ..persistence.database import single_read, write_transaction
from ..persistence.models import CallSession, Job, JobKind, JobState, Recording
from . import events
from .locks import lock_recording, sessions_of


def await_audio(call: CallSession, now: datetime) -> None:
    """In the callback's transaction: a leg whose URL has come and that has no audio yet waits for it, and
    the job that fetches it is written with it."""
    if call.recording_url and call.audio_status is None:
        call.audio_status = AudioStatus.PENDING
        call.url_received_at = now
        queue.enqueue(db.session, JobKind.FETCH_AUDIO, recording_pk=call.recording_pk, session_pk=call.pk)


@dataclass(frozen=True)
class AudioWork:
    """What a fetch job is to fetch."""

    recording_id: str
    session_id: str
    url: str
    url_received_at: datetime


def work_for(claim: queue.Claim) -> AudioWork | None:
    """What the claimed fetch job is to fetch: None when its leg no longer waits for audio."""
    query = (
        select(
            Recording.recording_id,
            CallSession.session_id,
            CallSession.recording_url,
            CallSession.url_received_at,
        )
        .join(Recording, Recording.pk == CallSession.recording_pk)
        .where(CallSession.pk == claim.session_pk, CallSession.audio_status == AudioStatus.PENDING)
    )
    with single_read() as connection:
        row = connection.execute(query).first()
    return None if row is None else AudioWork(*row)


@dataclass(frozen=True)
class StoredAudio:
    """A leg's audio as stored: where, how much, its SHA-256, its type and its whole seconds."""

    key: str
    size: int
    sha256: str
    content_type: str
    duration: int


def audio_stored(claim: queue.Claim, stored: StoredAudio) -> str:
    """Record the leg's stored audio, finish its job and move its recording on, in one transaction:
    ``"stored"``. ``"unwanted"`` when no one wants what was stored: the recording was deleted (the leg
    keeps the key, for ``deletion.remove_deleted_audio``), or the job was cancelled or its leg is gone
    (the caller deletes it). ``"lost"``, changing nothing, when another worker took the job, which
    stores the same key or has already."""
    now = utcnow()
    with write_transaction() as session:
        call, recording = _lock(claim)
        job = queue.held(session, claim)
        if call is None:
            return "unwanted"
        if recording.deleted_at is not None:
            if call.audio_key is None:
                call.audio_key = stored.key
            if job is not None:
                queue.finish(job, now)
            return "unwanted"
        if job is None:
            taken = session.get(Job, claim.pk)
            if call.audio_key == stored.key or (taken is not None and taken.state is JobState.PENDING):
                return "lost"
            return "unwanted"
        call.audio_status = AudioStatus.STORED
        call.audio_key, call.audio_size, call.audio_sha256 = stored.key, stored.size, stored.sha256
        call.audio_content_type, call.audio_duration = stored.content_type, stored.duration
        call.audio_stored_at, call.audio_error = now, None
        queue.finish(job, now)
        events.set_state(recording, advance(recording.state, [leg.leg for leg in sessions_of(recording)]))
    return "stored"


def attempt_failed(claim: queue.Claim, error: str, retry_at: datetime | None, failure: str) -> bool:
    """Record a failed attempt: the job is due again at ``retry_at``; or, with ``retry_at`` None, given up,
    the leg's audio failed with ``failure`` and its recording moved on. False when the claim was lost."""
    now = utcnow()
    with write_transaction() as session:
        call, recording = _lock(claim)
        job = queue.held(session, claim)
        if job is None or call is None:
            return False
        call.audio_error = error
        if retry_at is not None:
            queue.again(job, retry_at, error)
            return True
        call.audio_status, call.audio_failure = AudioStatus.FAILED, failure
        queue.give_up(job, now, error)
        events.set_state(recording, advance(recording.state, [leg.leg for leg in sessions_of(recording)]))
    return True


def _lock(claim: queue.Claim) -> tuple[CallSession | None, Recording | None]:
    """The claim's leg and its recording, the recording's row locked first (the order every writer keeps)."""
    recording_pk = db.session.execute(
        select(CallSession.recording_pk).filter_by(pk=claim.session_pk)
    ).scalar_one_or_none()
    if recording_pk is None:
        return None, None
    recording = lock_recording(pk=recording_pk)
    return db.session.get(CallSession, claim.session_pk), recording


def drop(claim: queue.Claim) -> None:
    """Finish a fetch job whose leg no longer waits for audio."""
    with write_transaction() as session:
        job = queue.held(session, claim)
        if job is not None:
            queue.finish(job, utcnow())
