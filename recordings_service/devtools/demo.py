"""Demo data: realistic recordings for a new user's first ``make run``, and the contract's example.

``flask recordings seed-demo --count N`` adds them; a million rows go through the driver's bulk path
(COPY on PostgreSQL) in well under a minute.
"""

import itertools
import random
import time
from collections.abc import Iterable
from datetime import UTC, datetime

import click
from flask.cli import with_appcontext
from sqlalchemy import Table, func, select

from ..domain.rules import Status
from ..extensions import db
from ..persistence.models import Recording

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
    rows = (
        # The bulk insert writes every column: those the database would default are given here.
        {"provisional": False, "dial_sequential": False, **row}
        for row in itertools.chain(
            [CONTRACT_EXAMPLE], (demo_row(number, now, rng) for number in range(count))
        )
    )
    _bulk_insert_ignoring_conflicts(Recording.__table__, rows, unique="recording_id")
    db.session.commit()
    return count_recordings() - before


def count_recordings() -> int:
    """Return how many recordings there are."""
    return db.session.execute(select(func.count()).select_from(Recording)).scalar_one()


def _bulk_insert_ignoring_conflicts(table: Table, rows: Iterable[dict], unique: str) -> None:
    """Insert many ``rows`` through the driver's bulk path, skipping rows whose ``unique`` value exists.

    A column a row leaves out is NULL: Python-side defaults are not applied here. Values go to the
    driver as they are: aware datetimes for PostgreSQL are fine; for SQLite they are written in
    SQLAlchemy's own storage form so that they sort and read back alike. (A million rows through the
    ORM's per-row type handling take over a minute.)
    """
    columns = [column.name for column in table.columns if column.name != "id"]
    names = ", ".join(columns)
    connection = db.session.connection().connection.driver_connection
    if db.session.get_bind().dialect.name == "postgresql":
        with connection.cursor() as cursor:
            # COPY cannot skip conflicts, so it fills a scratch table that one INSERT then merges.
            cursor.execute(
                f"CREATE TEMP TABLE bulk_rows ON COMMIT DROP AS SELECT {names} FROM {table.name} WITH NO DATA"
            )
            with cursor.copy(f"COPY bulk_rows ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([row.get(name) for name in columns])
            cursor.execute(
                f"INSERT INTO {table.name} ({names}) SELECT {names} FROM bulk_rows ON CONFLICT ({unique}) DO NOTHING"
            )
    else:
        placeholders = ", ".join("?" for _ in columns)
        connection.executemany(
            f"INSERT OR IGNORE INTO {table.name} ({names}) VALUES ({placeholders})",
            ([_sqlite_value(row.get(name)) for name in columns] for row in rows),
        )


def _sqlite_value(value):
    if isinstance(value, datetime):
        if value.utcoffset():
            value = value.astimezone(UTC)
        return value.isoformat(" ", "microseconds")[:26]  # without the "+00:00"
    return value


@click.command("seed-demo")
@with_appcontext
@click.option("--count", type=click.IntRange(0), default=1000, show_default=True)
def seed_demo_command(count: int) -> None:
    """Add COUNT realistic demo recordings (conf_0000000000 upward) and the contract's example.

    Ids that exist already are left alone, so running it again adds nothing.
    """
    started = time.perf_counter()
    added = seed_demo(count)
    click.echo(f"added {added} recordings in {time.perf_counter() - started:.1f}s")
