"""A recording as clients see it: one body whichever way they look, and the cache's bound on change."""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from recordings_service import create_app
from recordings_service.extensions import db
from recordings_service.persistence.models import Recording
from recordings_service.recordings.lifecycle import replay
from testkit.config import config_for
from testkit.servers import gunicorn, lookup, post_callback
from tests.support import drain, fixture_call, recorded_call

RECORDED = fixture_call("recorded-call")
LOOKUP = "/api/v1/voice/recordings/"


def test_every_way_a_client_sees_a_recording_gives_the_same_body(make_app, media):
    app = make_app(PUBLIC_BASE_URL="https://recordings.example")
    client, runner = app.test_client(), app.test_cli_runner()
    registered = client.post("/api/v1/voice/recordings", json={"recording_id": "conf_1"})
    first = client.get(LOOKUP + "conf_1")
    with ThreadPoolExecutor(1) as pool:
        woken = pool.submit(
            app.test_client().get,
            LOOKUP + "conf_1",
            headers={"If-None-Match": first.headers["ETag"], "Prefer": "wait=10"},
        )
        time.sleep(0.3)
        client.post("/api/v1/voice/recordings", json={"recording_id": "conf_1", "session_ids": ["ATVId_a"]})
        client.post("/api/v1/voice/callback", data={**recorded_call(media)[-1], "sessionId": "ATVId_a"})
        woken = woken.result(timeout=10)
    processing = client.get(LOOKUP + "conf_1")
    # The watcher woke the held lookup with the very body (and tag) the lookup now gives.
    assert woken.json["status"] == "processing" and woken.data == processing.data
    assert woken.headers["ETag"] == processing.headers["ETag"]
    drain(app)  # the worker stores the audio
    now = client.get(LOOKUP + "conf_1")
    listed = client.get("/api/v1/voice/recordings").json["items"]
    shown = json.loads(runner.invoke(args=["recordings", "show", "conf_1"]).output)

    assert registered.json == first.json
    assert now.json["status"] == "completed"
    assert now.json["audio_url"] == "https://recordings.example/api/v1/voice/recordings/conf_1/audio"
    again = client.get(
        LOOKUP + "conf_1", headers={"If-None-Match": woken.headers["ETag"], "Prefer": "wait=5"}
    )
    assert again.status_code == 200 and again.data == now.data
    assert again.headers["ETag"] == now.headers["ETag"]
    assert listed == [now.json] and shown == now.json


@pytest.mark.slow
def test_a_replayed_completed_recording_reaches_every_worker_within_the_cache_bound(database, app, media):
    bound = create_app(config_for(database)).config["COMPLETED_CACHE_SECONDS"]
    recording_id = RECORDED[0]["sessionId"]
    with gunicorn(database, workers=2) as base:
        for fields in recorded_call(media):
            assert post_callback(base, fields) == 200
        drain(app)  # the worker stores its audio: completed
        truth = lookup(base, recording_id)
        assert truth["status"] == "completed"
        # A bad deploy, say, rewrites the completed recording; every worker then caches what it reads.
        app = create_app(config_for(database))
        with app.app_context():
            db.session.execute(sa.update(Recording).values(recording_url="https://example.com/wrong"))
            db.session.commit()
        time.sleep(bound + 0.5)  # what the workers cached before the rewrite has expired
        assert {lookup(base, recording_id)["recording_url"] for _ in range(40)} == {
            "https://example.com/wrong"
        }

        with app.app_context():
            assert replay().changed == [recording_id]
            db.engine.dispose()
        replayed = time.monotonic()
        answers = []  # (seconds after the replay, body)
        while time.monotonic() - replayed < bound + 2:
            bodies = [lookup(base, recording_id) for _ in range(10)]
            answers += [(time.monotonic() - replayed, body) for body in bodies]
            time.sleep(0.1)

    stale = [after for after, body in answers if body["recording_url"] != truth["recording_url"]]
    assert stale, "the workers served the replayed recording at once: no cache was in the way"
    assert max(stale) < bound + 0.5, f"a worker served the old body {max(stale):.1f} s after the replay"
    print(f"old body served until {max(stale):.2f} s after the replay (bound {bound} s)")
