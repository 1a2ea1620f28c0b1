"""POST /api/v1/voice/calls and `recordings start-call`: calls started through Africa's Talking's Voice
API, here a fake one on loopback (testkit/fake_at.py)."""

import base64
import json
import logging
import os
import threading
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from recordings_service.domain.clock import utcnow
from recordings_service.extensions import db
from recordings_service.logs import RedactSecrets, keep_secret, keep_secrets, redact
from recordings_service.persistence.models import IdempotencyKey, Leg, Recording, WebhookEvent
from recordings_service.recordings.lifecycle import replay
from tests.support import drain

CALLS = "/api/v1/voice/calls"
CALLBACK = "/api/v1/voice/callback"
AT_NUMBER = "+254203893400"
A, B = "+254711000001", "+254711000002"
DIAL = ["+254722000111"]


def at_settings(fake_at) -> dict:
    """The settings of an app that starts calls through ``fake_at``."""
    return {
        "AT_USERNAME": "recordings",
        "AT_API_KEY": fake_at.api_key,
        "AT_VOICE_API_URL": fake_at.url,
        "AT_VOICE_NUMBER": AT_NUMBER,
        "AT_VOICE_TIMEOUT_SECONDS": 0.5,
    }


@pytest.fixture
def at_app(make_app, fake_at):
    return make_app(**at_settings(fake_at))


@pytest.fixture
def at_client(at_app):
    return at_app.test_client()


def lookup(client, response) -> dict:
    return client.get(response.headers["Location"]).json


def test_a_start_calls_each_number_and_answers_the_recording_and_its_legs(at_client, fake_at):
    response = at_client.post(CALLS, json={"recording_id": "conf_1", "to": [A, B], "dial": DIAL})

    assert response.status_code == 201
    body = response.json
    legs = body.pop("legs")
    assert body == lookup(at_client, response) and body["status"] == "recording"
    assert [(leg["number"], leg["status"]) for leg in legs] == [(A, "Queued"), (B, "Queued")]
    assert [leg["session_id"] for leg in legs] == [call["sessionId"] for call in fake_at.placed]
    path, form, headers = fake_at.requests[0]
    assert (path, form) == ("/call", {"username": "recordings", "from": AT_NUMBER, "to": f"{A},{B}"})
    assert headers["apiKey"] == fake_at.api_key
    # AT's callbacks of those sessions are the recording's, and dial its numbers.
    live = at_client.post(CALLBACK, data={"isActive": "1", "sessionId": legs[0]["session_id"]})
    assert 'phoneNumbers="+254722000111"' in live.text
    assert (
        at_client.get("/api/v1/voice/recordings/conf_1/legs").json["items"][0]["session_id"]
        == legs[0]["session_id"]
    )


def test_at_trickling_its_answer_is_a_timeout_within_the_voice_timeout(make_app, fake_at, media):
    # A byte every 50 ms: each wait is short, so only a deadline on the whole exchange ends it.
    settings = {**at_settings(fake_at), "AT_VOICE_API_URL": media.trickle("/call")}
    client = make_app(**settings).test_client()
    started = time.monotonic()

    response = client.post(CALLS, json={"recording_id": "conf_1", "to": [A], "dial": DIAL})

    took = time.monotonic() - started
    assert response.status_code == 504 and "did not answer in time" in response.json["detail"]
    assert media.fetches("/call") == 1
    assert took < settings["AT_VOICE_TIMEOUT_SECONDS"] * 2


def test_a_call_whose_callback_comes_before_at_answers_dials_its_recordings_numbers(
    at_app, at_client, fake_at, media
):
    # AT never answers the start (a timeout): its call, placed all the same, is known by its number.
    fake_at.hang = True
    response = at_client.post(
        CALLS, json={"recording_id": "conf_1", "to": [A], "dial": DIAL, "sequential": True}
    )
    assert response.status_code == 504
    assert "did not answer in time" in response.json["detail"] and "conf_1" in response.json["detail"]
    assert (lookup(at_client, response)["status"], lookup(at_client, response)["failure_reason"]) == (
        "failed",
        "at_timeout",
    )

    outbound = {
        "sessionId": "ATVId_late",
        "direction": "Outbound",
        "callerNumber": A,
        "destinationNumber": AT_NUMBER,
    }
    live = at_client.post(CALLBACK, data={**outbound, "isActive": "1"})
    final = {
        "isActive": "0",
        "status": "Success",
        "durationInSeconds": "40",
        "recordingUrl": media.serve_file("/r.mp3"),
    }
    at_client.post(CALLBACK, data={**outbound, **final})

    assert live.text.endswith('<Response><Dial record="true" phoneNumbers="+254722000111" /></Response>')
    # Failed gives way to completed only: once its audio is stored.
    assert drain(at_app) == 1
    body = at_client.get("/api/v1/voice/recordings/conf_1").json
    assert (body["status"], body["recording_url"], body["failure_reason"]) == (
        "completed",
        final["recordingUrl"],
        None,
    )
    with at_app.app_context():
        assert db.session.execute(sa.select(Recording.recording_id)).scalars().all() == ["conf_1"]
    with at_app.app_context():
        assert replay().changed == []


