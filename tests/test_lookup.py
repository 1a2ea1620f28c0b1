"""GET /api/v1/voice/recordings/<recording_id>, exactly as docs/api.md shows it."""

import logging
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from recordings_service import create_app
from recordings_service.extensions import db
from recordings_service.persistence.database import write_transaction
from recordings_service.persistence.models import Recording
from testkit.config import config_for
from testkit.proxy import RebootingProxy
from tests.support import CONTRACT_BODY, fixture_call

URL = "/api/v1/voice/recordings/"


@pytest.fixture
def add_recording(app):
    def add(**fields) -> None:
        with app.app_context():
            db.session.add(Recording(**fields))
            db.session.commit()

    return add


def test_completed_recording_answers_the_documented_example(client, add_recording):
    add_recording(
        recording_id="conf_1234567890",
        status="completed",
        duration=342,
        recording_url="https://voice.africastalking.com/recording/abc123def456",
        created_at=datetime(2024, 1, 15, 10, 0, 0, tzinfo=UTC),
        processed_at=datetime(2024, 1, 15, 10, 5, 42, tzinfo=UTC),
        updated_at=datetime(2024, 1, 15, 10, 5, 42, tzinfo=UTC),
    )

    response = client.get(URL + "conf_1234567890")

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.json == CONTRACT_BODY
    # The documented field order, not sorted keys.
    assert list(response.json) == [
        "recording_id",
        "status",
        "duration",
        "recording_url",
        "created_at",
        "processed_at",
        "failure_reason",
        "audio_url",
        "audio_removed_at",
        "updated_at",
    ]


def test_recording_in_progress_has_null_unset_fields(client, add_recording):
    at = datetime(2024, 1, 15, 10, 0, tzinfo=UTC)
    add_recording(recording_id="conf_1234567890", created_at=at, updated_at=at)

    response = client.get(URL + "conf_1234567890")

    assert response.status_code == 200
    assert response.json == {
        "recording_id": "conf_1234567890",
        "status": "recording",
        "duration": None,
        "recording_url": None,
        "created_at": "2024-01-15T10:00:00.000Z",
        "processed_at": None,
        "failure_reason": None,
        "audio_url": None,
        "audio_removed_at": None,
        "updated_at": "2024-01-15T10:00:00.000Z",
    }


def test_failed_recording_says_why(client, add_recording):
    add_recording(recording_id="conf_failed", status="failed", failure_reason="NO_ANSWER")

    body = client.get(URL + "conf_failed").json

    assert (body["status"], body["failure_reason"], body["recording_url"]) == ("failed", "NO_ANSWER", None)


def test_timestamps_keep_milliseconds_and_are_utc(client, add_recording):
    # 13:00:00.123456 at UTC+3 is 10:00:00.123 UTC; microseconds are cut to milliseconds.
    east_africa = timezone(timedelta(hours=3))
    add_recording(
        recording_id="conf_tz", created_at=datetime(2024, 1, 15, 13, 0, 0, 123456, tzinfo=east_africa)
    )

    assert client.get(URL + "conf_tz").json["created_at"] == "2024-01-15T10:00:00.123Z"


def test_missing_recording_is_404_with_the_documented_body(client):
    response = client.get(URL + "conf_0000000000")

    assert response.status_code == 404
    assert response.json == {"detail": "Recording not found"}


@pytest.mark.parametrize(
    "recording_id",
    [
        "x" * 5000,
        "x" * 65,
        "conf_1234567890%2Fextra",
        "conf/1234567890",
        "conf_%00",
        "conf_%27%3B%20DROP%20TABLE%20voice_recordings%3B--",
        "conf_%E2%9C%93",  # non-ASCII
        "%2E%2E",
        "conf 1",
    ],
)
def test_an_id_that_cannot_exist_is_the_same_404(client, recording_id):
    response = client.get(URL + recording_id)

    assert response.status_code == 404
    assert response.json == {"detail": "Recording not found"}


@pytest.fixture
def table_taken_away(app):
    """Break the database under the running app: its table is gone until the test ends."""

    def rename(old: str, new: str) -> None:
        with app.app_context():
            db.session.execute(sa.text(f"ALTER TABLE {old} RENAME TO {new}"))
            db.session.commit()

    rename("voice_recordings", "voice_recordings_away")
    yield
    rename("voice_recordings_away", "voice_recordings")


def test_database_failure_is_500_with_the_documented_body_and_is_logged(client, table_taken_away, caplog):
    with caplog.at_level(logging.ERROR):
        response = client.get(URL + "conf_1")

    assert response.status_code == 500
    assert response.json == {"detail": "Failed to query recording status"}
    assert "conf_1" in caplog.text and "voice_recordings" in caplog.text  # the cause is in the log


def test_unreachable_database_is_500_with_the_documented_body():
    app = create_app(config_for("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2"))

    response = app.test_client().get(URL + "conf_1")

    assert response.status_code == 500
    assert response.json == {"detail": "Failed to query recording status"}


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/nowhere", 404),
        ("patch", URL + "conf_1", 405),
        ("put", URL + "conf_1", 405),
    ],
)
def test_every_error_is_json_detail(client, method, path, status):
    response = getattr(client, method)(path)

    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert list(response.json) == ["detail"] and response.json["detail"]


