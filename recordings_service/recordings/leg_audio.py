"""A leg's audio: the job that fetches it once Africa's Talking gives its URL, and what the job's outcome
does to the leg and its recording. (The fetching, verifying and storing is the worker's: work/fetch_audio.py.)
"""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from ..domain.clock import utcnow
from ..domain.rules import AudioStatus, advance
from ..extensions import db
from ..persistence import queue
from ..persistence.database import single_read
from ..persistence.models import Job, JobKind, JobState, Leg, Recording
from . import events
from .locks import legs_of, lock_recording


def await_audio(leg: Leg, now: datetime) -> None:
    """In the callback's transaction: a leg whose URL has come and that has no audio yet waits for it, and
    the job that fetches it is written with it."""
    if leg.recording_url and leg.audio_status is None:
        leg.audio_status = AudioStatus.PENDING
        leg.url_received_at = now
        queue.enqueue(db.session, JobKind.FETCH_AUDIO, recording_pk=leg.recording_pk, leg_pk=leg.pk)


@dataclass(frozen=True)
class AudioWork:
    """What a fetch job is to fetch."""

    recording_id: str
    session_id: str
    url: str
    url_received_at: datetime
    call_duration: int | None  # what AT said the whole leg lasted, once it said


def work_for(claim: queue.Claim) -> AudioWork | None:
    """What the claimed fetch job is to fetch: None when its leg no longer waits for audio."""
    query = (
        select(
            Recording.recording_id,
            Leg.session_id,
            Leg.recording_url,
            Leg.url_received_at,
            Leg.call_duration,
        )
        .join(Recording, Recording.pk == Leg.recording_pk)
        .where(Leg.pk == claim.leg_pk, Leg.audio_status == AudioStatus.PENDING)
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


def lock(claim: queue.Claim) -> None:
    """In the settling transaction of a fetch job: its leg's recording row locked, before the job's (the
    order every writer keeps)."""
    recording_pk = db.session.execute(
        select(Leg.recording_pk).filter_by(pk=claim.leg_pk)
    ).scalar_one_or_none()
    if recording_pk is not None:
        lock_recording(pk=recording_pk)


def _leg(job: Job) -> tuple[Leg, Recording]:
    """The fetch job's leg and its recording (locked by ``lock``)."""
    leg = db.session.get(Leg, job.leg_pk)
    return leg, db.session.get(Recording, leg.recording_pk)


def audio_stored(job: Job, stored: StoredAudio) -> bool:
    """In the settling transaction of the leg's fetch job: record its stored audio and move its
    recording on. False when the recording was deleted meanwhile: the leg keeps the key for
    ``deletion.remove_deleted_audio``, and the caller deletes what it stored."""
    leg, recording = _leg(job)
    if recording.deleted_at is not None:
        _keep_for_removal(leg, stored)
        return False
    leg.audio_status = AudioStatus.STORED
    leg.audio_key, leg.audio_size, leg.audio_sha256 = stored.key, stored.size, stored.sha256
    leg.audio_content_type, leg.audio_duration = stored.content_type, stored.duration
    leg.audio_stored_at, leg.audio_error = utcnow(), None
    events.set_state(recording, advance(recording.state, [leg.state for leg in legs_of(recording)]))
    return True


def unwanted(claim: queue.Claim, stored: StoredAudio) -> bool:
    """In the settling transaction of a fetch job no longer held (cancelled, or taken by another worker):
    whether what it stored is nobody's, to delete. Not when another worker holds the job or has stored
    the same key, which is its audio too."""
    leg = db.session.get(Leg, claim.leg_pk)
    if leg is None:
        return True
    recording = db.session.get(Recording, leg.recording_pk)
    if recording.deleted_at is not None:
        _keep_for_removal(leg, stored)
        return True
    taken = db.session.get(Job, claim.pk)
    return not (leg.audio_key == stored.key or (taken is not None and taken.state is JobState.PENDING))


def _keep_for_removal(leg: Leg, stored: StoredAudio) -> None:
    """A deleted recording's leg holds the key of audio stored after the delete, until it is removed."""
    if leg.audio_key is None:
        leg.audio_key = stored.key


def attempt_failed(job: Job, error: str, failure: str | None) -> None:
    """Record a failed attempt at the leg's audio, in the settling transaction of its fetch job.

    With ``failure``, the leg's audio has failed for good with it, and its recording moves on.
    """
    leg, recording = _leg(job)
    leg.audio_error = error
    if failure is not None:
        leg.audio_status, leg.audio_failure = AudioStatus.FAILED, failure
        events.set_state(recording, advance(recording.state, [leg.state for leg in legs_of(recording)]))
