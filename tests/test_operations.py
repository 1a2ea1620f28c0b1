"""What operators rely on: probes, request ids, JSON logs, metrics."""

import contextlib
import io
import json
import logging
import random
import re
import socket
import sqlite3
import string
import time
from concurrent.futures import ThreadPoolExecutor

import flask_migrate
import pytest
import sqlalchemy as sa

from recordings_service import create_app
from recordings_service.extensions import db
from recordings_service.logs import RequestIdFilter, json_formatter
from recordings_service.persistence.database import warn_if_over_budget
from recordings_service.persistence.models import Recording
from testkit.config import config_for
from testkit.servers import gunicorn, http, post_callback
from testkit.silent import SilentServer
from tests.support import fixture_call

RECORDED = fixture_call("recorded-call")


def test_healthz_answers_without_the_database():
    from recordings_service import create_app
    from testkit.config import config_for

    app = create_app(config_for("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=1"))

    assert app.test_client().get("/healthz").json == {"status": "ok"}


def test_readyz_is_ready_at_the_migrations_head(client):
    assert (client.get("/readyz").status_code, client.get("/readyz").json) == (200, {"status": "ready"})


def test_readyz_is_503_when_the_schema_is_behind(app, client):
    with app.app_context():
        head = db.session.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
        db.session.execute(sa.text("UPDATE alembic_version SET version_num = '0001'"))
        db.session.commit()
    try:
        response = client.get("/readyz")
    finally:  # the database is the session's: later tests expect it at the head
        with app.app_context():
            db.session.execute(sa.text("UPDATE alembic_version SET version_num = :head"), {"head": head})
            db.session.commit()

    assert response.status_code == 503
    assert "0001" in response.json["detail"]


def test_readyz_is_503_when_the_database_is_unreachable():
    from recordings_service import create_app
    from testkit.config import config_for

    app = create_app(config_for("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=1"))

    response = app.test_client().get("/readyz")
    assert response.status_code == 503 and response.json["detail"]


def test_a_request_id_is_made_or_honoured_and_echoed(client):
    made = client.get("/healthz").headers["X-Request-ID"]
    honoured = client.get("/healthz", headers={"X-Request-ID": "lb-7f3a.42"}).headers["X-Request-ID"]
    replaced = client.get("/healthz", headers={"X-Request-ID": "bad id\\n{}"}).headers["X-Request-ID"]

    assert len(made) == 32 and honoured == "lb-7f3a.42"
    assert replaced != "bad id\\n{}" and len(replaced) == 32


def test_logs_are_json_lines_carrying_the_request_id(client):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(json_formatter())
    logger = logging.getLogger("recordings_service")
    logger.addHandler(handler)
    try:
        response = client.post("/api/v1/voice/callback", data=RECORDED[0], headers={"X-Request-ID": "req-1"})
    finally:
        logger.removeHandler(handler)

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert response.status_code == 200
    assert lines and all(line["request_id"] == "req-1" for line in lines)
    assert {"time", "level", "logger", "message"} <= set(lines[0])


@pytest.mark.slow
def test_gunicorn_access_lines_are_json_with_the_request_id_and_no_token(database, tmp_path):
    log = tmp_path / "server.log"
    token = "s3cret-callback-token"
    with gunicorn(database, workers=1, log_to=log, LOG_FORMAT="json", VOICE_CALLBACK_TOKEN=token) as base:
        assert post_callback(base, RECORDED[0], f"?token={token}", {"X-Request-ID": "req-42"}) == 200
        assert (
            http("GET", f"{base}/api/v1/voice/recordings/nope", headers={"X-Request-ID": "req-43"})[0] == 404
        )

    text = log.read_text()
    access = [json.loads(line) for line in text.splitlines() if '"gunicorn.access"' in line]
    assert [line["request_id"] for line in access if "/healthz" not in line["message"]] == [
        "req-42",
        "req-43",
    ]
    assert token not in text


