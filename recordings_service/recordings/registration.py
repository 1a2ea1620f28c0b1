"""Registering recordings and binding Africa's Talking sessions to them, under the recording's lock.

A session that a callback got to first belongs to a provisional recording, named after it. Whoever
names the session later (a registration, a call start) adopts it: the session, its stored callbacks and
its audio move to the named recording, which is rebuilt from them, and the provisional recording goes.
A provisional recording that completed, or that its webhooks were told of, keeps its sessions and its
id: clients may hold that id, and it would vanish from under them.
Locks are taken in one order: the named recording, then the provisional ones by key.
"""

from datetime import datetime

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.exc import IntegrityError

from ..domain.clock import utcnow
from ..domain.rules import Status
from ..exceptions import RecordingDeleted, SessionConflict
from ..extensions import db
from ..persistence.database import insert_ignoring_conflicts, write_transaction
from ..persistence.models import Job, Leg, Recording, StoredCallback, WebhookEvent
from . import public
from .locks import create_or_lock_recording, find_and_lock, new_recording_id
from .rebuild import rebuild


def bind_sessions(recording: Recording, session_ids: list[str], now: datetime) -> list[str]:
    """Bind AT ``session_ids`` to ``recording``, and return those that belong elsewhere.

    Sessions a provisional recording holds are adopted. Sessions bound to another named recording, or
    to a deleted one, are returned, and then nothing is adopted and the caller gives up. A deleted
    recording's callbacks are redacted, so adopting them would revive nothing true.

    Sessions are inserted in sorted order, so two transactions naming the same sessions wait for each
    other in the same order instead of each holding one the other needs (a deadlock on PostgreSQL).
    """
    if not session_ids:
        return []
    wanted = sorted(set(session_ids))
    rows = [
        {"session_id": sid, "recording_pk": recording.pk, "created_at": now, "updated_at": now}
        for sid in wanted
    ]
    insert_ignoring_conflicts(db.session, Leg.__table__, rows, unique=["session_id"])
    while True:
        owners = owners_of(wanted, recording)
        named = sorted(sid for sid, (_, adoptable) in owners.items() if not adoptable)
        if named:
            return named
        if not owners or adopt(recording, sorted({pk for pk, _ in owners.values()})):
            return []
        # A provisional owner was adopted by another, or named, while this waited for it: look again.


# A recording whose sessions may be adopted: provisional, not deleted, not completed, never announced.
ADOPTABLE = (
    Recording.provisional
    & Recording.deleted_at.is_(None)
    & (Recording.status != Status.COMPLETED)
    & ~exists().where(WebhookEvent.recording_pk == Recording.pk)
)


def owners_of(session_ids: list[str], recording: Recording) -> dict[str, tuple[int, bool]]:
    """The sessions among ``session_ids`` that another recording holds: its key, and whether it may be
    adopted (``ADOPTABLE``)."""
    query = (
        select(Leg.session_id, Recording.pk, ADOPTABLE)
        .join(Recording, Recording.pk == Leg.recording_pk)
        .where(Leg.session_id.in_(session_ids), Recording.pk != recording.pk)
    )
    return {sid: (pk, provisional) for sid, pk, provisional in db.session.execute(query)}


def adopt(recording: Recording, provisional_pks: list[int]) -> bool:
    """Move everything of the provisional recordings ``provisional_pks`` (sorted) to ``recording``
    (locked), remove them and rebuild ``recording``. False, changing nothing, when one of them is gone
    or no longer ``ADOPTABLE`` once locked."""
    provisionals = [find_and_lock(pk=pk) for pk in provisional_pks]
    adoptable = select(func.count()).where(Recording.pk.in_(provisional_pks), ADOPTABLE)
    if None in provisionals or db.session.execute(adoptable).scalar_one() != len(provisional_pks):
        return False
    moved = Leg.recording_pk.in_(provisional_pks)
    db.session.execute(update(Leg).where(moved).values(recording_pk=recording.pk))
    db.session.execute(
        update(StoredCallback)
        .where(StoredCallback.recording_pk.in_(provisional_pks))
        .values(recording_pk=recording.pk)
    )
    # A leg's audio jobs go with it; the provisional recordings' webhook events go with them.
    db.session.execute(
        update(Job)
        .where(Job.recording_pk.in_(provisional_pks), Job.leg_pk.is_not(None))
        .values(recording_pk=recording.pk)
    )
    db.session.execute(delete(Recording).where(Recording.pk.in_(provisional_pks)))
    public.forget(found.recording_id for found in provisionals)
    rebuild(recording)
    return True


def name_leg(leg: Leg, session_id: str) -> bool:
    """Give ``leg``, a call the recording started that AT has not named, its session id; False, leaving
    it unnamed, when another leg holds that session (bound by another transaction meanwhile)."""
    try:
        with db.session.begin_nested():
            leg.session_id = session_id
            db.session.flush()
    except IntegrityError:
        return False
    return True


def register_recording(
    recording_id: str | None,
    session_ids: list[str],
    dial: list[str] | None,
    status_callback_url: str | None = None,
    sequential: bool | None = None,
) -> tuple[public.Rendered, bool]:
    """Create the recording (or find it, adding sessions) and commit; return it as clients see it and
    whether it is new.

    Raises ``SessionConflict``, changing nothing, when a session belongs to another named (or deleted)
    recording, and ``RecordingDeleted`` for the id of a deleted recording.
    """
    now = utcnow()
    with write_transaction() as session:
        recording, created = create_or_lock_recording(recording_id or new_recording_id(), now, dial)
        if recording.deleted_at is not None:
            raise RecordingDeleted(recording.recording_id)
        recording.provisional = False  # named now, by whoever registers it
        if dial is not None:
            recording.dial = dial
        if sequential is not None:
            recording.dial_sequential = sequential
        if status_callback_url is not None:
            recording.status_callback_url = status_callback_url
        conflicts = bind_sessions(recording, session_ids, now)
        if conflicts:
            raise SessionConflict(conflicts)
        session.flush()
        rendered = public.render(recording)
    return rendered, created
