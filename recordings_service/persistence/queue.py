"""The durable queue of background work, one row a job (``models.Job``).

A job is written in the same transaction as the fact that calls for it, so a committed fact always has
its job, whatever crashes next.

A worker claims a due job by taking a lease on it in a short transaction. On PostgreSQL the claim uses
``SELECT ... FOR UPDATE SKIP LOCKED``, so any number of workers on any number of machines never take the
same job at once. On SQLite claims are write transactions (``BEGIN IMMEDIATE``), one at a time. The work
itself runs outside any transaction. A worker that dies lets its lease run out, and another takes the job.

The verbs are ``enqueue``, ``claim``, ``heartbeat`` (renew the leases in hand), and ``finish``, ``retry``
or ``fail`` to settle a job, after ``held`` has checked that the lease is still the settler's.
"""

import os
import socket
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from ..domain.clock import utcnow
from .database import single_read, write_transaction
from .models import Job, JobState, Leg


def enqueue(session: Session, kind: str, *, run_at: datetime | None = None, **about) -> Job:
    """Add a job to ``session``'s transaction: it exists exactly when the transaction commits.

    ``about`` names what it is about: ``recording_pk``, ``leg_pk``, ``event_pk``, ``target_url``.
    """
    now = utcnow()
    job = Job(kind=kind, run_at=run_at or now, created_at=now, **about)
    session.add(job)
    return job


@dataclass(frozen=True)
class Claim:
    """A job a worker holds the lease on."""

    pk: int
    kind: str
    attempts: int  # this attempt's number, from 1
    recording_pk: int | None
    leg_pk: int | None
    token: str  # who holds the lease: settling checks it


def new_token() -> str:
    """A lease holder's name: the machine and process (for people), and a unique part (for the check)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def claim(kinds: Iterable[str], lease: timedelta) -> Claim | None:
    """Take the lease on the due job waiting longest, or return None when no job is due."""
    now = utcnow()
    due = (
        select(Job)
        .where(
            Job.state == JobState.PENDING,
            Job.kind.in_(list(kinds)),
            Job.run_at <= now,
            or_(Job.leased_until.is_(None), Job.leased_until < now),
        )
        .order_by(Job.run_at, Job.pk)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    with write_transaction() as session:
        job = session.execute(due).scalar_one_or_none()
        if job is None:
            return None
        job.attempts += 1
        job.leased_until = now + lease
        job.leased_by = new_token()
        return Claim(job.pk, job.kind, job.attempts, job.recording_pk, job.leg_pk, job.leased_by)


def held(session: Session, claim: Claim) -> Job | None:
    """In a write transaction: the claimed job, row locked, if the claim still holds its lease."""
    job = session.execute(select(Job).filter_by(pk=claim.pk).with_for_update()).scalar_one_or_none()
    if job is None or job.state is not JobState.PENDING or job.leased_by != claim.token:
        return None
    return job


def finish(job: Job, now: datetime) -> None:
    """The job's work is done."""
    job.state, job.finished_at, job.leased_until, job.last_error = JobState.DONE, now, None, None


def cancel(session: Session, recording_pk: int, why: str) -> None:
    """Give up every pending job about the recording (it was deleted, say)."""
    session.execute(
        update(Job)
        .where(Job.recording_pk == recording_pk, Job.state == JobState.PENDING)
        .values(state=JobState.FAILED, finished_at=utcnow(), leased_until=None, last_error=why)
    )


def requeue(pk: int, kind: str) -> bool:
    """Make the job ``pk`` of ``kind`` (done or given up) pending again, due at once, its attempts counted
    afresh; whether there is such a job."""
    with write_transaction() as session:
        job = session.get(Job, pk)
        if job is None or job.kind != kind:
            return False
        job.state, job.run_at, job.attempts = JobState.PENDING, utcnow(), 0
        job.leased_until = job.leased_by = job.finished_at = None
        return True


def retry(job: Job, at: datetime, error: str) -> None:
    """The attempt failed; the job is due again at ``at``."""
    # Its holder let go too, so that a heartbeat still renewing the old claim cannot hold it.
    job.run_at, job.leased_until, job.leased_by, job.last_error = at, None, None, error


def fail(job: Job, now: datetime, error: str) -> None:
    """The job will not be tried again."""
    job.state, job.finished_at, job.leased_until, job.last_error = JobState.FAILED, now, None, error


def release(claims: Iterable[Claim]) -> None:
    """Give leases back unfinished (a worker stopping): the jobs are due again at once, and the
    attempt that did not run is not counted."""
    _update_held(claims, leased_until=None, leased_by=None, attempts=Job.attempts - 1)


@dataclass(frozen=True)
class Depth:
    """The queue as operators watch it, per kind of job."""

    kind: str
    pending: int
    due: int  # pending and due now: waiting for a worker
    oldest_due_seconds: float  # how long the longest-waiting due job has waited (0 when none)
    done: int
    failed: int


def depth() -> list[Depth]:
    """Count jobs by kind and state, in two statements."""
    now = utcnow()
    counts = select(Job.kind, Job.state, func.count()).group_by(Job.kind, Job.state)
    due = (
        select(Job.kind, func.count(), func.min(Job.run_at))
        .where(Job.state == JobState.PENDING, Job.run_at <= now)
        .group_by(Job.kind)
    )
    with single_read() as connection:
        by_state = connection.execute(counts).all()
    with single_read() as connection:
        due_rows = {kind: (count, oldest) for kind, count, oldest in connection.execute(due).all()}
    kinds = sorted({kind for kind, _, _ in by_state})
    totals = {(kind, JobState(state)): count for kind, state, count in by_state}
    return [
        Depth(
            kind,
            totals.get((kind, JobState.PENDING), 0),
            due_rows.get(kind, (0, None))[0],
            (now - due_rows[kind][1]).total_seconds() if kind in due_rows else 0.0,
            totals.get((kind, JobState.DONE), 0),
            totals.get((kind, JobState.FAILED), 0),
        )
        for kind in kinds
    ]


def heartbeat(claims: Iterable[Claim], lease: timedelta) -> None:
    """Extend the leases of ``claims`` still held, from now."""
    _update_held(claims, leased_until=utcnow() + lease)


def _update_held(claims: Iterable[Claim], **values) -> None:
    """Set ``values`` on the jobs of ``claims`` whose lease is still the claim's (and still pending)."""
    with write_transaction() as session:
        for held_claim in claims:
            session.execute(
                update(Job)
                .where(
                    Job.pk == held_claim.pk, Job.leased_by == held_claim.token, Job.state == JobState.PENDING
                )
                .values(**values)
            )


def recent(state: JobState | None, limit: int) -> list:
    """The newest jobs (in ``state``), with their leg's session id, for people to read."""
    query = (
        select(
            Job.pk.label("pk"),
            Job.kind,
            Job.state,
            Job.attempts,
            Job.run_at,
            Job.last_error,
            Leg.session_id,
        )
        .outerjoin(Leg, Leg.pk == Job.leg_pk)
        .order_by(Job.pk.desc())
        .limit(limit)
    )
    if state is not None:
        query = query.where(Job.state == state)
    with single_read() as connection:
        return connection.execute(query).all()
