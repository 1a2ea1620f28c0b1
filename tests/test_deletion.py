"""Letting recordings go: deletion on request and retention, on both databases and both stores."""

import base64
import json
import os
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from recordings_service.domain.clock import utcnow
from recordings_service.exceptions import ObjectNotFound, StorageUnavailable
from recordings_service.extensions import db
from recordings_service.persistence.models import Job, Leg, Recording, StoredCallback
from recordings_service.recordings import deletion
from recordings_service.recordings.deletion import remove_deleted_audio, remove_expired_audio
from testkit.receiver import Receiver
from testkit.servers import gunicorn, lookup
from tests.support import drain, fixture_call

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
CALLBACK = "/api/v1/voice/callback"
LOOKUP = "/api/v1/voice/recordings/"
NOT_FOUND = {"detail": "Recording not found"}


@pytest.fixture
def app(make_app, storage_settings):
    return make_app(PUBLIC_BASE_URL="https://recordings.example", **storage_settings)


def recorded(client, media, recording_id: str, legs: list[str]) -> None:
    """A recording of ``legs``, each a recorded call whose final callback names real audio."""
    client.post("/api/v1/voice/recordings", json={"recording_id": recording_id, "session_ids": legs})
    for session_id in legs:
        for fields in fixture_call("recorded-call"):
            fields = {**fields, "sessionId": session_id}
            if "recordingUrl" in fields:
                fields["recordingUrl"] = media.serve_file(f"/{session_id}.mp3")
            assert client.post(CALLBACK, data=fields).status_code == 200


def columns(row) -> dict:
    return {attribute.key: getattr(row, attribute.key) for attribute in sa.inspect(type(row)).column_attrs}


def snapshot(app, recording_id: str) -> dict:
    """Everything stored of ``recording_id``: the row, its legs, its callbacks, its audio objects."""
    with app.app_context():
        recording = db.session.execute(sa.select(Recording).filter_by(recording_id=recording_id)).scalar_one()
        legs = db.session.execute(sa.select(Leg).filter_by(recording_pk=recording.pk)).scalars().all()
        callbacks = (
            db.session.execute(sa.select(StoredCallback).filter_by(recording_pk=recording.pk)).scalars().all()
        )
        storage = app.extensions["audio_storage"]
        return {
            "recording": columns(recording),
            "legs": [columns(leg) for leg in legs],
            "callbacks": [callback.fields for callback in callbacks],
            "audio": [b"".join(storage.read(leg.audio_key)) for leg in legs if leg.audio_key],
        }


def test_delete_removes_the_audio_and_the_personal_data_and_nothing_else(app, client, media, runner):
    recorded(client, media, "conf_gone", ["ATVId_gone_a", "ATVId_gone_b"])
    recorded(client, media, "conf_kept", ["ATVId_kept"])
    drain(app)
    keys = [leg["audio"]["url"] for leg in client.get(LOOKUP + "conf_gone/legs").json["items"]]
    assert len(keys) == 2 and client.get(LOOKUP + "conf_gone").json["status"] == "completed"
    with app.app_context():
        stored_keys = (
            db.session.execute(
                sa.select(Leg.audio_key).join(Recording).where(Recording.recording_id == "conf_gone")
            )
            .scalars()
            .all()
        )
    kept = snapshot(app, "conf_kept")

    response = client.delete(LOOKUP + "conf_gone")

    assert (response.status_code, response.data) == (204, b"")
    for path in ("conf_gone", "conf_gone/legs", "conf_gone/deliveries"):
        assert (client.get(LOOKUP + path).status_code, client.get(LOOKUP + path).json) == (404, NOT_FOUND)
    assert client.get(LOOKUP + "conf_gone/audio").status_code == 404
    assert "conf_gone" not in [item["recording_id"] for item in client.get(LOOKUP.rstrip("/")).json["items"]]
    storage = app.extensions["audio_storage"]
    for key in stored_keys:  # the bytes are gone from the store
        with pytest.raises(ObjectNotFound):
            storage.stat(key)
    gone = snapshot(app, "conf_gone")
    text = json.dumps(gone, default=str)
    assert "+254" not in text and "/ATVId_gone_a.mp3" not in text  # no phone number, no recording URL
    assert {field for fields in gone["callbacks"] for field in fields if fields[field] == "[redacted]"} >= {
        "callerNumber",
        "destinationNumber",
        "dialDestinationNumber",
        "recordingUrl",
    }
    assert snapshot(app, "conf_kept") == kept  # nothing outside the deleted recording changed
    # Gone for good: again, through the CLI, or registered anew.
    assert client.delete(LOOKUP + "conf_gone").status_code == 404
    assert "not found" in runner.invoke(args=["recordings", "delete", "conf_gone"]).output
    assert client.post("/api/v1/voice/recordings", json={"recording_id": "conf_gone"}).status_code == 409


