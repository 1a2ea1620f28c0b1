"""POST /api/v1/voice/recordings: registering a recording and its AT sessions."""

import pytest
import sqlalchemy as sa

from recordings_service.extensions import db
from recordings_service.persistence.models import CallSession, Recording

URL = "/api/v1/voice/recordings"


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
        sessions = (
            db.session.execute(sa.select(CallSession.session_id).order_by(CallSession.session_id))
            .scalars()
            .all()
        )
    assert sessions == ["ATVId_a", "ATVId_b"]


def test_a_session_of_another_recording_is_409_and_changes_nothing(app, client):
    client.post(URL, json={"recording_id": "conf_1", "session_ids": ["ATVId_a"]})

    response = client.post(URL, json={"recording_id": "conf_2", "session_ids": ["ATVId_b", "ATVId_a"]})

    assert response.status_code == 409
    assert "ATVId_a" in response.json["detail"]
    assert client.get(URL + "/conf_2").status_code == 404
    assert count(app, CallSession) == 1


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
