"""The worker as operators run it (``flask recordings worker``, in processes of its own): many at once,
killed, stopped, and the object store going away."""

import base64
import collections
import dataclasses
import hashlib
import os
import signal
import threading
import time
from contextlib import contextmanager
from datetime import timedelta

import pytest
import sqlalchemy as sa

from recordings_service import create_app
from recordings_service.domain.clock import utcnow
from recordings_service.extensions import db
from recordings_service.persistence import liveness, queue
from recordings_service.persistence.database import write_transaction
from recordings_service.persistence.models import Job, WorkerProcess
from recordings_service.work import deliver_webhook, fetch_audio
from recordings_service.work import worker as worker_module
from recordings_service.work.worker import Worker
from testkit.config import config_for
from testkit.media import RECORDED_CALL, Answer
from testkit.s3 import moto_s3
from testkit.servers import worker
from tests import tally_kind
from tests.support import drain, fixture_call

CALLBACK = "/api/v1/voice/callback"
LOOKUP = "/api/v1/voice/recordings/"
SOURCE = RECORDED_CALL.read_bytes()
FINAL = fixture_call("recorded-call")[-1]
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"w" * 32).decode()


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


def enqueue(app, kind: str, **about) -> None:
    with app.app_context(), write_transaction() as session:
        queue.enqueue(session, kind, **about)


def run_until(worker: Worker, done, seconds: float = 30) -> int:
    """Run ``worker`` (in this thread, as the CLI does) until ``done()`` holds, when it is stopped as
    SIGTERM stops it, or until it exits by itself; its exit code."""

    def stop_when_done():
        deadline = time.monotonic() + seconds
        while not (done() or worker.stopping.is_set()) and time.monotonic() < deadline:
            time.sleep(0.05)
        worker.stop()

    stopper = threading.Thread(target=stop_when_done)
    handlers = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    stopper.start()
    try:
        return worker.run()
    finally:
        stopper.join()
        for number, handler in handlers.items():
            signal.signal(number, handler)


def tally_jobs(app) -> list[tuple]:
    with app.app_context():
        query = sa.select(Job.target_url, Job.state, Job.attempts, Job.last_status, Job.last_error)
        rows = db.session.execute(query.where(Job.kind == "tally").order_by(Job.pk)).all()
        db.session.close()
    return [(needed, state.value, *rest) for needed, state, *rest in rows]


TALLIED = [
    ("1", "done", 1, 1, None),
    ("3", "done", 3, 3, None),  # attempt 1 raised, attempt 2 returned a retry
    ("4", "failed", 3, 3, "RuntimeError: attempt 3 of 4"),  # given up by the kind's rule
]


def test_a_kind_of_job_of_its_own_is_run_retried_and_given_up(make_app):
    app = make_app(TALLY_CONCURRENCY=2, WORK_POLL_SECONDS=0.01)
    for needed in ("1", "3", "4"):
        enqueue(app, tally_kind.KIND.name, target_url=needed)

    worker = Worker(app, kinds=[tally_kind.KIND])
    code = run_until(worker, lambda: all(state != "pending" for _, state, *_ in tally_jobs(app)))

    assert code == 0
    assert tally_jobs(app) == TALLIED


def test_a_heartbeat_that_read_a_claim_before_its_retry_does_not_hold_the_retried_job(app):
    enqueue(app, tally_kind.KIND.name, target_url="2")
    with app.app_context():
        claim = queue.claim([tally_kind.KIND.name], timedelta(minutes=1))
        with write_transaction() as session:
            queue.retry(queue.held(session, claim), utcnow(), "attempt 1 of 2")
        queue.heartbeat([claim], timedelta(minutes=1))  # the heartbeat's copy of the jobs in hand

        again = queue.claim([tally_kind.KIND.name], timedelta(minutes=1))

    assert again is not None and again.attempts == 2


def test_a_kind_of_job_of_its_own_is_drained(make_app):
    app = make_app()
    for needed in ("1", "3", "4"):
        enqueue(app, tally_kind.KIND.name, target_url=needed)

    worker = Worker(app, kinds=[tally_kind.KIND])
    with app.app_context():
        assert [worker.drain() for _ in range(4)] == [3, 2, 2, 0]

    assert tally_jobs(app) == TALLIED


def once_raising(name: str, calls: collections.Counter, real):
    """``real``, except that its first call raises RuntimeError; ``calls`` counts the calls."""

    def call(*args, **kwargs):
        calls[name] += 1
        if calls[name] == 1:
            raise RuntimeError(f"{name} broke")
        return real(*args, **kwargs)

    return call


