"""The schema comes from Alembic, and the migrations match the models."""

import json
from datetime import UTC, datetime

import flask_migrate
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from recordings_service import create_app
from recordings_service.domain.rules import Status
from recordings_service.extensions import db
from recordings_service.persistence.models import Recording
from recordings_service.recordings import public
from testkit.config import config_for


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


# The head before this round's migrations: databases in the field are there.
PREVIOUS_HEAD = "0003"


def test_upgrading_a_database_in_use_keeps_every_recording_as_clients_see_it(blank_database):
    app = create_app(config_for(blank_database))
    with app.app_context():
        flask_migrate.upgrade(revision=PREVIOUS_HEAD)
        for number, (status, url, reason) in enumerate(
            [
                ("recording", None, None),
                ("processing", None, None),
                ("completed", "https://voice.africastalking.com/recording/abc", None),
                ("failed", None, "NO_ANSWER"),
            ]
        ):
            db.session.execute(
                sa.text(
                    "INSERT INTO voice_recordings (recording_id, status, duration, recording_url, failure_reason,"
                    " created_at, updated_at, processed_at) VALUES (:rid, :status, :duration, :url, :reason,"
                    " :created, :created, :processed)"
                ),
                {
                    "rid": f"conf_{number}",
                    "status": status,
                    "duration": 60 if url else None,
                    "url": url,
                    "reason": reason,
                    "created": datetime(2024, 1, 15, 10, number, tzinfo=UTC),
                    "processed": datetime(2024, 1, 15, 11, tzinfo=UTC) if url else None,
                },
            )
        db.session.commit()
        db.engine.dispose()

    with app.app_context():
        flask_migrate.upgrade()
        after = [json.loads(public.read(f"conf_{n}").body) for n in range(4)]
        statuses = db.session.execute(sa.select(Recording.status).order_by(Recording.pk)).scalars().all()
        db.session.close()
        db.engine.dispose()

    assert statuses == [Status.RECORDING, Status.PROCESSING, Status.COMPLETED, Status.FAILED]
    # Every body as it was, the fields of this round's migrations null: the service never held their audio.
    assert after[2] == {
        "recording_id": "conf_2",
        "status": "completed",
        "duration": 60,
        "recording_url": "https://voice.africastalking.com/recording/abc",
        "created_at": "2024-01-15T10:02:00.000Z",
        "processed_at": "2024-01-15T11:00:00.000Z",
        "failure_reason": None,
        "audio_url": None,
        "audio_removed_at": None,
        "updated_at": "2024-01-15T10:02:00.000Z",
    }
    assert [(body["status"], body["failure_reason"]) for body in after] == [
        ("recording", None),
        ("processing", None),
        ("completed", None),
        ("failed", "NO_ANSWER"),
    ]


def test_upgrading_from_0005_makes_callback_made_recordings_provisional_and_adoptable(blank_database):
    app = create_app(config_for(blank_database))
    now = datetime(2024, 1, 15, 10, tzinfo=UTC)
    with app.app_context():
        flask_migrate.upgrade(revision="0005")
        for recording_id, session_id, dial in [
            ("ATVId_orphan", "ATVId_orphan", None),
            ("conf_named", "ATVId_named", '["+254722000111"]'),
        ]:
            pk = db.session.execute(
                sa.text(
                    "INSERT INTO voice_recordings (recording_id, status, dial, created_at, updated_at)"
                    " VALUES (:rid, 'recording', :dial, :now, :now) RETURNING id"
                ),
                {"rid": recording_id, "dial": dial, "now": now},
            ).scalar_one()
            db.session.execute(
                sa.text(
                    "INSERT INTO voice_call_sessions (recording_pk, session_id, heard, ended, ended_well,"
                    " created_at, updated_at) VALUES (:pk, :sid, true, false, false, :now, :now)"
                ),
                {"pk": pk, "sid": session_id, "now": now},
            )
        db.session.commit()
        db.engine.dispose()

    with app.app_context():
        flask_migrate.upgrade()
        flags = db.session.execute(
            sa.select(Recording.recording_id, Recording.provisional).order_by(Recording.pk)
        ).all()
        db.session.close()
        db.engine.dispose()
    adopted = app.test_client().post(
        "/api/v1/voice/recordings", json={"recording_id": "conf_new", "session_ids": ["ATVId_orphan"]}
    )
    taken = app.test_client().post(
        "/api/v1/voice/recordings", json={"recording_id": "conf_other", "session_ids": ["ATVId_named"]}
    )
    with app.app_context():
        db.engine.dispose()

    assert [tuple(row) for row in flags] == [("ATVId_orphan", True), ("conf_named", False)]
    assert (adopted.status_code, taken.status_code) == (201, 409)
