"""Demo data: realistic recordings for a new user's first ``make run``, and the API's documented example.

``flask recordings seed-demo --count N`` adds them; a million rows go through the driver's bulk path
(COPY on PostgreSQL) in well under a minute.

Demo data keeps the rules real data keeps. A completed demo recording has its leg and, in the configured
store, audio of its own (the bundled ``recorded-call.mp3``), which deleting it deletes as any other. No
demo recording is processing: one would wait for audio from an AT URL that serves nothing, and the
worker would fail it. Only the first ``AUDIO_ROWS`` demo rows may be completed, so that the store holds
a file for each of at most that many; the older rows are failed or recording.
"""

import itertools
import random
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import Table, exists, func, select

from ..domain.rules import AudioStatus, Status
from ..extensions import db
from ..integrations.audio_format import inspect
from ..integrations.storage import audio_key
from ..persistence.models import Leg, Recording

# The API's documented example, so a new user's first curl answers as docs/api.md says.
CONTRACT_EXAMPLE = {
    "recording_id": "conf_1234567890",
    "status": Status.COMPLETED.value,
    "duration": 342,
    "recording_url": "https://voice.africastalking.com/recording/abc123def456",
    "failure_reason": None,
    "created_at": datetime(2024, 1, 15, 10, 0, 0, tzinfo=UTC),
    "updated_at": datetime(2024, 1, 15, 10, 5, 42, tzinfo=UTC),
    "processed_at": datetime(2024, 1, 15, 10, 5, 42, tzinfo=UTC),
    "audio_session_id": "ATVId_conf_1234567890",
}

# The audio every completed demo leg stores a copy of.
DEMO_AUDIO = Path(__file__).with_name("recorded-call.mp3")
# Demo rows numbered from here on are never completed (the store would need a file for each).
AUDIO_ROWS = 1000

_DEMO_STATUSES = [Status.COMPLETED] * 8 + [Status.FAILED, Status.RECORDING]
_DEMO_FAILURES = ["NO_ANSWER", "USER_BUSY", "CALL_REJECTED", "SUBSCRIBER_ABSENT", "NotAnswered"]


def demo_row(number: int, now: float, rng: random.Random) -> dict:
    """Return a realistic recording row named ``conf_<number>``, older as ``number`` grows.

    ``now`` is a POSIX timestamp; a million rows are made per seeding, so this stays cheap.
    """
    status = _DEMO_STATUSES[rng.randrange(10)]
    if status is Status.COMPLETED and number >= AUDIO_ROWS:
        status = Status.FAILED
    recording_id = f"conf_{number:010d}"
    duration = rng.randrange(30, 3600)
    # A minute apart going back from two hours ago, so that even the newest has had time to end.
    created = now - 7200 - 60 * number - rng.randrange(60)
    ended_at = datetime.fromtimestamp(created + duration + rng.randrange(2, 30), UTC)
    created_at = datetime.fromtimestamp(created, UTC)
    processed_at = ended_at if status is Status.COMPLETED else None
    return {
        "recording_id": recording_id,
        "status": status.value,
        "duration": duration if status is Status.COMPLETED else None,
        "recording_url": (
            f"https://voice.africastalking.com/recording/{rng.getrandbits(48):012x}"
            if status is Status.COMPLETED
            else None
        ),
        "failure_reason": _DEMO_FAILURES[rng.randrange(5)] if status is Status.FAILED else None,
        "created_at": created_at,
        "updated_at": created_at if status is Status.RECORDING else ended_at,
        "processed_at": processed_at,
        "audio_session_id": f"ATVId_{recording_id}" if status is Status.COMPLETED else None,
    }


def seed_demo(count: int, now: datetime | None = None) -> int:
    """Add ``count`` demo recordings (``conf_0000000000`` upward) and the API's documented example.

    Existing ids are left as they are, so seeding twice adds nothing. Each completed one gets its leg,
    its audio stored. Returns how many rows were added.
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
    _store_audio_of_completed()
    db.session.commit()
    return count_recordings() - before


def _store_audio_of_completed() -> None:
    """Give each completed recording that lacks the leg it shows that leg, its copy of ``DEMO_AUDIO``
    stored under the leg's own key (as the worker stores fetched audio)."""
    lacking = select(Recording).where(
        Recording.status == Status.COMPLETED,
        Recording.audio_session_id.is_not(None),
        Recording.deleted_at.is_(None),
        ~exists().where(Leg.session_id == Recording.audio_session_id),
    )
    recordings = db.session.execute(lacking).scalars().all()
    if not recordings:
        return
    with DEMO_AUDIO.open("rb") as file:
        found = inspect(file)
    legs = [
        Leg(
            session_id=recording.audio_session_id,
            recording_pk=recording.pk,
            heard=True,
            ended=True,
            ended_well=True,
            duration=recording.duration,
            recording_url=recording.recording_url,
            url_received_at=recording.processed_at,
            audio_status=AudioStatus.STORED,
            audio_content_type=found.content_type,
            audio_duration=round(found.seconds),
            audio_stored_at=recording.processed_at,
        )
        for recording in recordings
    ]
    db.session.add_all(legs)
    db.session.flush()  # the legs' keys name their audio
    storage = current_app.extensions["audio_storage"]
    for leg in legs:
        with DEMO_AUDIO.open("rb") as file:
            stored = storage.put(
                audio_key(leg.recording_pk, leg.pk, found.extension), file, content_type=found.content_type
            )
        leg.audio_key, leg.audio_size, leg.audio_sha256 = stored.key, stored.size, stored.sha256


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
    """Add COUNT realistic demo recordings (conf_0000000000 upward) and the API's documented example.

    Ids that exist already are left alone, so running it again adds nothing.
    """
    started = time.perf_counter()
    added = seed_demo(count)
    click.echo(f"added {added} recordings in {time.perf_counter() - started:.1f}s")
