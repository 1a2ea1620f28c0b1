"""The schema comes from Alembic, and the migrations match the models."""

import flask_migrate
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from recordings_service.extensions import db


def test_migrations_at_head_match_the_models(app):
    with app.app_context(), db.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), db.metadata)

    assert differences == []


def test_status_and_duration_are_enforced_by_the_database(app):
    with app.app_context():
        for values in ("'conf_a', 'done', NULL", "'conf_b', 'recording', -1"):
            try:
                db.session.execute(
                    sa.text(
                        "INSERT INTO voice_recordings (recording_id, status, duration, created_at, updated_at)"
                        f" VALUES ({values}, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                    )
                )
            except sa.exc.IntegrityError:
                db.session.rollback()
            else:
                raise AssertionError(f"the database accepted {values}")


def test_downgrade_to_base_and_back(app):
    with app.app_context():
        flask_migrate.downgrade(revision="base")
        assert sa.inspect(db.engine).get_table_names() == ["alembic_version"]
        flask_migrate.upgrade()
        assert "voice_recordings" in sa.inspect(db.engine).get_table_names()