def test_metrics_count_requests_callbacks_and_recordings(client):
    def value(text: str, sample: str) -> float:
        lines = [line for line in text.splitlines() if line.startswith(sample + " ")]
        return float(lines[0].split()[-1]) if lines else 0.0

    before = client.get("/metrics").text
    for fields in RECORDED:
        client.post("/api/v1/voice/callback", data=fields)
    client.post("/api/v1/voice/callback", data=RECORDED[-1])  # a duplicate
    client.post("/api/v1/voice/callback", data={"isActive": "9"})
    client.get("/api/v1/voice/recordings/" + RECORDED[0]["sessionId"])
    after = client.get("/metrics").text

    def grew(sample: str) -> float:
        return value(after, sample) - value(before, sample)

    assert grew('voice_callbacks_total{outcome="applied"}') == 3
    assert grew('voice_callbacks_total{outcome="duplicate"}') == 1
    assert grew('voice_callbacks_total{outcome="refused"}') == 1
    assert (
        grew(
            'http_requests_total{method="GET",route="/api/v1/voice/recordings/<path:recording_id>",status="200"}'
        )
        == 1
    )
    assert value(after, 'voice_recordings{status="processing"}') == 1  # its audio is yet to be fetched
    assert (
        'http_request_duration_seconds_bucket{le="0.005",method="POST",route="/api/v1/voice/callback"}'
        in after
    )


@pytest.mark.slow
def test_metrics_add_up_across_gunicorn_workers(database):
    with gunicorn(database, workers=3) as base:
        for _ in range(30):
            http("GET", base + "/healthz")
        text = http("GET", base + "/metrics")[2].decode()

    [line] = [
        line
        for line in text.splitlines()
        if line.startswith('http_requests_total{method="GET",route="/healthz"')
    ]
    # Whichever workers took them, all 30 are counted (the test's readiness polls add a few).
    assert float(line.split()[-1]) >= 30
    # Read from every worker's files (multiprocess mode), not from the one process that answered.
    assert "python_info" not in text


# --- A database that accepts connections and never answers ---------------------------------------


@pytest.fixture
def silent_database():
    with SilentServer() as server:
        yield server


def test_a_lookup_on_a_database_that_never_answers_ends_in_a_json_error_within_the_connect_timeout(
    silent_database,
):
    timeout = 2
    app = create_app(config_for(silent_database.postgresql_url, DB_CONNECT_TIMEOUT=timeout))

    started = time.monotonic()
    response = app.test_client().get("/api/v1/voice/recordings/conf_1")
    took = time.monotonic() - started

    assert silent_database.accepted  # it did connect: the database hung, it did not refuse
    assert response.status_code in (500, 503)
    assert response.json == {"detail": "Failed to query recording status"}
    # Bounded by the configured timeout (with room for a retry and a loaded machine), not hung.
    assert took < 3 * timeout + 5


@pytest.mark.slow
def test_healthz_answers_at_once_while_the_database_hangs(silent_database):
    timeout = 5
    with gunicorn(silent_database.postgresql_url, workers=1, DB_CONNECT_TIMEOUT=str(timeout)) as base:
        with ThreadPoolExecutor(4) as pool:
            hanging = [pool.submit(http, "GET", f"{base}/api/v1/voice/recordings/conf_{n}") for n in range(3)]
            time.sleep(0.5)  # the lookups are now waiting on the database
            started = time.monotonic()
            health = http("GET", base + "/healthz", timeout=timeout)
            took = time.monotonic() - started
            lookups = [future.result(timeout=3 * timeout + 10) for future in hanging]

    assert health[0] == 200 and json.loads(health[2]) == {"status": "ok"}
    assert took < 1, took
    for status, _headers, body in lookups:
        assert status in (500, 503) and json.loads(body)["detail"]


# --- /readyz: a database it cannot write to ------------------------------------------------------


