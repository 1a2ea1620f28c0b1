"""Callbacks applied to recordings: live, replayed from storage, and the sweep of stuck recordings.

Live ingestion and replay fold the same rules (``domain.rules``) over the same callbacks in the
same order, and take each leg's audio as the workers left it, so a replay ends where live ended.

A callback that brings a leg's recording URL also writes the job that fetches it (``recordings.leg_audio``),
in the same transaction: a 2xx to Africa's Talking means the fetch will happen.
"""

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, exists, select

from ..domain.clock import utcnow
from ..domain.rules import (
    OUTBOUND,
    STARTED_CALL_MATCH_WINDOW,
    CallReport,
    LegState,
    Status,
    advance,
    time_out,
)
from ..extensions import db
from ..integrations.africastalking.callback_form import redacted
from ..persistence.database import insert_ignoring_conflicts, single_read, write_transaction
from ..persistence.models import Leg, Recording, StoredCallback
from . import events, leg_audio, public
from .locks import create_or_lock_recording, find_and_lock, legs_of, lock_recording
from .rebuild import rebuild
from .registration import name_leg

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ingested:
    """What taking one callback did."""

    recording_id: str
    status: Status
    duplicate: bool
    call_ended: bool
    dial: list[str] | None
    sequential: bool = False
    deleted: bool = False  # of a deleted recording: a live call is put through to no one, recorded never


