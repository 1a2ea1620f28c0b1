"""Fixtures: every database test runs once on SQLite and once on PostgreSQL.

PostgreSQL runs when ``TEST_DATABASE_URL`` names a server the tests may create a scratch database on;
without it those tests are skipped, and ``--no-skip`` (used by CI) turns any skip into a failure.
"""

import os
import uuid

import flask_migrate
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from config import database_url
from recordings_service import create_app
from recordings_service.extensions import db
from recordings_service.integrations.storage import storage_from_config
from testkit.config import config_for
from testkit.fake_at import FakeAT
from testkit.media import MediaServer
from testkit.s3 import moto_s3
from tests.support import empty_tables

BACKENDS = ["sqlite", "postgresql"]
STORAGE_BACKENDS = ["local", "s3"]


def pytest_addoption(parser):
    parser.addoption("--no-skip", action="store_true", help="fail the run if any test was skipped")


def pytest_sessionfinish(session, exitstatus):
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if session.config.getoption("--no-skip") and skipped and exitstatus == pytest.ExitCode.OK:
        reporter.write_line(f"--no-skip: {len(skipped)} test(s) were skipped", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _scratch_postgresql() -> tuple[str, sa.Engine]:
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        pytest.skip("TEST_DATABASE_URL is not set: PostgreSQL tests not run")
    admin_url = make_url(database_url(base))
    # No pool: a fault test may restart the server, which would leave a pooled connection dead.
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    name = f"recordings_test_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    return admin_url.set(database=name).render_as_string(hide_password=False), admin


@pytest.fixture(scope="session", params=BACKENDS)
def database(request, tmp_path_factory):
    """A migrated database of each backend for the whole run: its URL."""
    admin = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite')}/recordings.db"
    else:
        url, admin = _scratch_postgresql()
    _migrate(url)
    yield url
    if admin is not None:
        _drop(url, admin)


@pytest.fixture
def postgresql_url():
    """A migrated PostgreSQL database of the test's own (for tests that are about PostgreSQL itself)."""
    url, admin = _scratch_postgresql()
    _migrate(url)
    yield url
    _drop(url, admin)


@pytest.fixture(params=BACKENDS)
def blank_database(request, tmp_path):
    """An empty database of each backend, not migrated, for the test alone: its URL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/blank.db"
        return
    url, admin = _scratch_postgresql()
    yield url
    _drop(url, admin)


def _migrate(url: str) -> None:
    app = create_app(config_for(url))
    with app.app_context():
        flask_migrate.upgrade()
        db.engine.dispose()


def _drop(url: str, admin: sa.Engine) -> None:
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE "{make_url(url).database}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture
def make_app(database):
    """Build apps on the test database, emptied first; each is disposed of after the test."""
    apps = []

    def make(**settings):
        app = create_app(config_for(database, **settings))
        with app.app_context():
            if not apps:
                empty_tables()
        apps.append(app)
        return app

    yield make
    for app in apps:
        with app.app_context():
            db.engine.dispose()
        client = getattr(app.extensions["audio_storage"], "client", None)
        if client is not None:
            client.close()
        if app.extensions["at_voice"] is not None:
            app.extensions["at_voice"].close()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def media():
    """A scripted HTTP server on loopback (testkit/media.py): where outbound requests go."""
    with MediaServer() as server:
        yield server


@pytest.fixture
def fake_at():
    """Africa's Talking's Voice API on loopback (testkit/fake_at.py), posting no callbacks unless told."""
    with FakeAT() as server:
        yield server


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on a loopback port, in a process of its own, for the whole run."""
    with moto_s3() as server:
        yield server


@pytest.fixture(params=STORAGE_BACKENDS)
def storage_settings(request, tmp_path, monkeypatch):
    """AUDIO_STORAGE_URL of each backend, as an operator sets it: a temporary directory, and a fresh
    bucket on moto (with the AWS_* environment pointing boto3 at it)."""
    if request.param == "local":
        return {"AUDIO_STORAGE_URL": f"file://{tmp_path}/audio"}
    server = request.getfixturevalue("s3_server")
    bucket = f"audio-{uuid.uuid4().hex[:12]}"
    admin = server.client()
    admin.create_bucket(Bucket=bucket)
    admin.close()
    for name, value in server.environment().items():
        monkeypatch.setenv(name, value)
    return {"AUDIO_STORAGE_URL": f"s3://{bucket}/recordings"}


@pytest.fixture
def storage(storage_settings, tmp_path):
    """Audio storage of each backend, empty, built as the app builds it (from AUDIO_STORAGE_URL)."""
    built = storage_from_config(storage_settings, tmp_path)
    yield built
    if hasattr(built, "client"):
        built.client.close()
