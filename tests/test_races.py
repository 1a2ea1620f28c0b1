"""Races with Africa's Talking, through gunicorn's worker processes: a registration racing the first
callback of its session, and a call start whose calls' first callbacks come before AT's answer. The
session ends up on the named recording every time, whoever wins (no orphan, nothing stuck, no 409)."""

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
from tests.support import drain

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


STARTS = 200
AT_NUMBER = "+254203893400"
FALLBACK = "+254700000999"


def test_calls_whose_first_callback_beats_ats_answer_dial_their_own_numbers_and_complete(
    app, database, media, fake_at, tmp_path, capsys
):
    log = tmp_path / "gunicorn.log"
    settings = {
        "AT_USERNAME": "recordings",
        "AT_API_KEY": fake_at.api_key,
        "AT_VOICE_API_URL": fake_at.url,
        "AT_VOICE_NUMBER": AT_NUMBER,
        "VOICE_DIAL_NUMBERS": FALLBACK,
        "LOG_FORMAT": "json",
    }
    starts = []
    for n in range(STARTS):
        # Every fourth calls two people; every third dials the service's own numbers.
        to = [f"+2547110{n:05d}"] + ([f"+2547330{n:05d}"] if n % 4 == 0 else [])
        body = {"recording_id": f"conf_start_{n:03d}", "to": to}
        if n % 3:
            body["dial"] = [f"+2547220{n:05d}"]
        starts.append(body)

    with gunicorn(database, workers=2, log_to=log, **settings) as base, ThreadPoolExecutor(8) as pool:
        fake_at.service = base  # each placed call's first callback goes here before AT answers the start
        answers = list(
            pool.map(
                lambda body: http("POST", base + "/api/v1/voice/calls", json.dumps(body).encode(), JSON),
                starts,
            )
        )
        ended = list(
            pool.map(
                lambda call: fake_at.finish(call, media.serve_file(f"/recordings/{call['sessionId']}.mp3")),
                list(fake_at.placed),
            )
        )
        drain(app)
        outcomes = {body["recording_id"]: lookup(base, body["recording_id"]) for body in starts}

    statuses = [status for status, _, _ in answers]
    legs = {json.loads(text)["recording_id"]: json.loads(text)["legs"] for _, _, text in answers}
    with app.app_context():
        ids = db.session.execute(sa.select(Recording.recording_id)).scalars().all()
    orphans = [rid for rid in ids if not rid.startswith("conf_start_")]
    own_dial = {
        call["sessionId"]: (start.get("dial") or [FALLBACK])
        for start in starts
        for call in fake_at.placed
        if call["number"] in start["to"]
    }
    wrong_dial = [
        sid
        for sid, (status, xml) in fake_at.answers.items()
        if f'phoneNumbers="{",".join(own_dial[sid])}"' not in xml
    ]
    completed = [rid for rid, body in outcomes.items() if body["status"] == "completed"]
    with capsys.disabled():
        print(
            f"\n{STARTS} starts ({database.split(':')[0]}): {statuses.count(201)} x 201, {statuses.count(409)} x 409,"
            f" {len(orphans)} orphans, {len(fake_at.answers) - len(wrong_dial)}/{len(fake_at.answers)} live"
            f" callbacks dialled their own numbers, {len(completed)} completed"
        )
    assert statuses == [201] * STARTS
    assert fake_at.calls == STARTS and len(fake_at.placed) == len(fake_at.answers) == STARTS + STARTS // 4
    assert all(leg["status"] == "Queued" and leg["session_id"] for items in legs.values() for leg in items)
    assert orphans == [] and wrong_dial == []
    assert ended == [(200, "")] * len(ended)
    assert len(completed) == STARTS
    assert fake_at.api_key not in log.read_text()
