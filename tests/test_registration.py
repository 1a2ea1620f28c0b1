"""POST /api/v1/voice/recordings: registering a recording and its AT sessions."""

import base64
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from recordings_service import create_app
from recordings_service.extensions import db
from recordings_service.persistence.models import Leg, Recording, StoredCallback
from recordings_service.recordings.lifecycle import replay
from testkit.config import config_for
from testkit.receiver import Receiver
from testkit.servers import gunicorn, http
from tests.support import drain, fixture_call, recorded_call

URL = "/api/v1/voice/recordings"
SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()


def count(app, model) -> int:
    with app.app_context():
        return db.session.execute(sa.select(sa.func.count()).select_from(model)).scalar_one()


def test_a_new_recording_is_201_with_the_lookup_body_and_its_location(client):
    response = client.post(URL, json={"recording_id": "conf_1234567890", "session_ids": ["ATVId_a"]})

    assert response.status_code == 201
    assert response.headers["Location"].endswith("/api/v1/voice/recordings/conf_1234567890")
    body = response.json
    assert body == client.get(URL + "/conf_1234567890").json
    assert (body["status"], body["duration"], body["recording_url"], body["processed_at"]) == (
        "recording",
        None,
        None,
        None,
    )


def test_without_an_id_the_service_makes_one(client):
    first = client.post(URL, json={}).json["recording_id"]
    second = client.post(URL, json={}).json["recording_id"]

    assert first.startswith("conf_") and second.startswith("conf_") and first != second
    assert client.get(URL + "/" + first).status_code == 200


def test_registering_again_adds_sessions_and_is_200(app, client):
    client.post(URL, json={"recording_id": "conf_1", "session_ids": ["ATVId_a"]})

    again = client.post(URL, json={"recording_id": "conf_1", "session_ids": ["ATVId_a", "ATVId_b"]})
    same = client.post(URL, json={"recording_id": "conf_1", "session_ids": ["ATVId_a", "ATVId_b"]})

    assert (again.status_code, same.status_code) == (200, 200)
    assert count(app, Recording) == 1
    with app.app_context():
        sessions = db.session.execute(sa.select(Leg.session_id).order_by(Leg.session_id)).scalars().all()
    assert sessions == ["ATVId_a", "ATVId_b"]


def test_a_session_of_another_recording_is_409_and_changes_nothing(app, client):
    client.post(URL, json={"recording_id": "conf_1", "session_ids": ["ATVId_a"]})

    response = client.post(URL, json={"recording_id": "conf_2", "session_ids": ["ATVId_b", "ATVId_a"]})

    assert response.status_code == 409
    assert "ATVId_a" in response.json["detail"]
    assert client.get(URL + "/conf_2").status_code == 404
    assert count(app, Leg) == 1


def test_a_callbacks_session_joins_the_recording_it_was_registered_to(client):
    client.post(URL, json={"recording_id": "conf_1", "session_ids": ["ATVId_a"]})

    client.post(
        "/api/v1/voice/callback",
        data={
            "isActive": "0",
            "sessionId": "ATVId_a",
            "status": "Success",
            "durationInSeconds": "61",
            "recordingUrl": "https://voice.africastalking.com/recording/r1",
        },
    )

    body = client.get(URL + "/conf_1").json
    assert (body["status"], body["recording_url"]) == (
        "processing",
        "https://voice.africastalking.com/recording/r1",
    )
    assert client.get(URL + "/ATVId_a").status_code == 404


def test_bad_fields_are_422_naming_each_field_and_change_nothing(app, client):
    response = client.post(
        URL,
        json={"recording_id": "conf/1", "session_ids": "ATVId_a", "dial": ["0722000111"], "colour": "red"},
    )

    assert response.status_code == 422
    detail = response.json["detail"]
    for field in ("recording_id", "session_ids", "dial.0", "colour"):
        assert field in detail
    assert count(app, Recording) == 0


def test_a_body_that_is_not_json_is_refused(app, client):
    not_json = client.post(URL, data={"recording_id": "conf_1"})
    broken = client.post(URL, data="{", content_type="application/json")

    assert (not_json.status_code, broken.status_code) == (415, 400)
    assert not_json.json["detail"] and broken.json["detail"]
    assert count(app, Recording) == 0


# --- Sessions AT called back about before anyone named them -----------------------------------

CALLBACK = "/api/v1/voice/callback"


def recordings(app) -> list[tuple[str, bool]]:
    with app.app_context():
        rows = db.session.execute(sa.select(Recording.recording_id, Recording.provisional)).all()
        return sorted(tuple(row) for row in rows)