def test_a_late_callback_of_a_deleted_recording_is_kept_redacted_and_revives_nothing(
    app, client, media, runner
):
    recorded(client, media, "conf_gone", ["ATVId_gone_a"])
    client.delete(LOOKUP + "conf_gone")
    late = {
        **fixture_call("recorded-call")[-1],
        "sessionId": "ATVId_gone_a",
        "recordingUrl": media.serve_file("/x.mp3"),
    }

    answers = [
        client.post(CALLBACK, data=late).status_code,
        client.post(CALLBACK, data=fixture_call("recorded-call")[0] | {"sessionId": "ATVId_gone_a"}),
    ]

    assert answers[0] == 200 and answers[1].status_code == 200 and b"Dial" not in answers[1].data
    assert drain(app) == 0  # nothing to fetch
    assert client.get(LOOKUP + "conf_gone").status_code == 404
    assert client.get(LOOKUP + "ATVId_gone_a").status_code == 404  # no orphan named after the session
    assert "+254" not in json.dumps(snapshot(app, "conf_gone")["callbacks"])
    assert "replayed 0 recordings" in runner.invoke(args=["recordings", "replay"]).output


def test_a_live_callback_of_a_deleted_recording_dials_and_records_nobody(make_app, media):
    app = make_app(VOICE_DIAL_NUMBERS=["+254700000001"])
    client = app.test_client()
    recorded(client, media, "conf_gone", ["ATVId_gone"])
    client.delete(LOOKUP + "conf_gone")

    answer = client.post(CALLBACK, data=fixture_call("recorded-call")[0] | {"sessionId": "ATVId_gone"})

    assert answer.status_code == 200
    assert answer.data.decode().endswith("<Response />")


def test_a_session_of_a_deleted_provisional_recording_is_not_adopted(app, client, media):
    # A callback came first: the session got a provisional recording, named after it, which was deleted;
    # a late callback was kept redacted. Naming the session now must not revive the deleted data.
    for fields in fixture_call("recorded-call"):
        fields = {**fields, "sessionId": "ATVId_orphan"}
        if "recordingUrl" in fields:
            fields["recordingUrl"] = media.serve_file("/orphan.mp3")
        assert client.post(CALLBACK, data=fields).status_code == 200
    assert client.delete(LOOKUP + "ATVId_orphan").status_code == 204
    late = fixture_call("recorded-call")[-1] | {"sessionId": "ATVId_orphan", "recordingUrl": ""}
    assert client.post(CALLBACK, data=late).status_code == 200
    before = snapshot(app, "ATVId_orphan")

    answer = client.post(
        "/api/v1/voice/recordings", json={"recording_id": "conf_late", "session_ids": ["ATVId_orphan"]}
    )

    assert answer.status_code == 409, answer.json
    assert answer.json["detail"]
    assert client.get(LOOKUP + "conf_late").status_code == 404  # nothing registered
    assert snapshot(app, "ATVId_orphan") == before


def test_deletion_tells_the_webhooks_and_stops_what_was_still_to_send(make_app, storage_settings, media):
    with Receiver(statuses=[500]) as hooks:
        app = make_app(
            WEBHOOK_URL=hooks.url, WEBHOOK_SECRET=SECRET, WEBHOOK_RETRY_SCHEDULE=[0, 60], **storage_settings
        )
        client = app.test_client()
        client.post(CALLBACK, data=fixture_call("recorded-call")[0])  # no event: recording
        client.post(CALLBACK, data=fixture_call("recorded-call")[-1])  # processing: its delivery fails once
        drain(app)
        client.delete(LOOKUP + fixture_call("recorded-call")[0]["sessionId"])
        drain(app)

    events = [json.loads(request.body) for request in hooks.received]
    assert [event["type"] for event in events] == ["recording.processing", "recording.deleted"]
    assert events[-1]["data"]["recording_url"] is None and events[-1]["data"]["audio_url"] is None
    with app.app_context():
        states = db.session.execute(sa.select(Job.kind, Job.state, Job.last_error).order_by(Job.pk)).all()
    # The fetch and the first delivery, still pending when it was deleted, were given up.
    assert [(kind, state.value, error) for kind, state, error in states] == [
        ("fetch_audio", "failed", "recording deleted"),
        ("deliver_webhook", "failed", "recording deleted"),
        ("deliver_webhook", "done", None),
    ]


