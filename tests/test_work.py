"""The worker as operators run it (``flask recordings worker``, in processes of its own): many at once,
killed, stopped, and the object store going away."""

import hashlib
import os
import signal
import time
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from recordings_service import create_app
from recordings_service.extensions import db
from recordings_service.persistence.database import write_transaction
from recordings_service.persistence.models import Job
from testkit.config import config_for
from testkit.media import RECORDED_CALL, Answer
from testkit.s3 import moto_s3
from testkit.servers import worker
from tests.support import drain, fixture_call

CALLBACK = "/api/v1/voice/callback"
LOOKUP = "/api/v1/voice/recordings/"
SOURCE = RECORDED_CALL.read_bytes()
FINAL = fixture_call("recorded-call")[-1]


def recorded(client, session_id: str, url: str) -> None:
    """One recorded AT call's final callback, its recording at ``url``."""
    assert (
        client.post(CALLBACK, data={**FINAL, "sessionId": session_id, "recordingUrl": url}).status_code == 200
    )


def wait_for(predicate, seconds: float = 60, every: float = 0.2):
    deadline = time.monotonic() + seconds
    while not (result := predicate()):
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(every)
    return result


def jobs(app) -> list:
    with app.app_context():
        rows = db.session.execute(sa.select(Job.state, Job.attempts, Job.leased_until)).all()
        db.session.close()
    return rows


@pytest.mark.slow
def test_200_recordings_with_8_workers_in_2_processes_are_each_fetched_once(postgresql_url, media):
    app = create_app(config_for(postgresql_url))
    client = app.test_client()
    sessions = [f"ATVId_many_{n:03d}" for n in range(200)]
    for session_id in sessions:
        recorded(client, session_id, media.serve_file(f"/many/{session_id}.mp3"))
    settings = {"WORKER_CONCURRENCY": "4", "WORK_POLL_SECONDS": "0.2"}

    with worker(postgresql_url, **settings), worker(postgresql_url, **settings):
        wait_for(lambda: all(state.value == "done" for state, _, _ in jobs(app)), seconds=120)

    assert [media.fetches(f"/many/{session_id}.mp3") for session_id in sessions] == [1] * 200
    assert {client.get(LOOKUP + session_id).json["status"] for session_id in sessions} == {"completed"}
    with app.app_context():
        db.engine.dispose()


@pytest.mark.faults
def test_a_worker_killed_mid_fetch_leaves_the_recording_to_another(make_app, database, media, tmp_path):
    app = make_app()
    client = app.test_client()
    media.serve_file("/slow.mp3")
    media.answers["/slow.mp3"] = [Answer(hang=True), media.answers["/slow.mp3"]]
    recorded(client, "ATVId_killed", media.url("/slow.mp3"))
    settings = {"WORK_LEASE_SECONDS": "2", "WORK_POLL_SECONDS": "0.2", "AUDIO_FETCH_READ_TIMEOUT": "300"}

    with worker(database, **settings) as first:
        wait_for(lambda: media.fetches("/slow.mp3") == 1)  # in the middle of its download
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    with worker(database, **settings):
        body = wait_for(
            lambda: (b := client.get(LOOKUP + "ATVId_killed").json)["status"] == "completed" and b
        )

    assert body["audio_url"] is not None
    assert media.fetches("/slow.mp3") == 2
    [(state, attempts, _)] = jobs(app)
    assert (state.value, attempts) == ("done", 2)  # the killed attempt counted, the second finished it


@pytest.mark.slow
def test_a_stopped_worker_gives_back_the_job_in_hand_and_exits(make_app, database, media):
    app = make_app()
    client = app.test_client()
    media.answers["/stuck.mp3"] = Answer(hang=True)
    recorded(client, "ATVId_stuck", media.url("/stuck.mp3"))

    with worker(
        database, WORK_STOP_SECONDS="1", WORK_POLL_SECONDS="0.2", AUDIO_FETCH_READ_TIMEOUT="300"
    ) as running:
        wait_for(lambda: media.fetches("/stuck.mp3") == 1)
        stopped = time.monotonic()
        running.send_signal(signal.SIGTERM)
        assert running.wait(timeout=30) == 0
        took = time.monotonic() - stopped

    assert took < 10
    # Due again at once for any worker, and the attempt that could not finish is not counted.
    assert [(state.value, attempts, leased_until) for state, attempts, leased_until in jobs(app)] == [
        ("pending", 0, None)
    ]


def test_the_object_store_going_away_mid_run_loses_nothing(make_app, media, tmp_path, monkeypatch):
    with moto_s3() as store:
        port = int(store.endpoint_url.rsplit(":", 1)[1])
        for name, value in store.environment().items():
            monkeypatch.setenv(name, value)
        admin = store.client()
        admin.create_bucket(Bucket="audio")
        admin.close()
        app = make_app(
            AUDIO_STORAGE_URL="s3://audio/recordings",
            AUDIO_FETCH_GIVE_UP=0.1,  # the store's failures are not the recording's: no give-up for them
            AUDIO_FETCH_RETRY_BASE_SECONDS=0.01,
            AUDIO_FETCH_RETRY_MAX_SECONDS=0.02,
        )
        client = app.test_client()
        recorded(client, "ATVId_store", media.serve_file("/store.mp3"))
    # The store is down.
    drain(app)
    time.sleep(0.2)
    drain(app)
    assert client.get(LOOKUP + "ATVId_store").json["status"] == "processing"
    [leg] = client.get(LOOKUP + "ATVId_store/legs").json["items"]
    assert leg["audio"]["status"] == "pending" and leg["audio"]["attempts"] >= 2

    with moto_s3(port) as store:  # back (moto keeps nothing: the bucket is made again)
        admin = store.client()
        admin.create_bucket(Bucket="audio")
        time.sleep(0.05)
        drain(app)
        body = client.get(LOOKUP + "ATVId_store").json
        audio = client.get(LOOKUP + "ATVId_store/audio").data
        admin.close()

    assert body["status"] == "completed"
    assert hashlib.sha256(audio).hexdigest() == hashlib.sha256(SOURCE).hexdigest()


@contextmanager
def connects_failing(app, times: int):
    """The app's next ``times`` database connects fail, as they do while the server is down."""
    engine = db.engine
    failures = iter(range(times))

    def refuse(dialect, _record, _args, _kwargs):
        if next(failures, None) is not None:
            raise dialect.loaded_dbapi.OperationalError("connection refused")

    engine.dispose()  # no pooled connection: the next statement connects
    sa.event.listen(engine, "do_connect", refuse)
    try:
        yield
    finally:
        sa.event.remove(engine, "do_connect", refuse)


def test_a_failed_connect_leaves_the_session_ready_for_the_next_transaction(app):
    with app.app_context():
        with connects_failing(app, times=1), pytest.raises(sa.exc.OperationalError):
            with write_transaction():
                pass
        with write_transaction() as session:
            assert session.execute(sa.select(sa.func.count()).select_from(Job)).scalar_one() == 0
