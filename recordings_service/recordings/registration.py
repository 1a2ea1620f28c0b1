"""Registering recordings and binding Africa's Talking sessions to them, under the recording's lock."""

from datetime import datetime

from sqlalchemy import select

from ..domain.clock import utcnow
from ..extensions import db
from ..persistence.database import insert_ignoring_conflicts, write_transaction
from ..persistence.models import CallSession, Recording
from . import public
from .locks import create_or_lock_recording, new_recording_id


class RecordingDeleted(Exception):
    """The recording asked for was deleted: its id is not given out again."""


class SessionConflict(Exception):
    """Sessions asked for are bound to another recording already."""

    def __init__(self, session_ids: list[str]):
        super().__init__(f"already bound to another recording: {', '.join(session_ids)}")
        self.session_ids = session_ids


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
