"""`make bench`, the worker's part: recordings stored per second (PostgreSQL, 2 worker processes) and a
worker's peak memory while it fetches a 50 MB recording.

Stored per second: COUNT recorded calls' final callbacks are taken first (each writes its fetch job),
then two `flask recordings worker` processes, as operators run them, fetch every recording from a
loopback media server (the 29 KB MP3 simulate-call serves), verify and store it; the rate is counted
between the first and the last job finished (the processes' start-up left out) and end to end.

Peak memory: one worker fetches one recording, then a 50 MB one (the same MP3 repeated: valid audio);
its peak resident set (VmHWM) after each says what fetching a large recording costs: the download is
streamed to a temporary file and to the store, never held whole.

    python bench/work.py         # prints the figures as JSON; bench/run.py adds them to its table
"""

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from recordings_service import create_app  # noqa: E402
from recordings_service.extensions import db  # noqa: E402
from recordings_service.persistence.models import Job, JobKind, JobState  # noqa: E402
from testkit.config import config_for  # noqa: E402
from testkit.media import RECORDED_CALL, MediaServer  # noqa: E402
from testkit.servers import worker  # noqa: E402

POSTGRES = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
COUNT = int(os.environ.get("BENCH_WORK_COUNT", "400"))
LARGE_BYTES = 50 * 1000 * 1000
FINAL = json.loads((ROOT / "tests/fixtures/africastalking/recorded-call.jsonl").read_text().splitlines()[-1])


def scratch_database(name: str) -> str:
    admin = sa.create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    url = sa.engine.make_url(POSTGRES).set(database=name).render_as_string(hide_password=False)
    app = create_app(config_for(url))
    with app.app_context():
        from flask_migrate import upgrade

        upgrade(directory=str(ROOT / "migrations"))
        db.engine.dispose()
    return url


def drop(name: str) -> None:
    admin = sa.create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def take_recorded_calls(
    app, media: MediaServer, prefix: str, count: int, path=lambda n: None, fields: dict | None = None
) -> None:
    client = app.test_client()
    for n in range(count):
        session_id = f"ATVId_{prefix}_{n:05d}"
        url = path(n) or media.serve_file(f"/{prefix}/{session_id}.mp3")
        form = {**FINAL, "sessionId": session_id, "recordingUrl": url, **(fields or {})}
        response = client.post("/api/v1/voice/callback", data=form)
        assert response.status_code == 200, response.text


def fetch_jobs(app) -> list:
    with app.app_context():
        rows = db.session.execute(
            sa.select(Job.state, Job.created_at, Job.finished_at).where(Job.kind == JobKind.FETCH_AUDIO)
        ).all()
        db.session.close()
    return rows


def wait_until_done(app, seconds: float = 600) -> list:
    deadline = time.monotonic() + seconds
    while True:
        rows = fetch_jobs(app)
        if rows and all(state is not JobState.PENDING for state, _, _ in rows):
            return rows
        if time.monotonic() > deadline:
            raise TimeoutError("the workers did not finish")
        time.sleep(0.2)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def stored_per_second(store: str) -> dict:
    name = "recordings_bench_work"
    url = scratch_database(name)
    settings = {"AUDIO_STORAGE_URL": f"file://{store}/rate", "WORK_POLL_SECONDS": "0.2"}
    try:
        app = create_app(config_for(url))
        with MediaServer() as media:
            take_recorded_calls(app, media, "rate", COUNT)
            started = time.monotonic()
            with worker(url, **settings), worker(url, **settings):
                rows = wait_until_done(app)
                elapsed = time.monotonic() - started
        with app.app_context():
            db.engine.dispose()
    finally:
        drop(name)
    done = [finished for state, _, finished in rows if state is JobState.DONE]
    steady = (len(done) - 1) / (max(done) - min(done)).total_seconds() if len(done) > 1 else None
    return {
        "recordings": COUNT,
        "stored": len(done),
        "workers": 2,
        "stored_per_second": round(steady, 1) if steady else None,
        "end_to_end_seconds": round(elapsed, 2),
    }


def peak_memory(store: str) -> dict:
    name = "recordings_bench_memory"
    url = scratch_database(name)
    small = RECORDED_CALL.read_bytes()
    copies = LARGE_BYTES // len(small) + 1
    large = small * copies
    # As long a call as the audio, or the worker refuses the recording as longer than its call.
    long_call = {"durationInSeconds": str(copies * int(FINAL["durationInSeconds"]))}
    settings = {"AUDIO_STORAGE_URL": f"file://{store}/memory", "WORK_POLL_SECONDS": "0.2"}
    try:
        app = create_app(config_for(url))
        with MediaServer() as media, worker(url, **settings) as process:
            take_recorded_calls(app, media, "small", 1)
            wait_until_done(app)
            after_small = peak_rss_mb(process.pid)
            large_url = media.serve("/large.mp3", large)
            take_recorded_calls(app, media, "large", 1, path=lambda n: large_url, fields=long_call)
            rows = wait_until_done(app)
            after_large = peak_rss_mb(process.pid)
        with app.app_context():
            db.engine.dispose()
    finally:
        drop(name)
    assert all(state is JobState.DONE for state, _, _ in rows), rows
    return {
        "large_recording_mb": round(len(large) / 1e6, 1),
        "worker_peak_rss_mb_small": round(after_small, 1),
        "worker_peak_rss_mb_large": round(after_large, 1),
    }


def measure() -> dict:
    with tempfile.TemporaryDirectory() as store:
        return {"stored": stored_per_second(store), "memory": peak_memory(store)}


if __name__ == "__main__":
    print(json.dumps(measure(), indent=2))