def test_an_inbound_call_or_another_number_is_not_taken_for_a_started_call(at_app, at_client, fake_at):
    fake_at.hang = True
    at_client.post(CALLS, json={"recording_id": "conf_1", "to": [A]})
    inbound = {"isActive": "1", "direction": "Inbound", "callerNumber": A, "destinationNumber": AT_NUMBER}
    at_client.post(CALLBACK, data={**inbound, "sessionId": "ATVId_in"})
    at_client.post(
        CALLBACK, data={**inbound, "sessionId": "ATVId_other", "direction": "Outbound", "callerNumber": B}
    )

    with at_app.app_context():
        ids = db.session.execute(sa.select(Recording.recording_id).order_by(Recording.pk)).scalars().all()
    assert ids == ["conf_1", "ATVId_in", "ATVId_other"]


@pytest.mark.parametrize(
    "script, status, reason",
    [
        ({"statuses": {A: "InvalidPhoneNumber"}}, 502, "InvalidPhoneNumber"),
        ({"error_message": "Invalid callerId: +254203893400"}, 502, "Invalid callerId: +254203893400"),
        ({"http_status": 500}, 502, "HTTP 500"),
        ({"api_key": "not-the-key"}, 502, "HTTP 401"),
    ],
    ids=["number-refused", "error-message", "http-error", "wrong-key"],
)
def test_what_at_refuses_is_a_clear_error_and_a_failed_recording(
    at_app, at_client, fake_at, script, status, reason
):
    for name, value in script.items():
        setattr(fake_at, name, value)

    response = at_client.post(CALLS, json={"recording_id": "conf_1", "to": [A]})

    assert response.status_code == status
    assert reason in response.json["detail"] and "conf_1" in response.json["detail"]
    body = lookup(at_client, response)
    assert (body["status"], body["failure_reason"]) == ("failed", reason)
    assert fake_at.placed == []
    with at_app.app_context():
        assert replay().changed == []


SECRETS = {
    "WEBHOOK_URL": "http://127.0.0.1:9/hooks",
    "WEBHOOK_SECRET": "whsec_" + base64.b64encode(os.urandom(32)).decode(),
    "VOICE_CALLBACK_TOKEN": "callback-token-" + os.urandom(16).hex(),
}


# How AT's text may quote a secret: its errorMessage, an HTTP error's body (far in, where the text
# kept of it is cut), a number's status.
SAID = {
    "error-message": lambda secret: {"error_message": f"Invalid key {secret}"},
    "http-error-body": lambda secret: {"http_status": 401, "error_body": "x" * 180 + f" apiKey={secret}"},
    "number-status": lambda secret: {"statuses": {A: f"Invalid key {secret}"}},
}


@pytest.mark.parametrize("secret", ["AT_API_KEY", "WEBHOOK_SECRET", "VOICE_CALLBACK_TOKEN"])
@pytest.mark.parametrize("said", sorted(SAID))
def test_a_secret_in_ats_text_reaches_no_answer_stored_field_or_event(make_app, fake_at, secret, said):
    app = make_app(**at_settings(fake_at), **SECRETS)
    value = app.config[secret]
    for name, script in SAID[said](value).items():
        setattr(fake_at, name, script)
    client = app.test_client()

    response = client.post(CALLS, json={"recording_id": "conf_1", "to": [A]})
    body = lookup(client, response)
    legs = client.get(response.headers["Location"] + "/legs").json
    listing = client.get("/api/v1/voice/recordings").json
    with app.app_context():
        (event,) = db.session.execute(sa.select(WebhookEvent.type, WebhookEvent.message)).all()

    assert response.status_code == 502 and body["status"] == "failed"
    assert event.type == "recording.failed"
    if said != "http-error-body":
        assert body["failure_reason"] == "Invalid key [redacted]"
    seen = [response.get_data(as_text=True), *map(json.dumps, [body, legs, listing, event.message])]
    assert [text for text in seen if value[:8] in text] == []
    assert "[redacted]" in seen[0]