def test_a_registration_takes_the_session_its_first_callback_got_to_first(app, client):
    ringing, answered, final = fixture_call("recorded-call")
    session_id = ringing["sessionId"]
    client.post(CALLBACK, data=ringing)
    assert recordings(app) == [(session_id, True)]

    response = client.post(URL, json={"recording_id": "conf_1", "session_ids": [session_id]})
    client.post(CALLBACK, data=answered)
    client.post(CALLBACK, data=final)

    assert response.status_code == 201
    assert recordings(app) == [("conf_1", False)]
    assert client.get(URL + "/" + session_id).status_code == 404
    body = client.get(URL + "/conf_1").json
    assert (body["status"], body["recording_url"]) == ("processing", final["recordingUrl"])
    with app.app_context():
        owners = db.session.execute(sa.select(StoredCallback.recording_pk).distinct()).scalars().all()
        assert owners == [db.session.execute(sa.select(Recording.pk)).scalar_one()]


def test_a_session_named_after_its_call_ended_brings_its_audio_and_the_recording_completes(
    app, client, media
):
    calls = recorded_call(media)
    for fields in calls:
        client.post(CALLBACK, data=fields)

    response = client.post(URL, json={"recording_id": "conf_1", "session_ids": [calls[0]["sessionId"]]})
    ran = drain(app)

    assert (response.status_code, response.json["status"]) == (201, "processing")
    assert ran == 1
    body = client.get(URL + "/conf_1").json
    assert (body["status"], body["duration"]) == ("completed", 7)  # the MP3 media serves
    assert recordings(app) == [("conf_1", False)]
    with app.app_context():
        assert replay().changed == []


def test_a_completed_recording_is_not_taken_away_from_its_id(app, client, media):
    calls = recorded_call(media)
    for fields in calls:
        client.post(CALLBACK, data=fields)
    drain(app)
    session_id = calls[0]["sessionId"]
    before = client.get(URL + "/" + session_id).json
    assert before["status"] == "completed"

    response = client.post(URL, json={"recording_id": "conf_new", "session_ids": [session_id]})

    assert response.status_code == 409
    assert session_id in response.json["detail"] and "told" in response.json["detail"]
    assert client.get(URL + "/" + session_id).json == before
    assert client.get(URL + "/conf_new").status_code == 404  # nothing registered


def test_a_recording_its_webhooks_were_told_of_is_not_taken_away_from_its_id(make_app):
    with Receiver() as hooks:
        app = make_app(WEBHOOK_URL=hooks.url, WEBHOOK_SECRET=SECRET)
        client = app.test_client()
        calls = fixture_call("recorded-call")
        for fields in calls:
            client.post(CALLBACK, data=fields)
        drain(app)
        session_id = calls[0]["sessionId"]
        assert [json.loads(request.body)["type"] for request in hooks.received] == ["recording.processing"]

        response = client.post(URL, json={"recording_id": "conf_new", "session_ids": [session_id]})

    assert response.status_code == 409 and session_id in response.json["detail"]
    assert client.get(URL + "/" + session_id).json["status"] == "processing"
    assert recordings(app) == [(session_id, True)]


def test_registering_a_recording_named_as_its_session_keeps_and_names_it(app, client):
    ringing = fixture_call("recorded-call")[0]
    session_id = ringing["sessionId"]
    client.post(CALLBACK, data=ringing)

    named = client.post(URL, json={"recording_id": session_id, "session_ids": [session_id]})
    other = client.post(URL, json={"recording_id": "conf_2", "session_ids": [session_id]})

    assert (named.status_code, other.status_code) == (200, 409)
    assert recordings(app) == [(session_id, False)]


def test_a_live_call_of_a_registered_recording_dials_its_numbers_in_turn_when_sequential(client):
    client.post(
        URL,
        json={
            "recording_id": "conf_1",
            "session_ids": ["ATVId_a"],
            "dial": ["+254722000111", "+254733000222"],
        },
    )
    together = client.post(CALLBACK, data={"isActive": "1", "sessionId": "ATVId_a"}).text
    client.post(URL, json={"recording_id": "conf_1", "sequential": True})
    in_turn = client.post(CALLBACK, data={"isActive": "1", "sessionId": "ATVId_a"}).text

    assert '<Dial record="true" phoneNumbers="+254722000111,+254733000222" />' in together
    assert 'phoneNumbers="+254722000111,+254733000222" sequential="true"' in in_turn


def test_a_body_nested_20000_deep_is_400_not_a_500(app, client):
    deep = '{"session_ids": ' + "[" * 20_000 + "]" * 20_000 + "}"

    response = client.post(URL, data=deep, content_type="application/json")

    assert response.status_code == 400
    assert response.json == {"detail": "Invalid JSON body: nested too deeply"}
    assert count(app, Recording) == 0