def fields_digest(fields: Mapping[str, str]) -> str:
    """Return the SHA-256 of a callback's fields: the same for exact duplicates, whatever the order."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def ingest_callback(
    fields: Mapping[str, str], report: CallReport, remote_addr: str | None = None
) -> Ingested:
    """Store ``fields`` and apply ``report`` (what they say) to its recording, in one transaction.

    An exact duplicate of a callback already taken for the session is stored, marked, and changes
    nothing. A session never seen before is the call the service started to its number, if it started
    one whose session AT has not named yet; else it gets a provisional recording, named after it.
    """
    now = utcnow()
    with write_transaction() as session:
        recording = _recording_for_session(report, now)
        if recording.deleted_at is not None:
            # A late callback of a deleted recording: kept, as every callback is, but redacted and inert.
            kept = redacted(fields)
            session.add(
                _stored(kept, fields_digest(kept), report.session_id, recording.pk, True, remote_addr, now)
            )
            return Ingested(
                recording.recording_id, recording.status, True, not report.active, None, deleted=True
            )
        legs = legs_of(recording)
        leg = next(each for each in legs if each.session_id == report.session_id)
        digest = fields_digest(fields)
        duplicate = _seen(report.session_id, digest)
        session.add(_stored(fields, digest, report.session_id, recording.pk, duplicate, remote_addr, now))
        if not duplicate:
            leg.facts = leg.facts.learn(report)
            leg_audio.await_audio(leg, now)
            events.set_state(recording, advance(recording.state, [leg.state for leg in legs]))
        taken = Ingested(
            recording.recording_id,
            recording.status,
            duplicate,
            leg.ended,
            recording.dial,
            recording.dial_sequential,
        )
    return taken


def _stored(fields, digest, session_id, recording_pk, duplicate, remote_addr, now) -> StoredCallback:
    return StoredCallback(
        session_id=session_id,
        recording_pk=recording_pk,
        fields=dict(fields),
        digest=digest,
        duplicate=duplicate,
        # Behind proxies the address comes from X-Forwarded-For, which a client can make long.
        remote_addr=remote_addr[: StoredCallback.remote_addr.type.length] if remote_addr else None,
        received_at=now,
    )


def _recording_for_session(report: CallReport, now: datetime) -> Recording:
    """Return the recording the callback's session belongs to, locked.

    That is the recording the session is bound to, or else the one whose started call it is (AT's
    answer to the start not read yet), or else a provisional one named after the session, which
    whoever names the session later adopts.
    """
    session_id = report.session_id
    while True:  # again whenever another transaction moved the session while this one waited
        recording_pk = _owner(session_id)
        if recording_pk is not None:
            recording = find_and_lock(pk=recording_pk)
            if recording is not None and _owner(session_id) == recording.pk:
                return recording
            continue
        started = _started_call(report, now)
        if started is not None:
            leg_pk, recording_pk = started
            recording = lock_recording(pk=recording_pk)
            leg = db.session.get(Leg, leg_pk, populate_existing=True)
            if leg.session_id is None and name_leg(leg, session_id):
                return recording
            continue
        recording, created = create_or_lock_recording(session_id, now, provisional=True)
        row = {"session_id": session_id, "recording_pk": recording.pk, "created_at": now, "updated_at": now}
        insert_ignoring_conflicts(db.session, Leg.__table__, [row], unique=["session_id"])
        if _owner(session_id) == recording.pk:
            return recording
        # Named meanwhile (a registration, a start): that recording it is, and none is left named after it.
        if created:
            db.session.execute(delete(Recording).where(Recording.pk == recording.pk))


def _owner(session_id: str) -> int | None:
    query = select(Leg.recording_pk).filter_by(session_id=session_id)
    return db.session.execute(query).scalar_one_or_none()


def _started_call(report: CallReport, now: datetime) -> tuple[int, int] | None:
    """The leg (and its recording) of the call the service started to one of the callback's numbers,
    the oldest if several, that AT has not answered for yet; None if the callback is of no such call."""
    if report.direction != OUTBOUND or not report.numbers:
        return None
    query = (
        select(Leg.pk, Leg.recording_pk)
        .where(
            Leg.session_id.is_(None),
            Leg.at_status.is_(None),
            Leg.direction == OUTBOUND,
            Leg.number.in_(report.numbers),
            Leg.created_at > now - STARTED_CALL_MATCH_WINDOW,
        )
        .order_by(Leg.pk)
        .limit(1)
    )
    return db.session.execute(query).tuples().first()


def _seen(session_id: str, digest: str) -> bool:
    query = select(StoredCallback.pk).filter_by(session_id=session_id, digest=digest).limit(1)
    return db.session.execute(query).first() is not None


@dataclass(frozen=True)
class ReplayReport:
    recordings: int  # rebuilt
    changed: list[str]  # recording ids whose state or call facts differ from before


def replay(batch_size: int = 500) -> ReplayReport:
    """Rebuild every recording that has callbacks, and its legs, from the stored callbacks and from
    what was stored of each leg's audio.

    Recordings without callbacks (registered and not yet called, or seeded) are left as they are.
    A sweep's verdict (``recording_url_timeout``) stands if the callbacks still leave the recording
    waiting for its URL. A leg whose callbacks bring a URL but that has no audio (nor job) gets them.
    """
    with single_read() as connection:
        query = (
            select(StoredCallback.recording_pk)
            .join(Recording, Recording.pk == StoredCallback.recording_pk)
            .where(Recording.deleted_at.is_(None))  # a deleted recording's callbacks are redacted and inert
            .distinct()
            .order_by(StoredCallback.recording_pk)
        )
        pks = list(connection.execute(query).scalars())
    changed: list[str] = []
    for start in range(0, len(pks), batch_size):
        with write_transaction():
            for pk in pks[start : start + batch_size]:
                recording = lock_recording(pk=pk)
                if rebuild(recording):
                    changed.append(recording.recording_id)
        # A replay may rewrite a completed recording, which processes cache.
        public.forget(changed)
    return ReplayReport(len(pks), changed)


def sweep(older_than: timedelta) -> list[str]:
    """Fail recordings whose calls ended well but whose URL has not come in ``older_than``.

    Returns their ids. A URL arriving later still completes them. Recordings whose audio is being
    fetched are not touched: the fetch's own give-up (AUDIO_FETCH_GIVE_UP) decides those.
    """
    cutoff = utcnow() - older_than
    with_url = exists().where(Leg.recording_pk == Recording.pk, Leg.recording_url.is_not(None))
    stuck = (
        select(Recording)
        .where(
            Recording.status == Status.PROCESSING,
            Recording.updated_at < cutoff,
            Recording.deleted_at.is_(None),
            ~with_url,
        )
        .with_for_update(skip_locked=True)
    )
    swept = []
    with write_transaction() as session:
        for recording in session.execute(stuck).scalars():
            legs: list[LegState] = [leg.state for leg in legs_of(recording)]
            events.set_state(recording, time_out(recording.state, legs))
            swept.append(recording.recording_id)
    for recording_id in swept:
        log.warning("recording %s failed: no recording URL within %s", recording_id, older_than)
    return swept