def test_a_start_at_places_in_part_is_201_saying_what_became_of_each_number(at_client, fake_at):
    fake_at.statuses = {B: "InvalidPhoneNumber"}

    response = at_client.post(CALLS, json={"to": [A, B]})

    assert response.status_code == 201
    assert [(leg["number"], leg["status"], leg["session_id"] is None) for leg in response.json["legs"]] == [
        (A, "Queued", False),
        (B, "InvalidPhoneNumber", True),
    ]
    assert response.json["status"] == "recording"


def test_a_repeated_idempotency_key_places_no_second_call(at_app, at_client, fake_at):
    request = {"recording_id": "conf_1", "to": [A], "dial": DIAL}
    key = {"Idempotency-Key": "3f0c8a52-8d7e-4b7e-9a61-0f1f6f2b9c11"}

    first = at_client.post(CALLS, json=request, headers=key)
    again = at_client.post(
        CALLS, data=json.dumps(request, indent=4), content_type="application/json", headers=key
    )
    other = at_client.post(CALLS, json={**request, "to": [B]}, headers=key)
    unkeyed = at_client.post(CALLS, json={"to": [B]})

    assert (first.status_code, again.status_code, other.status_code, unkeyed.status_code) == (
        201,
        201,
        422,
        201,
    )
    assert again.json == first.json and again.headers["Location"] == first.headers["Location"]
    assert "Idempotency-Key" in other.json["detail"]
    assert fake_at.calls == 2  # the first start and the unkeyed one
    with at_app.app_context():
        assert db.session.execute(sa.select(sa.func.count()).select_from(Leg)).scalar_one() == 2


def test_a_client_using_another_clients_idempotency_key_gets_nothing_of_theirs(make_app, fake_at):
    app = make_app(API_AUTH_REQUIRED=True, **at_settings(fake_at))
    runner, client = app.test_cli_runner(), app.test_client()
    dashboard, crm = (
        runner.invoke(args=["recordings", "create-api-key", name]).output.strip()
        for name in ("dashboard", "crm")
    )
    request = {"recording_id": "conf_1", "to": [A], "dial": DIAL}

    def start(api_key):
        headers = {"Idempotency-Key": "k-shared", "Authorization": f"Bearer {api_key}"}
        return client.post(CALLS, json=request, headers=headers)

    first, other, again = start(dashboard), start(crm), start(dashboard)

    assert (first.status_code, other.status_code, again.status_code) == (201, 422, 201)
    assert again.json == first.json
    assert other.json == {
        "detail": "This Idempotency-Key came with another request: use a new key for a new start"
    }
    assert fake_at.calls == 1


def test_the_cli_and_the_api_keep_one_answer_for_one_idempotency_key(at_app, at_client, fake_at):
    request = {"recording_id": "conf_1", "to": [A], "dial": DIAL}
    first = at_client.post(CALLS, json=request, headers={"Idempotency-Key": "k-1"})
    args = ["recordings", "start-call", "--to", A, "--dial", DIAL[0], "--recording-id", "conf_1"]
    again = at_app.test_cli_runner().invoke(args=[*args, "--idempotency-key", "k-1"])

    assert first.status_code == 201
    assert again.exit_code == 0, again.output
    assert json.loads(again.output) == first.json
    assert fake_at.calls == 1


def test_a_retry_of_a_refused_start_gets_the_refusal_again_without_asking_at(at_client, fake_at):
    fake_at.statuses = {A: "InsufficientCredit"}
    key = {"Idempotency-Key": "k-1"}

    first = at_client.post(CALLS, json={"to": [A]}, headers=key)
    fake_at.statuses = {}
    again = at_client.post(CALLS, json={"to": [A]}, headers=key)

    assert (first.status_code, again.status_code) == (502, 502)
    assert again.json == first.json
    assert len(fake_at.requests) == 1


def test_a_retry_while_the_first_request_waits_for_at_is_409(at_app, fake_at):
    fake_at.hang = True
    key = {"Idempotency-Key": "k-1"}
    answers = {}
    first = threading.Thread(
        target=lambda: answers.update(first=at_app.test_client().post(CALLS, json={"to": [A]}, headers=key))
    )
    first.start()
    while not fake_at.requests:
        threading.Event().wait(0.01)
    during = at_app.test_client().post(CALLS, json={"to": [A]}, headers=key)
    first.join()
    after = at_app.test_client().post(CALLS, json={"to": [A]}, headers=key)

    assert (during.status_code, during.headers["Retry-After"]) == (409, "1")
    assert answers["first"].status_code == after.status_code == 504
    assert len(fake_at.requests) == 1


