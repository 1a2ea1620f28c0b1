"""Reading and writing recordings: the one place views and CLI commands get them from."""

import random
import itertools
from datetime import UTC, datetime

from sqlalchemy import func, select

from .database import bulk_insert_ignoring_conflicts
from .domain import Status, is_valid_recording_id
from .extensions import db
from .models import Recording


def find_recording(recording_id: str) -> Recording | None:
    """Return the recording named ``recording_id``, or None; an id that cannot exist is not looked up."""
    if not is_valid_recording_id(recording_id):
        return None
    return db.session.execute(select(Recording).filter_by(recording_id=recording_id)).scalar_one_or_none()


def list_recordings(status: Status | None = None, limit: int = 20) -> list[Recording]:
    """Return up to ``limit`` recordings, newest first, optionally only those in ``status``."""
    query = select(Recording).order_by(Recording.created_at.desc(), Recording.pk.desc()).limit(limit)
    if status is not None:
        query = query.filter_by(status=status.value)
    return list(db.session.execute(query).scalars())


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
    ended = status is Status.COMPLETED or status is Status.FAILED
    processed_at = datetime.fromtimestamp(created + duration + rng.randrange(2, 30), UTC) if ended else None
    created_at = datetime.fromtimestamp(created, UTC)
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
        "updated_at": processed_at or created_at,
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
