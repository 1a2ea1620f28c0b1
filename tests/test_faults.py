"""Things breaking under load (`make faults`): nothing acknowledged is lost, and the service recovers.

The PostgreSQL outage tests stop and start the local cluster serving TEST_DATABASE_URL with
pg_ctlcluster, and always start it again, even when a test fails.
"""

import base64
import collections
import json
import multiprocessing
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from config import Config, database_url
from recordings_service import create_app
from recordings_service.devtools.simulation import call_sequence, new_session_id
from recordings_service.extensions import db
from recordings_service.persistence.models import Job, JobState, Recording, StoredCallback, WebhookEvent
from recordings_service.recordings.lifecycle import replay
from testkit.config import config_for
from testkit.nginx import nginx
from testkit.receiver import Receiver
from testkit.servers import ROOT, gunicorn, http, lookup, post_callback, worker, worker_pids
from testkit.storm import storm
from tests.support import empty_tables, fixture_call

DEFAULTS = Config.settings({})  # the settings a server started with none of them set has

pytestmark = [pytest.mark.faults, pytest.mark.slow]

SEED_500 = {"detail": "Failed to query recording status"}


def post(base: str, fields: dict) -> int | None:
    """POST one callback; its status, or None when no answer came (connection refused or cut)."""
    try:
        return post_callback(base, fields)
    except OSError:
        return None


def settle(base: str, deliveries: list[dict], answers: list[int | None]) -> int:
    """Post again every delivery that got no 2xx, as AT would have to; return how many were retried."""
    retried = [
        fields for fields, status in zip(deliveries, answers, strict=True) if status is None or status >= 300
    ]
    for fields in retried:
        assert post(base, fields) == 200
    return len(retried)


def assert_outcomes(base: str, expected: dict[str, tuple]) -> None:
    for recording_id, outcome in expected.items():
        got = lookup(base, recording_id)
        assert (got["status"], got["recording_url"], got["failure_reason"]) == outcome, recording_id


def assert_every_callback_stored_once_and_applied(url: str, deliveries: list[dict]) -> None:
    app = create_app(config_for(url))
    with app.app_context():
        rows = db.session.execute(sa.select(StoredCallback.fields, StoredCallback.duplicate)).all()
        originals = sorted(json.dumps(fields, sort_keys=True) for fields, duplicate in rows if not duplicate)
        assert originals == sorted({json.dumps(fields, sort_keys=True) for fields in deliveries})
    with app.app_context():
        # What is stored is what is applied: rebuilding from the stored callbacks changes nothing.
        assert replay().changed == []
        db.engine.dispose()


# --- PostgreSQL stops in the middle of a storm ------------------------------------------------


def _server() -> tuple[str, int]:
    """The host and port of the PostgreSQL server the tests run on (TEST_DATABASE_URL's)."""
    url = make_url(database_url(os.environ["TEST_DATABASE_URL"]))
    return url.host or "127.0.0.1", url.port or 5432


def _cluster() -> list[str]:
    """The version and name of the local cluster serving TEST_DATABASE_URL's port (pg_lsclusters)."""
    port = _server()[1]
    listing = subprocess.run(["pg_lsclusters", "--no-header"], check=True, capture_output=True, text=True)
    for line in listing.stdout.splitlines():
        version, name, cluster_port, *_ = line.split()
        if int(cluster_port) == port:
            return [version, name]
    raise AssertionError(f"no local PostgreSQL cluster on port {port}: {listing.stdout}")