def test_a_key_whose_first_start_died_before_at_answered_is_told_so_and_rings_nobody(at_app, fake_at):
    """A retry of a start whose process died before AT answered is told the outcome is unknown.

    Once past the wait a live start could take, the retry gets that answer for good, and AT is not
    asked again.
    """
    fake_at.hang = True
    key = {"Idempotency-Key": "k-died"}
    first = threading.Thread(target=lambda: at_app.test_client().post(CALLS, json={"to": [A]}, headers=key))
    first.start()
    while not fake_at.requests:
        threading.Event().wait(0.01)
    first.join()  # its 504 was recorded: undo that, as if the process had died before recording it
    with at_app.app_context():
        long_ago = utcnow() - timedelta(hours=1)
        db.session.execute(
            sa.update(IdempotencyKey).values(response_status=None, response_body=None, created_at=long_ago)
        )
        db.session.commit()
    fake_at.hang = False

    retried = [at_app.test_client().post(CALLS, json={"to": [A]}, headers=key) for _ in range(2)]

    assert [answer.status_code for answer in retried] == [502, 502]
    assert "not known" in retried[0].json["detail"] and retried[0].json == retried[1].json
    assert len(fake_at.requests) == 1  # only the first start asked AT


@pytest.mark.parametrize(
    "body, named",
    [
        ({}, "to"),
        ({"to": []}, "to"),
        ({"to": ["0711000001"]}, "to.0"),
        ({"to": [A, A]}, "to"),
        ({"to": [A], "from": "AT"}, "from"),
        ({"to": [A], "dial": []}, "dial"),
        ({"to": [A], "colour": "red"}, "colour"),
        ({"to": [A], "recording_id": "conf/1"}, "recording_id"),
    ],
)
def test_bad_fields_are_422_naming_the_field_and_call_nobody(at_client, fake_at, body, named):
    response = at_client.post(CALLS, json=body)

    assert response.status_code == 422
    assert named in response.json["detail"]
    assert fake_at.requests == []


def test_what_cannot_start_a_call_is_refused_before_at_is_asked(make_app, at_client, fake_at):
    not_json = at_client.post(CALLS, data=json.dumps({"to": [A]}), content_type="text/plain")
    bad_key = at_client.post(CALLS, json={"to": [A]}, headers={"Idempotency-Key": "x" * 256})
    unset = make_app(AT_VOICE_NUMBER=None).test_client().post(CALLS, json={"to": [A]})
    no_number = make_app(
        AT_USERNAME="u", AT_API_KEY=fake_at.api_key, AT_VOICE_API_URL=fake_at.url
    ).test_client()

    assert (not_json.status_code, bad_key.status_code, unset.status_code) == (422, 422, 503)
    assert "AT_USERNAME" in unset.json["detail"]
    assert no_number.post(CALLS, json={"to": [A]}).status_code == 422
    assert fake_at.requests == []


def test_the_cli_starts_calls_and_says_why_at_refused(at_app, fake_at):
    runner = at_app.test_cli_runner()

    started = runner.invoke(
        args=["recordings", "start-call", "--to", A, "--dial", DIAL[0], "--recording-id", "conf_1"]
    )
    fake_at.error_message = "Insufficient balance"
    refused = runner.invoke(args=["recordings", "start-call", "--to", B])

    assert started.exit_code == 0, started.output
    answer = json.loads(started.output)
    assert (answer["recording_id"], answer["legs"][0]["status"]) == ("conf_1", "Queued")
    assert refused.exit_code == 1 and "Insufficient balance" in refused.output
    assert fake_at.calls == 1


def test_the_at_key_is_redacted_from_log_lines_and_tracebacks():
    keep_secret("atsk_secret_value_42")
    try:
        raise RuntimeError("header apiKey: atsk_secret_value_42 refused")
    except RuntimeError as error:
        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "key %s", ("atsk_secret_value_42",), None)
        record.exc_info = (type(error), error, error.__traceback__)
    RedactSecrets().filter(record)

    line = logging.Formatter().format(record)
    assert "atsk_secret_value_42" not in line
    assert "key [redacted]" in line and "apiKey: [redacted] refused" in line


def test_every_secret_setting_is_redacted_the_database_password_and_aws_key_too(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-0123456789")
    keep_secrets({"SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://app:db-password-42@db/recordings"})

    said = redact("connecting as app:db-password-42 with aws-secret-0123456789")

    assert said == "connecting as app:[redacted] with [redacted]"
