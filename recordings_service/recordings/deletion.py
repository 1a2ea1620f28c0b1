"""Letting recordings go: deleted on request, and their audio removed after AUDIO_RETENTION_DAYS.

A deletion is one transaction first: it marks the recording deleted, redacts its personal data (the
phone numbers and recording URLs in its stored callbacks, legs and webhook events, the numbers it
dials), cancels its pending jobs and writes the ``recording.deleted`` event. Its legs keep their
``audio_key`` until the object under it is gone: the store's deletes come after the commit, and what
the store refuses then, ``remove_deleted_audio`` (the worker's periodic task) removes later. The row
stays, as a tombstone: a late callback for one of its sessions is stored redacted and changes nothing,
and the lookup answers 404 (at once in this process, within COMPLETED_CACHE_SECONDS in the others).
"""

import logging
from datetime import datetime, timedelta

from sqlalchemy import select

from ..domain.clock import utcnow
from ..domain.rules import AudioStatus
from ..exceptions import StorageError
from ..integrations.africastalking.callback_form import redacted
from ..integrations.storage import Storage
from ..persistence import queue
from ..persistence.database import single_read, write_transaction
from ..persistence.models import Leg, Recording, StoredCallback
from . import events, public
from .locks import legs_of, lock_recording

log = logging.getLogger(__name__)


def delete_recording(recording_id: str, storage: Storage) -> bool:
    """Delete ``recording_id``: its personal data, the recording as clients see it, then its audio from
    ``storage`` (what the store refuses is removed later). False when there is no such recording (or it
    is deleted already)."""
    with single_read() as connection:
        recording_pk = connection.execute(
            select(Recording.pk).where(Recording.recording_id == recording_id, Recording.deleted_at.is_(None))
        ).scalar_one_or_none()
    if recording_pk is None:
        return False
    now = utcnow()
    with write_transaction() as session:
        recording = lock_recording(pk=recording_pk)
        if recording.deleted_at is not None:
            return False
        for leg in legs_of(recording):
            leg.recording_url = None
            if leg.audio_status is not None:
                leg.audio_removed_at = leg.audio_removed_at or now
        stored = select(StoredCallback).filter_by(recording_pk=recording.pk)
        for callback in session.execute(stored).scalars():
            callback.fields = redacted(callback.fields)
        recording.dial, recording.recording_url, recording.deleted_at = None, None, now
        recording.audio_removed_at = recording.audio_removed_at or now
        queue.cancel(session, recording.pk, "recording deleted")
        events.redact(recording)
        events.announce(recording, events.DELETED)
    public.forget([recording_id])
    log.info("deleted recording %s", recording_id)
    try:
        remove_deleted_audio(storage, recording_pk)
    except StorageError:
        log.exception("removing the audio of deleted recording %s failed; trying again later", recording_id)
    return True


def remove_deleted_audio(storage: Storage, recording_pk: int | None = None) -> int:
    """Remove from ``storage`` the objects still kept for deleted recordings; return how many went. A
    store that fails leaves the rest for the next round; for one recording (``recording_pk``), it raises."""
    kept = (
        select(Leg.pk, Leg.audio_key, Leg.recording_pk)
        .join(Recording, Recording.pk == Leg.recording_pk)
        .where(Recording.deleted_at.is_not(None), Leg.audio_key.is_not(None))
    )
    if recording_pk is not None:
        kept = kept.where(Recording.pk == recording_pk)
    with single_read() as connection:
        rows = connection.execute(kept).all()
    removed = 0
    for leg_pk, key, owner_pk in rows:
        try:
            storage.delete(key)
        except StorageError:
            if recording_pk is not None:
                raise
            log.exception("deleting %s of a deleted recording failed; trying again next round", key)
            continue
        with write_transaction() as session:
            lock_recording(pk=owner_pk)
            leg = session.get(Leg, leg_pk, populate_existing=True)
            if leg.audio_key == key:
                leg.audio_key = None
                removed += 1
    if removed:
        log.info("removed %d objects of deleted recordings", removed)
    return removed


def remove_expired_audio(storage: Storage, older_than: timedelta, now: datetime | None = None) -> list[str]:
    """Remove the stored audio of every leg stored longer than ``older_than`` ago; return the recordings
    whose audio it removed. The recordings stay (their ``audio_url`` becomes null, ``audio_removed_at``
    says when). A store that fails leaves the leg for the next round."""
    now = now or utcnow()
    expired = select(Leg.pk, Leg.audio_key, Leg.recording_pk).where(
        Leg.audio_status == AudioStatus.STORED,
        Leg.audio_removed_at.is_(None),
        Leg.audio_stored_at < now - older_than,
    )
    with single_read() as connection:
        rows = connection.execute(expired).all()
    removed = []
    for leg_pk, key, recording_pk in rows:
        try:
            storage.delete(key)
        except StorageError:
            log.exception("retention: deleting %s failed; trying again next round", key)
            continue
        with write_transaction() as session:
            recording = lock_recording(pk=recording_pk)
            leg = session.get(Leg, leg_pk)
            if leg.audio_removed_at is not None or leg.audio_key != key:
                continue
            leg.audio_removed_at, leg.audio_key = now, None
            if recording.audio_session_id == leg.session_id:
                recording.audio_removed_at = now
            removed.append(recording.recording_id)
    public.forget(removed)
    if removed:
        log.info("retention removed the audio of %d recordings", len(removed))
    return removed
