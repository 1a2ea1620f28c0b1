"""Many callbacks at once, through gunicorn's several worker processes: nothing lost, nothing regressed."""

import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from recordings_service.devtools.simulation import OUTCOMES, call_sequence, new_session_id
from recordings_service.domain.rules import Status, advance
from recordings_service.extensions import db
from recordings_service.persistence.models import StoredCallback
from recordings_service.recordings import lifecycle
from recordings_service.recordings.lifecycle import replay
from testkit.servers import gunicorn, http, lookup, post_callback, worker

pytestmark = pytest.mark.slow


def post_concurrently(base: str, deliveries: list[dict], threads: int = 8) -> list[int]:
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda fields: post_callback(base, fields), deliveries))


def register(base: str, recording_id: str, session_ids: list[str]) -> None:
    body = json.dumps({"recording_id": recording_id, "session_ids": session_ids}).encode()
    status, _, text = http(
        "POST", base + "/api/v1/voice/recordings", body, {"Content-Type": "application/json"}
    )
    assert status == 201, text


def test_a_storm_of_shuffled_duplicated_callbacks_loses_nothing(app, database, media):
    rng = random.Random(20240115)
    expected: dict[str, tuple] = {}  # recording id -> (status, recording_url, failure_reason)
    registrations: list[tuple[str, list[str]]] = []
    posts: list[dict] = []
    for n in range(120):
        outcome = list(OUTCOMES)[n % len(OUTCOMES)]
        session_id = new_session_id(rng)
        url = media.serve_file(f"/recordings/{session_id}.mp3") if outcome == "recorded" else None
        calls = call_sequence(session_id, outcome, rng, recording_url=url)
        # Half are registered first; the others are created by their first callback, named after the session.
        recording_id = f"conf_storm_{n:04d}" if n % 2 else session_id
        if n % 2:
            registrations.append((recording_id, [session_id]))
        status, reason = OUTCOMES[outcome]
        expected[recording_id] = (status.value, calls[-1].get("recordingUrl") or None, reason)
        posts += calls
    for n in range(12):  # conferences: one recorded leg and legs that were never answered
        legs = [new_session_id(rng) for _ in range(4)]
        recorded = call_sequence(
            legs[0], "recorded", rng, recording_url=media.serve_file(f"/recordings/{legs[0]}.mp3")
        )
        registrations.append((f"conf_conference_{n:02d}", legs))
        expected[f"conf_conference_{n:02d}"] = (Status.COMPLETED.value, recorded[-1]["recordingUrl"], None)
        posts += recorded + [fields for leg in legs[1:] for fields in call_sequence(leg, "unanswered", rng)]
    deliveries = posts + rng.sample(posts, len(posts) // 3)
    rng.shuffle(deliveries)

    # The web server and two workers, as operators run them: callbacks while recordings are fetched.
    with gunicorn(database, workers=4) as base, worker(database), worker(database):
        for recording_id, session_ids in registrations:
            register(base, recording_id, session_ids)
        statuses = post_concurrently(base, deliveries)
        outcomes = until_settled(base, expected)

    assert statuses == [200] * len(deliveries)
    # Each recording was fetched once, whichever worker took it.
    recorded_paths = [path for path in media.answers if path.startswith("/recordings/")]
    assert [media.fetches(path) for path in recorded_paths] == [1] * len(recorded_paths)
    assert {
        rid: (b["status"], b["recording_url"], b["failure_reason"]) for rid, b in outcomes.items()
    } == expected
    with app.app_context():
        stored = db.session.execute(sa.select(StoredCallback.duplicate)).scalars().all()
        assert len(stored) == len(deliveries)  # every callback sent is stored
        assert stored.count(False) == len(posts)  # and each distinct one applied once
    with app.app_context():
        report = replay()
    assert (report.recordings, report.changed) == (len(expected), [])


def until_settled(base: str, expected: dict, seconds: float = 120) -> dict[str, dict]:
    """The recordings' bodies once none is still waiting for its audio (or ``seconds`` have passed)."""
    deadline = time.monotonic() + seconds
    while True:
        bodies = {rid: lookup(base, rid) for rid in expected}
        waiting = [
            rid for rid, body in bodies.items() if body["status"] == "processing" and body["recording_url"]
        ]
        if not waiting or time.monotonic() > deadline:
            return bodies
        time.sleep(0.5)


def test_legs_ending_at_the_same_moment_are_all_counted(app, database):
    # Without a lock on the recording, two legs ending at once each see the other still live, and the
    # recording stays "recording" for good although every leg is over. Only the last legs of a
    # recording to end can race, so there are several recordings, each a chance to catch it.
    rng = random.Random(5)
    conferences = {f"conf_at_once_{n}": [new_session_id(rng) for _ in range(12)] for n in range(10)}
    calls = {
        leg: call_sequence(leg, "busy" if i % 2 else "unanswered", rng)
        for legs in conferences.values()
        for i, leg in enumerate(legs)
    }
    finals = [call[-1] for call in calls.values()]
    rng.shuffle(finals)

    with gunicorn(database, workers=4) as base:
        for recording_id, legs in conferences.items():
            register(base, recording_id, legs)
        assert set(post_concurrently(base, [call[0] for call in calls.values()])) == {200}  # all ringing
        assert set(post_concurrently(base, finals, threads=16)) == {200}
        bodies = {recording_id: lookup(base, recording_id) for recording_id in conferences}

    assert {rid: (b["status"], b["failure_reason"]) for rid, b in bodies.items()} == {
        rid: ("failed", "SUBSCRIBER_ABSENT, USER_BUSY") for rid in conferences
    }


def test_two_legs_ending_together_never_lose_an_update(app, monkeypatch):
    # Both transactions are held at a barrier just before the rules run. Without the recording lock
    # both get there, each having read the other leg as live, and the recording never leaves
    # "recording". With it, the second waits for the lock, the barrier times out, and they run in turn.
    client = app.test_client()
    legs = {"ATVId_leg_a": "unanswered", "ATVId_leg_b": "busy"}
    calls = {leg: call_sequence(leg, outcome, random.Random(1)) for leg, outcome in legs.items()}
    client.post("/api/v1/voice/recordings", json={"recording_id": "conf_pair", "session_ids": list(legs)})
    for call in calls.values():
        client.post("/api/v1/voice/callback", data=call[0])
    barrier = threading.Barrier(2, timeout=2)

    def advance_together(*args, **kwargs):
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass
        return advance(*args, **kwargs)

    monkeypatch.setattr(lifecycle, "advance", advance_together)
    with ThreadPoolExecutor(2) as pool:
        statuses = list(
            pool.map(
                lambda call: app.test_client().post("/api/v1/voice/callback", data=call[-1]).status_code,
                calls.values(),
            )
        )

    assert statuses == [200, 200]
    body = client.get("/api/v1/voice/recordings/conf_pair").json
    assert (body["status"], body["failure_reason"]) == ("failed", "SUBSCRIBER_ABSENT, USER_BUSY")