@pytest.fixture
def read_only_sqlite(tmp_path):
    """The URL of a migrated SQLite database holding conf_1, opened read-only (``mode=ro``: the file
    itself could be written, so the test does not depend on who runs it; root ignores chmod)."""
    path = tmp_path / "recordings.db"
    writable = create_app(config_for(f"sqlite:///{path}"))
    with writable.app_context():
        flask_migrate.upgrade()
        db.session.add(Recording(recording_id="conf_1", status="recording"))
        db.session.commit()
        db.engine.dispose()
    # Out of WAL mode, as a read-only file is kept: a WAL reader must write the -shm file.
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.execute("PRAGMA journal_mode=DELETE")
    return f"sqlite:///file:{path}?mode=ro&uri=true"


def test_readyz_is_503_on_a_database_it_cannot_write_while_lookups_work(read_only_sqlite):
    client = create_app(config_for(read_only_sqlite)).test_client()

    ready = client.get("/readyz")
    lookup = client.get("/api/v1/voice/recordings/conf_1")

    assert ready.status_code == 503
    assert ready.json == {"detail": "Database does not take writes (read-only)"}
    assert lookup.status_code == 200 and lookup.json["status"] == "recording"
    # And a write is refused as a JSON 500, not taken.
    refused = client.post("/api/v1/voice/recordings", json={"recording_id": "conf_2"})
    assert refused.status_code == 500 and refused.json == {"detail": "Failed to register recording"}


def test_readyz_is_200_on_a_writable_database(client):
    response = client.get("/readyz")

    assert (response.status_code, response.json) == (200, {"status": "ready"})


# --- The connection budget -----------------------------------------------------------------------


def _max_connections(url: str) -> int:
    with create_app(config_for(url)).app_context():
        with db.engine.connect() as connection:
            most = int(connection.exec_driver_sql("SHOW max_connections").scalar_one())
            reserved = int(connection.exec_driver_sql("SHOW superuser_reserved_connections").scalar_one())
        db.engine.dispose()
    return most - reserved


