"""Recordings' rows read for a write: found or created, and locked, in the order every writer keeps
(a recording's row before anything of it; recordings of one transaction in a fixed order)."""

import uuid
from datetime import datetime

from sqlalchemy import select

from ..domain.rules import Status
from ..extensions import db
from ..persistence.database import insert_ignoring_conflicts
from ..persistence.models import Leg, Recording


def new_recording_id() -> str:
    return f"conf_{uuid.uuid4().hex}"


def lock_recording(**where) -> Recording:
    """Return the recording matching ``where``, its row locked until commit (PostgreSQL; SQLite
    transactions that write are serialised by BEGIN IMMEDIATE)."""
    query = select(Recording).filter_by(**where).with_for_update().execution_options(populate_existing=True)
    return db.session.execute(query).scalar_one()


def find_and_lock(**where) -> Recording | None:
    """As ``lock_recording``, or None when the recording is gone: a provisional one that another
    transaction adopted (and removed) while this one waited for its lock."""
    query = select(Recording).filter_by(**where).with_for_update().execution_options(populate_existing=True)
    return db.session.execute(query).scalar_one_or_none()


def create_or_lock_recording(
    recording_id: str, now: datetime, dial: list[str] | None = None, provisional: bool = False
) -> tuple[Recording, bool]:
    """Return the recording ``recording_id``, created in status ``recording`` if new, row locked,
    and whether it was created. Two requests creating the same id at once get the same row (and one
    asking for a provisional recording that another adopts meanwhile gets a new one)."""
    row = {
        "recording_id": recording_id,
        "status": Status.RECORDING,
        "created_at": now,
        "updated_at": now,
        "dial": dial,
        "provisional": provisional,
    }
    while True:
        created = (
            insert_ignoring_conflicts(db.session, Recording.__table__, [row], unique=["recording_id"]) == 1
        )
        recording = find_and_lock(recording_id=recording_id)
        if recording is not None:
            return recording, created


def legs_of(recording: Recording) -> list[Leg]:
    """The recording's legs (its AT sessions, and calls it started that AT has not named yet), in the
    order they were made."""
    query = select(Leg).filter_by(recording_pk=recording.pk).order_by(Leg.pk)
    return list(db.session.execute(query).scalars())