def test_a_number_of_5000_digits_is_400_not_a_500(app, client):
    response = client.post(URL, data='{"recording_id": ' + "9" * 5000 + "}", content_type="application/json")

    assert response.status_code == 400
    assert response.json == {"detail": "Invalid JSON body: a number has too many digits"}
    assert count(app, Recording) == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"recording_id": "conf_\x00"}, "recording_id"),
        ({"session_ids": ["ATVId_\x00"]}, "session_ids.0"),
        ({"recording_id": 2**63}, "recording_id"),
        ({"session_ids": [2**64]}, "session_ids.0"),
        ({"dial": ["+2547" + "1" * 200]}, "dial.0"),
        ({"status_callback_url": "https://a.example/" + "x" * 3000}, "status_callback_url"),
    ],
)
def test_odd_values_are_422_naming_the_field(app, client, body, field):
    response = client.post(URL, json=body)

    assert response.status_code == 422
    assert field in response.json["detail"]
    assert count(app, Recording) == 0


@pytest.mark.slow
def test_registrations_naming_the_same_sessions_in_opposite_orders_never_deadlock(app, database):
    """100 pairs of registrations at once through gunicorn, each pair naming 20 sessions in both orders.

    The more sessions, the likelier two transactions meet half-way. Half the pairs register one
    recording twice, half two recordings that then want the same sessions."""

    def register(recording_id: str, session_ids: list[str]) -> int:
        body = json.dumps({"recording_id": recording_id, "session_ids": session_ids}).encode()
        return http("POST", base + URL, body, {"Content-Type": "application/json"}, timeout=60)[0]

    def together(barrier: threading.Barrier, recording_id: str, session_ids: list[str]) -> int:
        barrier.wait()  # both of a pair are sent at the same moment
        return register(recording_id, session_ids)

    def pair(n: int) -> tuple[int, int]:
        sessions, barrier = [f"ATVId_{n}_{k:02d}" for k in range(20)], threading.Barrier(2)
        other = f"conf_{n}_x" if n % 2 == 0 else f"conf_{n}_y"
        with ThreadPoolExecutor(2) as both:
            first = both.submit(together, barrier, f"conf_{n}_x", sessions)
            second = both.submit(together, barrier, other, sessions[::-1])
            return first.result(), second.result()

    with gunicorn(database, workers=2) as base, ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(pair, range(100)))

    for n, statuses in enumerate(answers):
        if n % 2 == 0:  # one recording: created once, found once
            assert sorted(statuses) == [200, 201], (n, statuses)
        else:  # two recordings: the second to bind is refused
            assert sorted(statuses) == [201, 409], (n, statuses)
    with app.app_context():
        bound = db.session.execute(
            sa.select(Leg.session_id, Recording.recording_id).join(
                Recording, Recording.pk == Leg.recording_pk
            )
        ).all()
    assert len(bound) == 100 * 20  # every session bound once, to one recording
    for session_id, recording_id in bound:
        n = session_id.split("_")[1]
        assert recording_id.startswith(f"conf_{n}_")


def test_a_registration_waits_for_sessions_in_the_order_every_other_takes_them(postgresql_url):
    """Deterministic, on PostgreSQL: another transaction holds ATVId_a, as one binding in sorted order
    would, and goes on to take ATVId_z. A registration naming [ATVId_z, ATVId_a] must wait for ATVId_a
    first, holding nothing the other needs; taking ATVId_z first would deadlock the two."""
    app = create_app(config_for(postgresql_url))
    client = app.test_client()
    client.post(URL, json={"recording_id": "conf_other"})
    other = sa.create_engine(config_for(postgresql_url).SQLALCHEMY_DATABASE_URI, poolclass=sa.pool.NullPool)
    with other.connect() as connection, ThreadPoolExecutor(1) as pool:
        pk = connection.execute(sa.select(Recording.pk).filter_by(recording_id="conf_other")).scalar_one()
        insert = sa.insert(Leg.__table__).values(recording_pk=pk)
        connection.execute(insert, {"session_id": "ATVId_a"})
        registering = pool.submit(
            client.post, URL, json={"recording_id": "conf_1", "session_ids": ["ATVId_z", "ATVId_a"]}
        )
        time.sleep(0.5)
        assert not registering.done()  # waiting for ATVId_a
        connection.execute(insert, {"session_id": "ATVId_z"})  # would wait on the registration if it held it
        connection.commit()
        response = registering.result(timeout=30)
    other.dispose()
    with app.app_context():
        db.engine.dispose()

    assert response.status_code == 409
    assert "ATVId_a" in response.json["detail"] and "ATVId_z" in response.json["detail"]