def test_unexpected_error_is_a_json_500(make_app):
    app = make_app()

    @app.get("/boom")
    def boom():
        raise RuntimeError("boom")

    response = app.test_client().get("/boom")

    assert response.status_code == 500
    assert response.json == {"detail": "Internal server error"}


def test_connections_the_server_closed_are_replaced_not_served(postgresql_url):
    """A PostgreSQL restart or a terminated backend leaves dead connections in each worker's pool:
    the next requests must get fresh ones, not a 500."""
    app = create_app(config_for(postgresql_url))
    client = app.test_client()
    assert client.get(URL + "conf_1").status_code == 404  # the pool now holds a connection

    with app.app_context():
        database = db.engine.url.database
    killer = sa.create_engine(config_for(postgresql_url).SQLALCHEMY_DATABASE_URI, poolclass=sa.pool.NullPool)
    with killer.connect() as connection:
        terminated = connection.execute(
            sa.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = :database AND pid <> pg_backend_pid()"
            ),
            {"database": database},
        ).scalar_one()
    assert terminated >= 1

    assert [client.get(URL + "conf_1").status_code for _ in range(3)] == [404] * 3
    with app.app_context():
        db.engine.dispose()


def _closed_by_the_server_once_checked_out(engine, killer) -> list[int]:
    """From now on, the next connection the pool hands out is closed by the server just after the
    pool's checkout check has passed it (as in a restart). Returns the backends so closed."""
    closed = []

    @sa.event.listens_for(engine, "checkout", once=True)  # after the app's own check
    def close_it(dbapi_connection, *_):
        pid = dbapi_connection.info.backend_pid
        with killer.connect() as other:
            other.execute(sa.text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
        closed.append(pid)

    return closed


@pytest.mark.parametrize("request_kind", ["lookup", "callback"])
def test_a_connection_closed_as_it_is_used_costs_nothing_but_a_second_try(postgresql_url, request_kind):
    """The checkout check cannot see a connection the server closes a moment later: the request runs
    again on a new connection. A lost connection must not cost a callback, which AT does not retry."""
    app = create_app(config_for(postgresql_url))
    client = app.test_client()
    killer = sa.create_engine(config_for(postgresql_url).SQLALCHEMY_DATABASE_URI, poolclass=sa.pool.NullPool)
    first_call = fixture_call("recorded-call")[0]
    with app.app_context():
        closed = _closed_by_the_server_once_checked_out(db.engine, killer)
        if request_kind == "lookup":
            response = client.get(URL + "conf_1")
            assert (response.status_code, response.json) == (404, {"detail": "Recording not found"})
        else:
            response = client.post("/api/v1/voice/callback", data=first_call)
            assert response.status_code == 200
            assert client.get(URL + first_call["sessionId"]).json["status"] == "recording"
        assert len(closed) == 1
        db.engine.dispose()
    killer.dispose()


def test_a_lookup_that_finds_its_connection_dead_has_the_pool_replace_the_others(postgresql_url):
    """After the database's host reboots, every pooled connection is dead, and the checkout check cannot
    see it (no goodbye was sent). The first lookup to find out has the whole pool replaced, so its second
    try, and every request after it, gets a fresh connection instead of the next dead one: no 500."""
    url = sa.engine.make_url(postgresql_url)
    proxy = RebootingProxy(url.host, url.port)
    app = create_app(
        config_for(url.set(port=proxy.port).render_as_string(hide_password=False), DB_POOL_SIZE=6)
    )
    client = app.test_client()
    try:
        with app.app_context():
            opened = [db.engine.raw_connection() for _ in range(6)]  # the pool full of connections
            for connection in opened:
                connection.close()
        assert client.get(URL + "conf_1").status_code == 404

        proxy.reboot()

        assert [client.get(URL + "conf_1").status_code for _ in range(6)] == [404] * 6
    finally:
        with app.app_context():
            db.engine.dispose()
        proxy.close()


def test_a_lookup_hands_its_connection_back_as_it_found_it(make_app):
    """On PostgreSQL the lookup reads in autocommit: the connection must go back to the pool out of it,
    or the next write on it would commit each statement as it ran. Also after a failed lookup."""
    app = make_app(DB_POOL_SIZE=1)  # one connection for the lookups and the write
    client = app.test_client()

    def rename(old: str, new: str) -> None:
        with app.app_context():
            db.session.execute(sa.text(f"ALTER TABLE {old} RENAME TO {new}"))
            db.session.commit()

    assert client.get(URL + "conf_1").status_code == 404
    rename("voice_recordings", "voice_recordings_away")
    assert client.get(URL + "conf_1").status_code == 500
    rename("voice_recordings_away", "voice_recordings")
    with app.app_context(), pytest.raises(RuntimeError, match="changed my mind"):
        with write_transaction() as session:
            session.add(Recording(recording_id="conf_1"))
            session.flush()
            raise RuntimeError("changed my mind")

    assert client.get(URL + "conf_1").status_code == 404  # rolled back: it was a transaction


@pytest.mark.parametrize("raw", ["conf%0A1", "%C2%A2%17%0A%0D", "conf_1%0D"])
def test_an_id_holding_a_line_break_is_the_apis_404_not_a_405(client, raw):
    response = client.get(URL + raw)

    assert (response.status_code, response.json) == (404, {"detail": "Recording not found"})