def test_a_warning_when_the_processes_pools_would_exceed_what_postgresql_accepts(postgresql_url, caplog):
    accepted = _max_connections(postgresql_url)
    app = create_app(config_for(postgresql_url, DB_POOL_SIZE=4, DB_MAX_OVERFLOW=2))
    processes = accepted // 6 + 1  # one process too many

    with app.app_context(), caplog.at_level(logging.INFO, logger="recordings_service"):
        warn_if_over_budget(processes)
        over = [record for record in caplog.records if record.levelno == logging.WARNING]
        caplog.clear()
        warn_if_over_budget(accepted // 6)
        within = [record for record in caplog.records if record.levelno == logging.WARNING]
        db.engine.dispose()

    [warning] = over
    assert f"{processes} processes x 6 pooled connections = {processes * 6}" in warning.getMessage()
    assert f"PostgreSQL accepts {accepted}" in warning.getMessage()
    assert "WEB_CONCURRENCY or DB_POOL_SIZE" in warning.getMessage()
    assert within == []


def test_the_budget_check_on_a_database_that_does_not_answer_is_logged_not_raised(caplog):
    with SilentServer() as silent:
        app = create_app(config_for(silent.postgresql_url, DB_CONNECT_TIMEOUT=1))
        with app.app_context(), caplog.at_level(logging.WARNING, logger="recordings_service"):
            warn_if_over_budget(100)

    assert "connection budget: not checked" in caplog.text


@pytest.mark.slow
def test_gunicorn_warns_at_start_when_over_the_budget(postgresql_url, tmp_path):
    log = tmp_path / "server.log"
    accepted = _max_connections(postgresql_url)

    with gunicorn(postgresql_url, workers=1, log_to=log, DB_POOL_SIZE=str(accepted + 1)) as base:
        deadline = time.monotonic() + 10  # the check runs beside the first worker
        while "connection budget" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert http("GET", base + "/healthz")[0] == 200

    [line] = [json.loads(line) for line in log.read_text().splitlines() if "connection budget" in line]
    assert line["level"] == "WARNING"
    assert f"1 processes x {accepted + 1} pooled connections" in line["message"]


# --- Metrics: bounded labels, and answered without the database ----------------------------------


def test_made_up_methods_and_paths_do_not_grow_the_metrics(client):
    rng = random.Random(7)
    methods = ["BREW", "PROPFIND", "X-EVIL"] + [
        "".join(rng.choices(string.ascii_uppercase, k=rng.randint(3, 12))) for _ in range(200)
    ]
    client.open("/nowhere/warm-up", method="BREW")  # the OTHER and unmatched series exist from here on
    client.get("/nowhere/warm-up")
    before = client.get("/metrics").data

    for n in range(2000):
        method = rng.choice(methods)
        path = rng.choice(["/api/v1/voice/recordings/conf_1", "/healthz", f"/made-up/{n}/{rng.random()}"])
        response = client.open(path, method=method) if n % 2 else client.get(f"/made-up/{n}")
        assert response.status_code in (404, 405)

    after = client.get("/metrics").data
    assert len(after) - len(before) < 4096, len(after) - len(before)
    text = after.decode()
    assert not [method for method in methods if f'method="{method}"' in text]
    assert "/made-up/" not in text
    assert 'method="OTHER",route="unmatched"' in text


def test_metrics_answer_while_the_database_is_down():
    app = create_app(config_for("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=1"))
    client = app.test_client()

    def failures(text: str) -> float:
        lines = [line for line in text.splitlines() if line.startswith("metrics_database_failures_total ")]
        return float(lines[0].split()[-1])

    first = client.get("/metrics")
    second = client.get("/metrics")

    assert first.status_code == second.status_code == 200
    assert "voice_recordings{" not in second.text and "jobs{" not in second.text  # left out, not zero
    assert "http_requests_total{" in second.text  # the process's own metrics are all there
    assert failures(second.text) == failures(first.text) + 1


@pytest.mark.slow
@pytest.mark.parametrize(
    ("request_line", "logged_whole"),
    [
        # gunicorn logs an invalid request line whole, query string and all
        ("POST /api/v1/voice/callback?token={token}&x=\x7f HTTP/1.1", True),
        ("POST /api/v1/voice/callback?x=1&TOKEN={token}&y=\x01 HTTP/1.1", True),
        # and of other malformed lines, the part it could not read
        ("GET /api/v1/voice/callback?token={token} HTTP/1.1 extra", False),
        ("POST /api/v1/voice/callback?token={token} HTTP/9.9", False),
        ("P\x01ST /api/v1/voice/callback?token={token} HTTP/1.1", False),
    ],
    ids=["control-character", "token-uppercase", "extra-part", "bad-version", "bad-method"],
)
def test_a_malformed_request_line_is_logged_without_the_token(tmp_path, request_line, logged_whole):
    log = tmp_path / "server.log"
    token = "s3cret-callback-token-0123456789abcdef"
    database = f"sqlite:///{tmp_path}/recordings.db"  # never reached: gunicorn refuses the line itself
    with gunicorn(database, workers=1, log_to=log, LOG_FORMAT="json", VOICE_CALLBACK_TOKEN=token) as base:
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(request_line.format(token=token).encode("latin-1") + b"\r\nHost: x\r\n\r\n")
            answer = sock.recv(65536)
        time.sleep(0.5)  # the worker's log line reaches the file

    text = log.read_text()
    assert answer.startswith(b"HTTP/1.1 400"), answer[:100]
    assert "Invalid request from ip=127.0.0.1" in text
    assert token not in text
    if logged_whole:  # the line was logged, its secret taken out
        assert re.search(r"(?i)token=\[redacted\]", text)