def _pg_ctl(action: str) -> None:
    subprocess.run(
        [
            "pg_ctlcluster",
            "--skip-systemctl-redirect",
            *_cluster(),
            action,
            *(["-m", "fast"] if action == "stop" else []),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


def _pg_ready() -> bool:
    host, port = _server()
    return subprocess.run(["pg_isready", "-q", "-h", host, "-p", str(port)], timeout=30).returncode == 0


@pytest.fixture
def restartable_postgresql(postgresql_url):
    """A PostgreSQL database whose server the test may stop; started again afterwards, whatever happens."""
    try:
        yield postgresql_url
    finally:
        if not _pg_ready():
            _pg_ctl("start")
        deadline = time.monotonic() + 60
        while not _pg_ready() and time.monotonic() < deadline:
            time.sleep(0.5)


def test_postgresql_stopping_mid_storm_loses_nothing_acknowledged(restartable_postgresql):
    url = restartable_postgresql
    deliveries, expected = storm(60, random.Random(11), twice_one_in=4)
    half = len(deliveries) // 2
    with gunicorn(url, workers=2) as base:
        with ThreadPoolExecutor(8) as pool:
            before = list(pool.map(lambda fields: post(base, fields), deliveries[:half]))
            _pg_ctl("stop")
            during = list(pool.map(lambda fields: post(base, fields), deliveries[half:]))
            lookup_during = http("GET", base + f"/api/v1/voice/recordings/{next(iter(expected))}")
            _pg_ctl("start")
        assert before == [200] * half
        # Nothing is acknowledged while the database is down: each answer is a 5xx.
        assert during and all(status is not None and status >= 500 for status in during), during
        assert (lookup_during[0], json.loads(lookup_during[2])) == (500, SEED_500)
        # The same server, not restarted, takes the callbacks again once PostgreSQL is back.
        deadline = time.monotonic() + 30
        while http("GET", base + "/readyz")[0] != 200:
            assert time.monotonic() < deadline, "the service did not recover"
            time.sleep(0.5)
        assert settle(base, deliveries, before + during) == len(during)
        assert_outcomes(base, expected)
    assert_every_callback_stored_once_and_applied(url, deliveries)


# --- PostgreSQL stops while the worker fetches and tells ------------------------------------------


def recorded_calls(count: int, media, rng: random.Random) -> tuple[list[dict], list[str]]:
    """The callbacks of ``count`` recorded AT calls, their audio served by ``media``, shuffled with one in
    four posted twice; and their session ids (their recordings' ids)."""
    sessions = [new_session_id(rng) for _ in range(count)]
    posts = []
    for session_id in sessions:
        url = media.serve_file(f"/recordings/{session_id}.mp3")
        posts += call_sequence(session_id, "recorded", rng, recording_url=url)
    deliveries = posts + rng.sample(posts, len(posts) // 4)
    rng.shuffle(deliveries)
    return deliveries, sessions


def all_settled(url: str) -> tuple[list[str], int, set[str]]:
    """The recordings' statuses, how many jobs are not done, and the events' ids."""
    app = create_app(config_for(url))
    with app.app_context():
        statuses = db.session.execute(sa.select(Recording.status)).scalars().all()
        unfinished = db.session.execute(
            sa.select(sa.func.count()).select_from(Job).where(Job.state != JobState.DONE)
        ).scalar_one()
        events = set(db.session.execute(sa.select(WebhookEvent.event_id)).scalars())
        db.session.close()
        db.engine.dispose()
    return [status.value for status in statuses], unfinished, events


def wait_until_settled(url: str, count: int, running, seconds: float = 120) -> set[str]:
    """Wait until ``count`` recordings are completed and every job is done; the events' ids."""
    deadline = time.monotonic() + seconds
    while True:
        assert running.poll() is None, "the worker exited"
        statuses, unfinished, events = all_settled(url)
        if statuses == ["completed"] * count and unfinished == 0:
            return events
        assert time.monotonic() < deadline, (collections.Counter(statuses), unfinished)
        time.sleep(0.5)


WORKING = {"WORK_POLL_SECONDS": "0.2", "WORK_LEASE_SECONDS": "3"}


@pytest.mark.parametrize("seconds", [5, 20])
def test_postgresql_stopping_under_a_storm_leaves_the_worker_to_finish_every_recording(
    restartable_postgresql, media, seconds
):
    url = restartable_postgresql
    deliveries, sessions = recorded_calls(100, media, random.Random(seconds))
    half = len(deliveries) // 2
    with Receiver() as hooks:
        settings = {
            "WEBHOOK_URL": hooks.url,
            "WEBHOOK_SECRET": "whsec_" + base64.b64encode(b"f" * 32).decode(),
        }
        with gunicorn(url, workers=2, **settings) as base, worker(url, **WORKING, **settings) as running:
            with ThreadPoolExecutor(8) as pool:
                before = list(pool.map(lambda fields: post(base, fields), deliveries[:half]))
                _pg_ctl("stop")  # the worker is fetching, storing and telling
                during = list(pool.map(lambda fields: post(base, fields), deliveries[half:]))
                time.sleep(seconds)
                _pg_ctl("start")
            deadline = time.monotonic() + 30
            while http("GET", base + "/readyz")[0] != 200:
                assert time.monotonic() < deadline, "the service did not recover"
                time.sleep(0.5)
            settle(base, deliveries, before + during)
            events = wait_until_settled(url, len(sessions), running)
            # Told at least once of each event (twice when an answer came as the database went away).
            deadline = time.monotonic() + 30
            while {request.headers["webhook-id"] for request in hooks.received} != events:
                assert time.monotonic() < deadline, "some events were never delivered"
                time.sleep(0.2)
            assert running.poll() is None  # the same worker, never restarted
    assert len(events) == 2 * len(sessions)  # processing, then completed


def test_a_worker_started_while_postgresql_is_down_works_once_it_is_up(restartable_postgresql, media):
    url = restartable_postgresql
    deliveries, sessions = recorded_calls(10, media, random.Random(31))
    app = create_app(config_for(url))
    client = app.test_client()
    for fields in deliveries:
        assert client.post("/api/v1/voice/callback", data=fields).status_code == 200
    with app.app_context():
        db.engine.dispose()
    _pg_ctl("stop")
    with worker(url, **WORKING) as running:
        time.sleep(5)  # every loop fails, and backs off
        assert running.poll() is None
        _pg_ctl("start")
        wait_until_settled(url, len(sessions), running)
        assert running.poll() is None


# --- A worker is killed in the middle of a storm ----------------------------------------------


def test_a_worker_killed_mid_storm_leaves_no_half_applied_callback(app, database):
    deliveries, expected = storm(80, random.Random(12), twice_one_in=4)
    pid_file = Path(tempfile.mkdtemp()) / "gunicorn.pid"
    with gunicorn(database, workers=2, GUNICORN_CMD_ARGS=f"--pid {pid_file}") as base:
        answered, answered_when_killed, victims = [], [], []

        def post_counted(fields):
            status = post(base, fields)
            answered.append(status)
            return status

        def kill_a_worker():
            answered_when_killed.append(len(answered))
            victims.append(worker_pids(pid_file)[0])
            os.kill(victims[0], signal.SIGKILL)

        killer = threading.Timer(0.5, kill_a_worker)
        killer.start()
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(post_counted, deliveries))
        killer.join()
        # The kill came in the middle of the storm, and the master replaced the worker.
        assert 0 < answered_when_killed[0] < len(deliveries)
        workers = worker_pids(pid_file)
        assert victims[0] not in workers and len(workers) == 2
        # A callback in the killed worker's hands got no answer; AT's side would post it again.
        settle(base, deliveries, answers)
        assert_outcomes(base, expected)
    assert_every_callback_stored_once_and_applied(database, deliveries)


# --- Abusive requests, while other clients are served -----------------------------------------


def _raw_request(port: int, payload: bytes, timeout: float = 30) -> bytes:
    """Send ``payload`` on a new connection; return what came back (b"" if the server cut it off)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(payload)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks)
        except (ConnectionResetError, BrokenPipeError):
            return b""


def _status(answer: bytes) -> int | None:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None


def _form_request(body: bytes) -> bytes:
    head = f"POST /api/v1/voice/callback HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    return head.encode() + body


def _slow_client(port: int, seconds: int) -> bytes:
    """Send a callback a byte a second for ``seconds`` seconds, then stop; what came back."""
    payload = _form_request(b"isActive=1&sessionId=ATVId_slow" + b"x" * 100)
    with socket.create_connection(("127.0.0.1", port), timeout=seconds + 30) as sock:
        try:
            for byte in payload[:seconds]:
                sock.sendall(bytes([byte]))
                time.sleep(1)
            sock.shutdown(socket.SHUT_WR)
            return sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return b""


def test_abusive_requests_get_4xx_or_are_cut_off_while_others_are_served(database, runner):
    runner.invoke(args=["recordings", "seed-demo", "--count", "10"])
    with gunicorn(database, workers=2) as base:
        port = int(base.rsplit(":", 1)[1])
        abuse = {
            "10 MB body": _form_request(b"isActive=1&sessionId=ATVId_big&pad=" + b"x" * 10_000_000),
            "10,000 fields": _form_request(
                b"&".join([b"isActive=1&sessionId=ATVId_many"] + [b"%x=" % n for n in range(10_000)])
            ),
            "invalid UTF-8": _form_request(b"isActive=1&sessionId=ATVId_bad&note=\xff\xfe\xfd"),
        }
        with ThreadPoolExecutor(8) as pool:
            slow = pool.submit(_slow_client, port, 8)
            answers = {name: pool.submit(_raw_request, port, payload) for name, payload in abuse.items()}
            # Meanwhile, ordinary clients are answered as usual.
            served = [
                http("GET", base + f"/api/v1/voice/recordings/conf_{n % 10:010d}")[0] for n in range(40)
            ]
            results = {name: future.result() for name, future in answers.items()}
            slow_answer = slow.result()

            # None of them changed anything.
            missing = [
                http("GET", base + f"/api/v1/voice/recordings/ATVId_{name}")[0]
                for name in ("big", "many", "bad", "slow")
            ]

    assert served == [200] * 40
    for name, answer in [*results.items(), ("slow client", slow_answer)]:
        if answer:  # cut off is fine; an answer must be a 4xx with the JSON error body
            assert 400 <= (_status(answer) or 0) < 500, (name, answer[:200])
            assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["detail"], name
    assert missing == [404] * 4


# --- A slow webhook receiver -------------------------------------------------------------------


def _p99(seconds: list[float]) -> float:
    return sorted(seconds)[int(len(seconds) * 0.99) - 1]


def _timed_storm(base: str, deliveries: list[dict]) -> list[float]:
    def timed(fields):
        started = time.monotonic()
        assert post(base, fields) == 200
        return time.monotonic() - started

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(timed, deliveries))


def test_a_slow_webhook_receiver_does_not_slow_callbacks(app, database):
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    p99 = {}
    for seed, (name, delay) in enumerate((("fast", 0), ("slow", 5))):
        with app.app_context():
            empty_tables()
        with Receiver(delay=delay) as hooks:
            settings = {"WEBHOOK_URL": hooks.url, "WEBHOOK_SECRET": secret}
            deliveries, _ = storm(500, random.Random(seed), twice_one_in=4)  # 500 events to tell
            with gunicorn(database, workers=2, **settings) as base, worker(database, **settings):
                p99[name] = _p99(_timed_storm(base, deliveries))
                received = len(hooks.received)
        print(f"callbacks p99 with a {name} receiver: {p99[name] * 1000:.0f} ms ({received} events received)")
        with app.app_context():
            events = db.session.execute(sa.select(sa.func.count()).select_from(WebhookEvent)).scalar_one()
        assert events == 500
        if name == "slow":
            # It was really slow: the worker's 4 delivery threads had got through a handful of the 500.
            assert 0 < received < 50
    assert p99["slow"] <= p99["fast"] * 1.5 + 0.05


# --- Clients holding twice what the service gives, and slow senders as many ---------------------


def _timed(kind: str, send, at: float) -> tuple[str, int | None, float]:
    """Wait until ``at`` (time.monotonic()), then send; what was answered, and how long it took."""
    time.sleep(max(0.0, at - time.monotonic()))
    started = time.monotonic()
    try:
        status = send()
    except OSError:
        status = None
    return kind, status, time.monotonic() - started


def _figures(seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p50, p99 = ordered[len(ordered) // 2], _p99(seconds)
    return f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms"


@contextmanager
def _holding(base: str, path: str, etag: str, holders: int, slow: int):
    """testkit/hold.py's clients on ``base`` for the length of the block; yield what they saw (filled in
    when the block ends)."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    command = [sys.executable, "-m", "testkit.hold", host, port, path, etag, str(holders), str(slow)]
    process = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    seen: dict = {}
    try:
        ready = process.stdout.readline()  # printed once every client is on its way
        assert ready == "ready\n", ready
        yield seen
        process.stdin.close()
        seen.update(json.loads(process.stdout.readline()))
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdin.close()
        process.stdout.close()


@pytest.mark.parametrize("front", ["direct", "nginx"])
def test_callbacks_and_lookups_are_answered_within_a_second_while_clients_hold_twice_the_capacity(
    app, database, runner, front
):
    """Callbacks and lookups are answered within 1 s while clients hold twice the waits the service may.

    The service runs with `make run`'s defaults (gunicorn.conf.py's workers, one a core, 4,096
    connections a worker, WAIT_MAX_HELD 500), directly and through deploy/nginx.conf. Clients hold
    twice as many waits as the service may hold, and as many more send a byte a second. Meanwhile 100
    callbacks and 100 lookups must each be answered in under 1 s, and every callback stored.

    The capacity is the held-wait budget of all workers (workers x WAIT_MAX_HELD). gevent workers have
    no threads to count, and a held wait costs a greenlet and a connection, of which a worker lets
    waits take WAIT_MAX_HELD. Beyond that a lookup is answered at once, with a Retry-After the holders
    honour before asking again. The slow senders are cut off by gunicorn's keepalive (5 s) or nginx's
    client_header_timeout (10 s) and connect again at once.
    """
    runner.invoke(args=["recordings", "seed-demo", "--count", "1000"])  # make run's DEMO_ROWS
    held = fixture_call("recorded-call")[0]  # a live call: its recording may change, so waits are held
    client = app.test_client()
    client.post(
        "/api/v1/voice/recordings", json={"recording_id": "conf_held", "session_ids": [held["sessionId"]]}
    )
    assert client.post("/api/v1/voice/callback", data=held).status_code == 200
    workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))  # as gunicorn.conf.py
    holders = 2 * workers * DEFAULTS["WAIT_MAX_HELD"]
    deliveries, _ = storm(40, random.Random(21), twice_one_in=10**6)  # 100 callbacks, none twice
    assert len(deliveries) == 100
    settings = {"TRUSTED_PROXY_COUNT": "1"} if front == "nginx" else {}
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # for gunicorn and nginx, started from here
    try:
        with (
            gunicorn(database, workers=None, **settings) as upstream,
            nginx(upstream) if front == "nginx" else nullcontext() as proxy,
        ):
            base = proxy.base if proxy else upstream
            path = "/api/v1/voice/recordings/conf_held"
            etag = http("GET", base + path)[1]["ETag"]
            with _holding(base, path, etag, holders, holders) as seen:
                work = [
                    ("callback", lambda fields=fields: post_callback(base, fields)) for fields in deliveries
                ]
                work += [
                    ("lookup", lambda n=n: http("GET", base + f"/api/v1/voice/recordings/conf_{n:010d}")[0])
                    for n in range(100)
                ]
                random.Random(22).shuffle(work)
                # Spread over the holders' first cycle and past it: their first waits end together
                # WAIT_MAX_SECONDS after they began, and all ask again at once, as those answered at
                # once start to come back (their Retry-After: WAIT_FULL_RETRY_AFTER_SECONDS or up to
                # twice that); the slow senders are cut off and connect again together, every few
                # seconds. The waves are when a request is most likely to be kept waiting. From 5 s
                # after the clients set out: "ready" is printed as they start connecting, and while
                # 4,000 arrive in the same second they are not yet holding anything, which is not the
                # load this test is about.
                start, spread = time.monotonic() + 5, DEFAULTS["WAIT_MAX_SECONDS"] + 6
                at = [start + spread * n / len(work) for n in range(len(work))]
                with ThreadPoolExecutor(8) as pool:
                    answers = list(pool.map(lambda item, at: _timed(*item, at), work, at))
                still_held = http("GET", base + path, headers={"If-None-Match": etag})[0]
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    seconds = {kind: [s for k, _, s in answers if k == kind] for kind in ("callback", "lookup")}
    print(
        f"\n{front}, {database.split(':')[0]}: {holders} holders and {holders} byte-a-second senders;"
        f" callbacks {_figures(seconds['callback'])}; lookups {_figures(seconds['lookup'])}; holders saw {seen}"
    )
    assert still_held == 304  # the held recording never changed: no wait was ended early by a change
    assert [status for kind, status, _ in answers if kind == "callback"] == [200] * 100
    assert [status for kind, status, _ in answers if kind == "lookup"] == [200] * 100
    assert max(seconds["callback"]) < 1 and max(seconds["lookup"]) < 1
    assert seen["waits_answered_at_once"] > 0  # there were more holders than the service would hold
    with app.app_context():
        stored = db.session.execute(
            sa.select(StoredCallback.fields).where(StoredCallback.session_id != held["sessionId"])
        ).scalars()
        assert sorted(json.dumps(f, sort_keys=True) for f in stored) == sorted(
            json.dumps(f, sort_keys=True) for f in deliveries
        )
