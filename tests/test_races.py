"""A registration racing the first callback of its session, through gunicorn's worker processes: the
session ends up on the registered recording every time, whoever wins (no orphan, nothing stuck, no 409)."""

import json
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from recordings_service.devtools.simulation import call_sequence, new_session_id
from recordings_service.extensions import db
from recordings_service.persistence.models import Recording
from testkit.servers import gunicorn, http, lookup, post_callback

pytestmark = pytest.mark.slow

RACES = 200
JSON = {"Content-Type": "application/json"}


def register(base: str, body: dict) -> int:
    return http("POST", base + "/api/v1/voice/recordings", json.dumps(body).encode(), JSON)[0]


def test_registrations_racing_first_callbacks_leave_no_orphan_and_nothing_stuck(app, database, capsys):
    rng = random.Random(20261201)
    registrations, callbacks, expected = [], [], {}
    with gunicorn(database, workers=2) as base, ThreadPoolExecutor(2) as pool:
        for n in range(RACES):
            recording_id, session_id = f"conf_race_{n:03d}", new_session_id(rng)
            first, *rest = call_sequence(session_id, "recorded", rng)
            # Half registered first and given their session in a second request, half in one request.
            if n % 2:
                assert register(base, {"recording_id": recording_id}) == 201
            start = threading.Barrier(2)

            def registration(body, start=start):
                start.wait()
                return register(base, body)

            def first_callback(fields=first, start=start):
                start.wait()
                return post_callback(base, fields)

            named = pool.submit(registration, {"recording_id": recording_id, "session_ids": [session_id]})
            heard = pool.submit(first_callback)
            registrations.append(named.result())
            callbacks.append(heard.result())
            callbacks += [post_callback(base, fields) for fields in rest]
            expected[recording_id] = ("processing", rest[-1]["recordingUrl"])
        outcomes = {rid: lookup(base, rid) for rid in expected}

    with app.app_context():
        ids = db.session.execute(sa.select(Recording.recording_id)).scalars().all()
    orphans = [rid for rid in ids if rid not in expected]
    stuck = [rid for rid, body in outcomes.items() if body["status"] == "recording"]
    with capsys.disabled():
        print(
            f"\n{RACES} races ({database.split(':')[0]}): registrations {sorted(set(registrations))},"
            f" {len(orphans)} orphans, {len(stuck)} stuck"
        )
    assert registrations.count(409) == 0
    assert set(registrations) <= {200, 201}
    assert callbacks == [200] * len(callbacks)
    assert orphans == [] and stuck == []
    assert {rid: (body["status"], body["recording_url"]) for rid, body in outcomes.items()} == expected
