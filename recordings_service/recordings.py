"""Reading and writing recordings: the one place views and CLI commands get them from."""

import itertools
import random
import uuid
from datetime import UTC, datetime

from sqlalchemy import func, literal, select, tuple_

from .database import begin_write, bulk_insert_ignoring_conflicts, insert_ignoring_conflicts
from .domain import Status, is_valid_recording_id
from .extensions import db
from .models import BigId, CallSession, Recording, UTCDateTime
from .schemas import PagePosition
from .timeutil import utcnow


def find_recording(recording_id: str) -> Recording | None:
    """Return the recording named ``recording_id``, or None; an id that cannot exist is not looked up."""
    if not is_valid_recording_id(recording_id):
        return None
    return db.session.execute(select(Recording).filter_by(recording_id=recording_id)).scalar_one_or_none()


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
        "status": Status.RECORDING.value,
        "created_at": now,
        "updated_at": now,
        "dial": dial,
    }
    created = insert_ignoring_conflicts(db.session, Recording.__table__, [row], unique=["recording_id"]) == 1
    return lock_recording(recording_id=recording_id), created


def bind_sessions(recording: Recording, session_ids: list[str], now: datetime) -> list[str]:
    """Bind AT ``session_ids`` to ``recording``; return those bound to another recording already."""
    if not session_ids:
        return []
    rows = [
        {"session_id": sid, "recording_pk": recording.pk, "created_at": now, "updated_at": now}
        for sid in session_ids
    ]
    insert_ignoring_conflicts(db.session, CallSession.__table__, rows, unique=["session_id"])
    bound = db.session.execute(
        select(CallSession.session_id, CallSession.recording_pk).where(
            CallSession.session_id.in_(session_ids)
        )
    )
    return sorted(sid for sid, recording_pk in bound if recording_pk != recording.pk)


def register_recording(
    recording_id: str | None, session_ids: list[str], dial: list[str] | None
) -> tuple[Recording, bool]:
    """Create the recording (or find it, adding sessions) and commit; return it and whether it is new.

    Raises ``SessionConflict``, changing nothing, when a session belongs to another recording.
    """
    now = utcnow()
    begin_write(db.session())
    recording, created = create_or_lock_recording(recording_id or new_recording_id(), now, dial)
    if dial is not None:
        recording.dial = dial
    conflicts = bind_sessions(recording, list(dict.fromkeys(session_ids)), now)
    if conflicts:
        db.session.rollback()
        raise SessionConflict(conflicts)
    db.session.commit()
    return recording, created


def list_recordings(
    status: Status | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    limit: int = 50,
    after: PagePosition | None = None,
) -> tuple[list[Recording], PagePosition | None]:
    """Return a page of recordings, newest first, and where the next page starts (None at the end).

    Pages are found by keyset (the last row's creation time and key, both in one index), so a page
    deep in the list costs what the first does.
    """
    query = select(Recording).order_by(Recording.created_at.desc(), Recording.pk.desc()).limit(limit + 1)
    if status is not None:
        query = query.where(Recording.status == status.value)
    if created_after is not None:
        query = query.where(Recording.created_at > created_after)
    if created_before is not None:
        query = query.where(Recording.created_at < created_before)
    if after is not None:
        position = tuple_(literal(after.created_at, UTCDateTime), literal(after.pk, BigId))
        query = query.where(tuple_(Recording.created_at, Recording.pk) < position)
    rows = list(db.session.execute(query).scalars())
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], PagePosition(last.created_at, last.pk)


# The contract's own example, so a new user's first curl answers as the documentation says.
CONTRACT_EXAMPLE = {
    "recording_id": "conf_1234567890",
    "status": Status.COMPLETED.value,
    "duration": 342,
    "recording_url": "https://voice.africastalking.com/recording/abc123def456",
    "failure_reason": None,
    "created_at": datetime(2024, 1, 15, 10, 0, 0, tzinfo=UTC),
    "updated_at": datetime(2024, 1, 15, 10, 5, 42, tzinfo=UTC),
    "processed_at": datetime(2024, 1, 15, 10, 5, 42, tzinfo=UTC),
}

_DEMO_STATUSES = [Status.COMPLETED] * 7 + [Status.FAILED, Status.PROCESSING, Status.RECORDING]
_DEMO_FAILURES = ["NO_ANSWER", "USER_BUSY", "CALL_REJECTED", "SUBSCRIBER_ABSENT", "NotAnswered"]


def demo_row(number: int, now: float, rng: random.Random) -> dict:
    """Return a realistic recording row named ``conf_<number>``, older as ``number`` grows.

    ``now`` is a POSIX timestamp; a million rows are made per seeding, so this stays cheap.
    """
    status = _DEMO_STATUSES[rng.randrange(10)]
    duration = rng.randrange(30, 3600)
    # A minute apart going back from two hours ago, so that even the newest has had time to end.
    created = now - 7200 - 60 * number - rng.randrange(60)
    ended_at = datetime.fromtimestamp(created + duration + rng.randrange(2, 30), UTC)
    created_at = datetime.fromtimestamp(created, UTC)
    processed_at = ended_at if status is Status.COMPLETED else None
    return {
        "recording_id": f"conf_{number:010d}",
        "status": status.value,
        "duration": duration if status is Status.COMPLETED or status is Status.PROCESSING else None,
        "recording_url": (
            f"https://voice.africastalking.com/recording/{rng.getrandbits(48):012x}"
            if status is Status.COMPLETED
            else None
        ),
        "failure_reason": _DEMO_FAILURES[rng.randrange(5)] if status is Status.FAILED else None,
        "created_at": created_at,
        "updated_at": created_at if status is Status.RECORDING else ended_at,
        "processed_at": processed_at,
    }


def seed_demo(count: int, now: datetime | None = None) -> int:
    """Add ``count`` demo recordings (``conf_0000000000`` upward) and the contract's example.

    Existing ids are left as they are, so seeding twice adds nothing. Returns how many rows were added.
    """
    now = (now or datetime.now(UTC)).replace(microsecond=0).timestamp()
    rng = random.Random(20240115)  # the same demo data every time
    before = count_recordings()
    rows = itertools.chain([CONTRACT_EXAMPLE], (demo_row(number, now, rng) for number in range(count)))
    bulk_insert_ignoring_conflicts(db.session, Recording.__table__, rows, unique="recording_id")
    db.session.commit()
    return count_recordings() - before


def count_recordings() -> int:
    """Return how many recordings there are."""
    return db.session.execute(select(func.count()).select_from(Recording)).scalar_one()
