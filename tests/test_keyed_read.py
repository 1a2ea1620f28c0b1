"""The lookup's read on the driver's connection (``persistence/keyed_read.py``): it must give what
SQLAlchemy gives, and what it takes from SQLAlchemy's internals must still be there after an upgrade."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import bindparam, select

from recordings_service.domain.rules import Status
from recordings_service.extensions import db
from recordings_service.persistence import keyed_read
from recordings_service.persistence.models import Recording
from recordings_service.recordings import public


def test_the_lookups_short_read_gives_what_sqlalchemy_gives(app):
    """The lookup's statement runs on the driver connection: each column must come out as SQLAlchemy's
    own Result gives it (the status an enum, times aware and in UTC)."""
    at = datetime(2024, 1, 15, 10, 0, 0, 123000, tzinfo=UTC)
    recording = Recording(
        recording_id="conf_1",
        status="failed",
        duration=342,
        recording_url="https://voice.africastalking.com/recording/abc",
        failure_reason="Call dropped",
        created_at=at,
        processed_at=at + timedelta(seconds=1),
        updated_at=at + timedelta(seconds=2),
        audio_removed_at=at + timedelta(seconds=3),
    )

    with app.app_context():
        db.session.add(recording)
        db.session.commit()
        short = public.BY_ID.first({"recording_id": "conf_1"})
        with db.engine.connect() as connection:
            full = connection.execute(public.BY_ID.statement, {"recording_id": "conf_1"}).one()
        assert public.BY_ID.first({"recording_id": "conf_2"}) is None

    assert short._fields == full._fields and tuple(short) == tuple(full)
    assert short.status is Status.FAILED
    assert short.created_at == at and short.created_at.utcoffset() == timedelta(0)


def test_a_statement_whose_parameters_need_converting_is_refused(app):
    """The driver gets the parameters as they are, so a statement that would need SQLAlchemy to expand
    or convert them is refused, not run wrong."""
    recordings = Recording.__table__
    expanding = keyed_read.KeyedRead(
        select(recordings.c.recording_id).where(
            recordings.c.recording_id.in_(bindparam("ids", expanding=True))
        )
    )

    with app.app_context(), pytest.raises(TypeError, match="'ids' needs converting"):
        expanding.first({"ids": ["conf_1"]})


def test_invalidating_the_pool_replaces_every_connection_made_before(app):
    """A lost connection has the pool replace every older one, as a Connection would, through the one
    private method of SQLAlchemy's pool the service calls: this fails if an upgrade changes it."""
    with app.app_context():
        engine = db.engine
        older, lost = engine.raw_connection(), engine.raw_connection()
        older_driver = older.dbapi_connection
        older.close()  # back to the pool, alive

        keyed_read._invalidate_pool(engine, lost, RuntimeError("the server went away"))
        lost.close()

        assert not lost.is_valid
        fresh = [engine.raw_connection(), engine.raw_connection()]
        assert older_driver not in [connection.dbapi_connection for connection in fresh]
        for connection in fresh:
            connection.close()
