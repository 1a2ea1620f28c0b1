"""Letting recordings go: deleted on request, and their audio removed after AUDIO_RETENTION_DAYS.

A deletion removes the stored audio of every leg first (so a store that fails changes nothing: the
client may ask again), then, in one transaction, redacts the recording's personal data (the phone
numbers and recording URLs in its stored callbacks and legs, the numbers it dials), marks it deleted,
cancels its pending jobs and writes the ``recording.deleted`` event. The row stays, as a tombstone:
a late callback for one of its sessions is stored redacted and changes nothing, and the lookup answers
404 (at once in this process, within COMPLETED_CACHE_SECONDS in the others).
"""

import logging
from datetime import datetime, timedelta

from sqlalchemy import select

from ..domain.clock import utcnow
from ..domain.recordings import AudioStatus
from ..integrations.africastalking.callbacks import redacted
from ..integrations.storage import Storage, StorageError
from ..persistence import queue
from ..persistence.database import single_read, write_transaction
from ..persistence.models import CallSession, Recording, StoredCallback
from . import events, public
from .locks import lock_recording, sessions_of

log = logging.getLogger(__name__)


def _stored_keys(recording_pk: int) -> list[str]:
    query = select(CallSession.audio_key).where(
        CallSession.recording_pk == recording_pk, CallSession.audio_key.is_not(None)
    )
    with single_read() as connection:
        return list(connection.execute(query).scalars())


def delete_recording(recording_id: str, storage: Storage) -> bool:
    """Delete ``recording_id``: its audio from ``storage``, its personal data, the recording as clients
    see it. False when there is no such recording (or it is deleted already). Raises the store's
    ``StorageError``, having changed nothing, when the audio cannot be deleted."""
    with single_read() as connection:
        recording_pk = connection.execute(
            select(Recording.pk).where(Recording.recording_id == recording_id, Recording.deleted_at.is_(None))
        ).scalar_one_or_none()
    if recording_pk is None:
        return False
    for key in _stored_keys(recording_pk):
        storage.delete(key)
    now = utcnow()
    with write_transaction() as session:
        recording = lock_recording(pk=recording_pk)
        if recording.deleted_at is not None:
            return False
        late = [call.audio_key for call in sessions_of(recording) if call.audio_key]  # stored meanwhile
        for call in sessions_of(recording):
            call.recording_url = None
            if call.audio_status is not None:
                call.audio_removed_at = call.audio_removed_at or now
            call.audio_key = None
        stored = select(StoredCallback).filter_by(recording_pk=recording.pk)
        for callback in session.execute(stored).scalars():
            callback.fields = redacted(callback.fields)
        recording.dial, recording.recording_url, recording.deleted_at = None, None, now
        recording.audio_removed_at = recording.audio_removed_at or now
        queue.cancel(session, recording.pk, "recording deleted")
        events.announce(recording, events.DELETED)
    for key in late:
        storage.delete(key)
    public.forget([recording_id])
    log.info("deleted recording %s", recording_id)
    return True


def remove_expired_audio(storage: Storage, older_than: timedelta, now: datetime | None = None) -> list[str]:
    """Remove the stored audio of every leg stored longer than ``older_than`` ago; return the recordings
    whose audio it removed. The recordings stay (their ``audio_url`` becomes null, ``audio_removed_at``
    says when). A store that fails leaves the leg for the next round."""
    now = now or utcnow()
    expired = select(CallSession.pk, CallSession.audio_key, CallSession.recording_pk).where(
        CallSession.audio_status == AudioStatus.STORED,
        CallSession.audio_removed_at.is_(None),
        CallSession.audio_stored_at < now - older_than,
    )
    with single_read() as connection:
        rows = connection.execute(expired).all()
    removed = []
    for session_pk, key, recording_pk in rows:
        try:
            storage.delete(key)
        except StorageError:
            log.exception("retention: deleting %s failed; trying again next round", key)
            continue
        with write_transaction() as session:
            recording = lock_recording(pk=recording_pk)
            call = session.get(CallSession, session_pk)
            if call.audio_removed_at is not None or call.audio_key != key:
                continue
            call.audio_removed_at, call.audio_key = now, None
            if recording.audio_session_id == call.session_id:
                recording.audio_removed_at = now
            removed.append(recording.recording_id)
    public.forget(removed)
    if removed:
        log.info("retention removed the audio of %d recordings", len(removed))
    return removed