def test_retention_removes_old_audio_and_keeps_the_recording(app, client, media):
    recorded(client, media, "conf_old", ["ATVId_old"])
    drain(app)
    recorded(client, media, "conf_new", ["ATVId_new"])
    drain(app)
    storage = app.extensions["audio_storage"]
    with app.app_context():
        old, new = (
            db.session.execute(sa.select(Leg).filter_by(session_id=sid)).scalar_one()
            for sid in ("ATVId_old", "ATVId_new")
        )
        old.audio_stored_at -= timedelta(days=31)  # stored a month ago
        db.session.commit()
        old_key, old_stored_at = old.audio_key, old.audio_stored_at
    kept = snapshot(app, "conf_new")

    with app.app_context():
        assert remove_expired_audio(storage, timedelta(days=30), now=old_stored_at + timedelta(days=29)) == []
        removed = remove_expired_audio(storage, timedelta(days=30), now=old_stored_at + timedelta(days=31))

    assert removed == ["conf_old"]
    body = client.get(LOOKUP + "conf_old").json
    assert (body["status"], body["audio_url"]) == ("completed", None)
    assert body["audio_removed_at"] == (old_stored_at + timedelta(days=31)).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{(old_stored_at + timedelta(days=31)).microsecond // 1000:03d}Z"
    )
    assert client.get(LOOKUP + "conf_old/audio").status_code == 404
    with pytest.raises(ObjectNotFound):
        storage.stat(old_key)
    assert snapshot(app, "conf_new") == kept


@pytest.mark.slow
def test_the_worker_applies_retention(make_app, database, media, tmp_path):
    from testkit.servers import worker

    app = make_app(AUDIO_STORAGE_URL=f"file://{tmp_path}/audio")
    client = app.test_client()
    recorded(client, media, "conf_old", ["ATVId_old"])
    drain(app)
    with app.app_context():
        old = db.session.execute(sa.select(Leg).filter_by(session_id="ATVId_old")).scalar_one()
        old.audio_stored_at -= timedelta(days=2)
        db.session.commit()
    settings = {
        "AUDIO_STORAGE_URL": f"file://{tmp_path}/audio",
        "AUDIO_RETENTION_DAYS": "1",
        "RETENTION_INTERVAL_SECONDS": "0.2s",
    }
    with worker(database, **settings):
        deadline = time.monotonic() + 30
        while client.get(LOOKUP + "conf_old").json["audio_removed_at"] is None:
            assert time.monotonic() < deadline
            time.sleep(0.2)

    assert client.get(LOOKUP + "conf_old").json["audio_url"] is None


@pytest.mark.slow
def test_the_worker_removes_the_audio_the_store_refused_at_deletion(make_app, database, media, tmp_path):
    from testkit.servers import worker

    app = make_app(AUDIO_STORAGE_URL=f"file://{tmp_path}/audio")
    client = app.test_client()
    recorded(client, media, "conf_gone", ["ATVId_gone"])
    drain(app)
    storage = app.extensions["audio_storage"]
    (key,) = stored_keys(app, "conf_gone")

    def unavailable(key):
        raise StorageUnavailable("the store is down")

    storage.delete = unavailable
    assert client.delete(LOOKUP + "conf_gone").status_code == 204
    del storage.delete
    storage.stat(key)  # kept while the store was down
    settings = {"AUDIO_STORAGE_URL": f"file://{tmp_path}/audio", "RETENTION_INTERVAL_SECONDS": "0.2"}
    with worker(database, **settings):
        deadline = time.monotonic() + 30
        while stored_keys(app, "conf_gone"):
            assert time.monotonic() < deadline
            time.sleep(0.2)

    with pytest.raises(ObjectNotFound):
        storage.stat(key)


@pytest.mark.slow
def test_every_worker_answers_404_within_the_cache_bound_after_a_deletion(make_app, database, media):
    app = make_app()
    client = app.test_client()
    recorded(client, media, "conf_gone", ["ATVId_gone"])
    drain(app)
    bound = app.config["COMPLETED_CACHE_SECONDS"]
    with gunicorn(database, workers=2) as base:
        for _ in range(40):  # every worker has it cached
            assert lookup(base, "conf_gone")["status"] == "completed"
        assert client.delete(LOOKUP + "conf_gone").status_code == 204  # another process deletes it
        deleted = time.monotonic()
        from testkit.servers import http

        last_found = 0.0
        while time.monotonic() - deleted < bound + 2:
            for _ in range(10):
                if http("GET", base + LOOKUP + "conf_gone")[0] == 200:
                    last_found = time.monotonic() - deleted
            time.sleep(0.1)

    assert last_found < bound + 0.5, f"a worker answered 200 {last_found:.1f} s after the deletion"
    print(f"the deleted recording was served until {last_found:.2f} s after (bound {bound} s)")


def stored_keys(app, recording_id: str) -> list[str]:
    with app.app_context():
        query = sa.select(Leg.audio_key).join(Recording).where(Recording.recording_id == recording_id)
        return [key for key in db.session.execute(query).scalars() if key]


