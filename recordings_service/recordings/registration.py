"""Registering recordings and binding Africa's Talking sessions to them, under the recording's lock."""

import uuid
from datetime import datetime

from sqlalchemy import select

from ..domain.clock import utcnow
from ..domain.recordings import Status
from ..extensions import db
from ..persistence.database import insert_ignoring_conflicts, write_transaction
from ..persistence.models import CallSession, Recording
from . import public


class RecordingDeleted(Exception):
    """The recording asked for was deleted: its id is not given out again."""


class SessionConflict(Exception):
    """Sessions asked for are bound to another recording already."""

    def __init__(self, session_ids: list[str]):
        super().__init__(f"already bound to another recording: {', '.join(session_ids)}")
        self.session_ids = session_ids


def new_recording_id() -> str:
    return f"conf_{uuid.uuid4().hex}"


def lock_recording(**where) -> Recording:
    """Return the recording matching ``where``, its row locked until commit (PostgreSQL; SQLite
    transactions that write are serialised by BEGIN IMMEDIATE)."""
    query = select(Recording).filter_by(**where).with_for_update().execution_options(populate_existing=True)
    return db.session.execute(query).scalar_one()


def create_or_lock_recording(
    recording_id: str, now: datetime, dial: list[str] | None = None
) -> tuple[Recording, bool]:
    """Return the recording ``recording_id``, created in status ``recording`` if new, row locked,
    and whether it was created. Two requests creating the same id at once get the same row."""
    row = {
        "recording_id": recording_id,
        "status": Status.RECORDING,
        "created_at": now,
        "updated_at": now,
        "dial": dial,
    }
    created = insert_ignoring_conflicts(db.session, Recording.__table__, [row], unique=["recording_id"]) == 1
    return lock_recording(recording_id=recording_id), created


def bind_sessions(recording: Recording, session_ids: list[str], now: datetime) -> list[str]:
    """Bind AT ``session_ids`` to ``recording``; return those bound to another recording already.

    Sessions are inserted in sorted order, so two transactions naming the same sessions wait for each
    other in the same order instead of each holding one the other needs (a deadlock on PostgreSQL).
    """
    if not session_ids:
        return []
    rows = [
        {"session_id": sid, "recording_pk": recording.pk, "created_at": now, "updated_at": now}
        for sid in sorted(set(session_ids))
    ]
    insert_ignoring_conflicts(db.session, CallSession.__table__, rows, unique=["session_id"])
    bound = db.session.execute(
        select(CallSession.session_id, CallSession.recording_pk).where(
            CallSession.session_id.in_(session_ids)
        )
    )
    return sorted(sid for sid, recording_pk in bound if recording_pk != recording.pk)


def register_recording(
    recording_id: str | None,
    session_ids: list[str],
    dial: list[str] | None,
    status_callback_url: str | None = None,
) -> tuple[public.Rendered, bool]:
    """Create the recording (or find it, adding sessions) and commit; return it as clients see it and
    whether it is new.

    Raises ``SessionConflict``, changing nothing, when a session belongs to another recording, and
    ``RecordingDeleted`` for the id of a deleted recording.
    """
    now = utcnow()
    with write_transaction() as session:
        recording, created = create_or_lock_recording(recording_id or new_recording_id(), now, dial)
        if recording.deleted_at is not None:
            raise RecordingDeleted(recording.recording_id)
        if dial is not None:
            recording.dial = dial
        if status_callback_url is not None:
            recording.status_callback_url = status_callback_url
        conflicts = bind_sessions(recording, session_ids, now)
        if conflicts:
            raise SessionConflict(conflicts)
        session.flush()
        rendered = public.render(recording)
    return rendered, created


def sessions_of(recording: Recording) -> list[CallSession]:
    """The recording's legs (its AT sessions), in the order they were bound."""
    query = select(CallSession).filter_by(recording_pk=recording.pk).order_by(CallSession.pk)
    return list(db.session.execute(query).scalars())