def test_each_loop_of_the_worker_survives_an_exception_and_goes_on(make_app, monkeypatch):
    app = make_app(
        TALLY_CONCURRENCY=1, WORK_POLL_SECONDS=0.01, WORK_LEASE_SECONDS=1, SWEEP_INTERVAL_SECONDS=0.02
    )
    calls = collections.Counter()
    monkeypatch.setattr(queue, "claim", once_raising("claim", calls, queue.claim))
    monkeypatch.setattr(queue, "heartbeat", once_raising("heartbeat", calls, queue.heartbeat))
    monkeypatch.setattr(worker_module, "sweep", once_raising("sweep", calls, lambda _after: None))

    def held_until_renewed(claim):
        deadline = time.monotonic() + 20
        while calls["heartbeat"] < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        return tally_kind.run(claim)

    kind = dataclasses.replace(tally_kind.KIND, run=held_until_renewed)
    enqueue(app, kind.name, target_url="1")
    worker = Worker(app, kinds=[kind])
    code = run_until(worker, lambda: tally_jobs(app)[0][1] == "done" and calls["sweep"] >= 2)

    assert code == 0
    assert tally_jobs(app) == [TALLIED[0]]  # the claim that raised counted no attempt
    assert calls["claim"] >= 2 and calls["heartbeat"] >= 3 and calls["sweep"] >= 2


def test_a_worker_whose_loop_keeps_failing_exits_1(make_app, monkeypatch):
    app = make_app(TALLY_CONCURRENCY=1, WORK_POLL_SECONDS=0.01, WORK_FAILING_SECONDS=0.5)

    def broken(*_args):
        raise RuntimeError("no database")

    monkeypatch.setattr(queue, "claim", broken)
    # Never told to stop (that would exit 0): it exits by itself.
    assert run_until(Worker(app, kinds=[tally_kind.KIND]), lambda: False) == 1


def test_a_fetch_that_raises_counts_an_attempt_and_is_retried_then_given_up(make_app, media, monkeypatch):
    app = make_app(
        AUDIO_FETCH_RETRY_BASE_SECONDS=0.01, AUDIO_FETCH_RETRY_MAX_SECONDS=0.02, AUDIO_FETCH_GIVE_UP=1
    )
    client = app.test_client()
    recorded(client, "ATVId_raises", media.serve_file("/raises.mp3"))

    def broken(_file):
        raise RuntimeError("inspecting broke")

    monkeypatch.setattr(fetch_audio, "inspect", broken)
    assert drain(app) == 1
    [(state, attempts, leased_until)] = jobs(app)
    assert (state.value, attempts, leased_until) == ("pending", 1, None)  # due again, not left leased
    [leg] = client.get(LOOKUP + "ATVId_raises/legs").json["items"]
    assert (leg["audio"]["status"], leg["audio"]["last_error"]) == (
        "pending",
        "RuntimeError: inspecting broke",
    )

    time.sleep(1)  # AUDIO_FETCH_GIVE_UP passes
    assert drain(app) == 1
    assert [(state.value, attempts) for state, attempts, _ in jobs(app)] == [("failed", 2)]
    body = client.get(LOOKUP + "ATVId_raises").json
    assert (body["status"], body["failure_reason"]) == ("failed", "recording_unavailable")


def test_a_delivery_that_raises_counts_an_attempt_and_is_retried_then_given_up(make_app, media, monkeypatch):
    app = make_app(
        WEBHOOK_URL="http://127.0.0.1:9/hooks", WEBHOOK_SECRET=WEBHOOK_SECRET, WEBHOOK_RETRY_SCHEDULE=[0, 0]
    )
    client = app.test_client()
    recorded(client, "ATVId_hooked", "https://voice.africastalking.com/recording/hooked.mp3")

    def broken(*_args, **_kwargs):
        raise RuntimeError("the client broke")

    monkeypatch.setattr(deliver_webhook.egress, "make_client", broken)
    with app.app_context():
        worker = Worker(app, kinds=[deliver_webhook.KIND])
        ran = [worker.drain() for _ in range(3)]
        query = sa.select(Job.state, Job.attempts, Job.last_error).where(
            Job.kind == deliver_webhook.KIND.name
        )
        rows = db.session.execute(query).all()
        db.session.close()

    assert ran == [1, 1, 0]
    assert [(state.value, attempts, error) for state, attempts, error in rows] == [
        ("failed", 2, "RuntimeError: the client broke")
    ]


def test_worker_check_says_whether_a_worker_beats(make_app):
    app = make_app(TALLY_CONCURRENCY=1, WORK_POLL_SECONDS=0.01, WORK_LEASE_SECONDS=3)
    runner = app.test_cli_runner()
    check = ["recordings", "worker", "--check"]
    assert runner.invoke(args=check).exit_code == 1  # no worker

    worker = Worker(app, kinds=[tally_kind.KIND])
    seen = []

    def beating() -> bool:
        seen.append(runner.invoke(args=check))
        return seen[-1].exit_code == 0

    assert run_until(worker, beating) == 0
    assert seen[-1].exit_code == 0 and f"{worker.name} " in seen[-1].output and "alive" in seen[-1].output
    assert worker.name not in runner.invoke(args=check).output  # stopped, it removed its row

    with app.app_context():
        liveness.beat("elsewhere:1:silent", utcnow(), 2)
        db.session.execute(sa.update(WorkerProcess).values(beat_at=utcnow() - timedelta(minutes=1)))
        db.session.commit()
    silent = runner.invoke(args=check)
    assert silent.exit_code == 1 and "elsewhere:1:silent" in silent.output and "silent" in silent.output