def test_a_recording_deleted_while_its_audio_is_stored_keeps_no_audio(app, client, media, monkeypatch):
    recorded(client, media, "conf_1", ["ATVId_one"])
    storage = app.extensions["audio_storage"]
    put, written = storage.put, []

    def put_then_deleted(key, *args, **kwargs):
        stored = put(key, *args, **kwargs)
        written.append(key)
        assert app.test_client().delete(LOOKUP + "conf_1").status_code == 204  # while the job holds it
        return stored

    monkeypatch.setattr(storage, "put", put_then_deleted)
    drain(app)

    assert written and client.get(LOOKUP + "conf_1").status_code == 404
    with pytest.raises(ObjectNotFound):
        storage.stat(written[0])
    assert stored_keys(app, "conf_1") == []


def test_a_worker_whose_job_another_took_and_stored_leaves_that_audio_alone(app, client, media, monkeypatch):
    recorded(client, media, "conf_1", ["ATVId_one"])
    storage = app.extensions["audio_storage"]
    put, calls = storage.put, []

    def put_then_taken_over(key, *args, **kwargs):
        calls.append(key)
        stored = put(key, *args, **kwargs)
        if len(calls) == 1:  # this worker's lease runs out; another takes the job and stores the audio
            with app.app_context():
                db.session.execute(sa.update(Job).values(leased_until=utcnow() - timedelta(hours=1)))
                db.session.commit()
            drain(app)
        return stored

    monkeypatch.setattr(storage, "put", put_then_taken_over)
    drain(app)

    assert len(calls) == 2 and client.get(LOOKUP + "conf_1").json["status"] == "completed"
    with client.get(LOOKUP + "conf_1/audio") as audio:
        assert audio.status_code == 200 and audio.data == b"".join(storage.read(calls[0]))


def test_audio_a_worker_could_not_remove_for_a_deleted_recording_is_removed_later(
    app, client, media, monkeypatch
):
    recorded(client, media, "conf_1", ["ATVId_one"])
    storage = app.extensions["audio_storage"]
    put, delete, written = storage.put, storage.delete, []

    def unavailable(key):
        raise StorageUnavailable("the store is down")

    def put_then_deleted(key, *args, **kwargs):
        stored = put(key, *args, **kwargs)
        written.append(key)
        monkeypatch.setattr(storage, "delete", unavailable)
        assert app.test_client().delete(LOOKUP + "conf_1").status_code == 204
        return stored

    monkeypatch.setattr(storage, "put", put_then_deleted)
    drain(app)
    storage.stat(written[0])  # still there: the store was down
    monkeypatch.setattr(storage, "delete", delete)
    with app.app_context():
        remove_deleted_audio(storage)

    with pytest.raises(ObjectNotFound):
        storage.stat(written[0])
    assert stored_keys(app, "conf_1") == []


def test_a_store_that_fails_deletes_the_recording_and_its_audio_goes_once_the_store_is_back(
    app, client, media, monkeypatch
):
    recorded(client, media, "conf_1", ["ATVId_one"])
    drain(app)
    storage = app.extensions["audio_storage"]
    (key,) = stored_keys(app, "conf_1")
    delete = storage.delete

    def unavailable(key):
        raise StorageUnavailable("the store is down")

    monkeypatch.setattr(storage, "delete", unavailable)
    response = client.delete(LOOKUP + "conf_1")

    assert (response.status_code, client.get(LOOKUP + "conf_1").status_code) == (204, 404)
    assert "+254" not in json.dumps(snapshot(app, "conf_1")["callbacks"])
    with app.app_context():
        assert remove_deleted_audio(storage) == 0  # still down: kept for the next round
    storage.stat(key)
    monkeypatch.setattr(storage, "delete", delete)
    with app.app_context():
        assert remove_deleted_audio(storage) == 1
    with pytest.raises(ObjectNotFound):
        storage.stat(key)
    assert stored_keys(app, "conf_1") == []


def test_a_database_failure_during_a_deletion_changes_nothing(app, client, media, monkeypatch):
    recorded(client, media, "conf_1", ["ATVId_one"])
    drain(app)
    before = snapshot(app, "conf_1")

    def failing(*args, **kwargs):
        raise sa.exc.OperationalError("UPDATE jobs", {}, Exception("the database failed"))

    monkeypatch.setattr(deletion.queue, "cancel", failing)
    response = client.delete(LOOKUP + "conf_1")

    assert response.status_code == 500 and response.json["detail"]
    assert snapshot(app, "conf_1") == before
    assert client.get(LOOKUP + "conf_1").json["status"] == "completed"
    with client.get(LOOKUP + "conf_1/audio") as audio:
        assert (audio.status_code, audio.data) == (200, before["audio"][0])
