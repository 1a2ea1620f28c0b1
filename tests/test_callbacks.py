"""POST /api/v1/voice/callback: Africa's Talking callbacks, as AT posts them (forms, strings)."""

import logging
import re

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recordings_service.extensions import db
from recordings_service.persistence.models import Job, Leg, Recording, StoredCallback
from tests.support import empty_tables, fixture_call

CALLBACK = "/api/v1/voice/callback"
LOOKUP = "/api/v1/voice/recordings/"

RECORDED = fixture_call("recorded-call")
UNANSWERED = fixture_call("unanswered-call")
NO_URL = fixture_call("ended-without-recording-url")
# A recording created by its first callback is named after the AT session.
RECORDED_ID, UNANSWERED_ID, NO_URL_ID = (call[0]["sessionId"] for call in (RECORDED, UNANSWERED, NO_URL))

# What callbacks alone make of each call: a recorded one is processing, its audio fetched by the worker
# (tests/test_audio.py).
EXPECTED = {
    RECORDED_ID: {
        "status": "processing",
        "duration": 338,
        "recording_url": "https://voice.africastalking.com/recording/abc123def456",
        "failure_reason": None,
    },
    UNANSWERED_ID: {
        "status": "failed",
        "duration": None,
        "recording_url": None,
        "failure_reason": "SUBSCRIBER_ABSENT",
    },
    NO_URL_ID: {"status": "processing", "duration": 95, "recording_url": None, "failure_reason": None},
}


def post_all(client, posts, **kwargs):
    return [client.post(CALLBACK, data=fields, **kwargs) for fields in posts]


def outcome(client, recording_id: str) -> dict:
    body = client.get(LOOKUP + recording_id).json
    return {key: body[key] for key in ("status", "duration", "recording_url", "failure_reason")}


def stored(app) -> list[StoredCallback]:
    with app.app_context():
        rows = db.session.execute(sa.select(StoredCallback).order_by(StoredCallback.pk)).scalars().all()
        db.session.expunge_all()
        return rows


@pytest.mark.parametrize("call", [RECORDED, UNANSWERED, NO_URL], ids=["recorded", "unanswered", "no-url"])
def test_each_shared_call_posted_in_order_ends_as_its_calls_dictate(client, call):
    responses = post_all(client, call)

    assert [r.status_code for r in responses] == [200] * len(call)
    body = client.get(LOOKUP + call[0]["sessionId"]).json
    assert {key: body[key] for key in EXPECTED[call[0]["sessionId"]]} == EXPECTED[call[0]["sessionId"]]
    assert (body["processed_at"] is not None) == (body["status"] == "completed")


def test_the_recording_is_live_while_the_call_is(client):
    client.post(CALLBACK, data=RECORDED[0])

    assert client.get(LOOKUP + RECORDED_ID).json["status"] == "recording"


def test_a_url_that_comes_later_is_shown_and_its_audio_awaited(app, client):
    post_all(client, NO_URL)
    assert outcome(client, NO_URL_ID) == EXPECTED[NO_URL_ID]
    assert jobs(app) == []

    late = {**NO_URL[-1], "recordingUrl": "https://voice.africastalking.com/recording/late1"}
    assert client.post(CALLBACK, data=late).status_code == 200

    assert outcome(client, NO_URL_ID) == {
        "status": "processing",
        "duration": 95,
        "recording_url": "https://voice.africastalking.com/recording/late1",
        "failure_reason": None,
    }
    # Its fetch is written with the callback: a 2xx to AT means the fetch will happen.
    assert jobs(app) == [("fetch_audio", "pending", NO_URL_ID)]


def jobs(app) -> list[tuple]:
    with app.app_context():
        query = sa.select(Job.kind, Job.state, Leg.session_id).join(Leg, Leg.pk == Job.leg_pk)
        return [(kind, state.value, session_id) for kind, state, session_id in db.session.execute(query)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_shared_calls_shuffled_and_duplicated_end_the_same(app, client, data):
    with app.app_context():
        empty_tables()
    posts = RECORDED + UNANSWERED + NO_URL
    extra = data.draw(st.lists(st.sampled_from(posts), max_size=12))
    delivered = data.draw(st.permutations(posts + extra))

    responses = post_all(client, delivered)

    assert all(r.status_code == 200 for r in responses)
    for recording_id, expected in EXPECTED.items():
        assert outcome(client, recording_id) == expected
    rows = stored(app)
    assert len(rows) == len(delivered)  # every accepted callback is stored, duplicates too
    assert sum(not row.duplicate for row in rows) == len(posts)


def test_a_callback_is_stored_raw_with_unknown_fields_and_a_digest(app, client):
    fields = {**RECORDED[0], "someNewField": "kept", "callerCarrierName": "Safaricom"}

    client.post(CALLBACK, data=fields, environ_base={"REMOTE_ADDR": "196.201.214.10"})

    [row] = stored(app)
    assert row.fields == fields
    assert (row.session_id, row.duplicate, row.remote_addr) == (RECORDED_ID, False, "196.201.214.10")
    assert len(row.digest) == 64 and row.received_at is not None


def test_an_exact_duplicate_is_recorded_as_such_and_changes_nothing(app, client):
    post_all(client, RECORDED)
    before = client.get(LOOKUP + RECORDED_ID).json
    with app.app_context():
        updated_at = db.session.execute(sa.select(Recording.updated_at)).scalar_one()

    assert client.post(CALLBACK, data=RECORDED[-1]).status_code == 200

    assert client.get(LOOKUP + RECORDED_ID).json == before
    with app.app_context():
        assert db.session.execute(sa.select(Recording.updated_at)).scalar_one() == updated_at
    assert [row.duplicate for row in stored(app)] == [False, False, False, True]


def test_a_retried_start_after_the_end_does_not_reopen_the_call(client):
    post_all(client, RECORDED)

    response = client.post(CALLBACK, data={**RECORDED[0], "callSessionState": "Ringing", "retry": "1"})

    assert response.data.endswith(b"<Response />")  # no Dial for a call that is over
    assert outcome(client, RECORDED_ID) == EXPECTED[RECORDED_ID]


# --- What AT is told to do --------------------------------------------------------------------


def test_a_live_call_is_told_to_dial_the_recordings_numbers_and_record(client):
    client.post(
        "/api/v1/voice/recordings",
        json={
            "recording_id": "conf_1",
            "session_ids": [RECORDED_ID],
            "dial": ["+254722000111", "+254733000222"],
        },
    )

    response = client.post(CALLBACK, data=RECORDED[0])

    assert response.status_code == 200
    assert response.mimetype == "application/xml"
    assert response.data == (
        b'<?xml version="1.0" encoding="UTF-8"?>'
        b'<Response><Dial record="true" phoneNumbers="+254722000111,+254733000222" /></Response>'
    )


def test_without_its_own_numbers_a_call_dials_the_configured_ones(make_app):
    client = make_app(VOICE_DIAL_NUMBERS=["+254700000001"]).test_client()

    response = client.post(CALLBACK, data=RECORDED[0])

    assert b'<Dial record="true" phoneNumbers="+254700000001" />' in response.data


def test_with_no_numbers_at_all_the_answer_is_empty_and_a_warning_is_logged(client, caplog):
    with caplog.at_level(logging.WARNING):
        response = client.post(CALLBACK, data=RECORDED[0])

    assert response.data == b'<?xml version="1.0" encoding="UTF-8"?><Response />'
    assert "VOICE_DIAL_NUMBERS" in caplog.text


def test_the_final_request_gets_an_empty_200(client):
    response = client.post(CALLBACK, data=RECORDED[-1])

    assert (response.status_code, response.data) == (200, b"")


# --- Who may post -----------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["", "?token=wrong", "?token=", "?token=s3cret-token-x"])
def test_a_wrong_or_missing_token_is_403_and_nothing_is_stored(make_app, query):
    app = make_app(VOICE_CALLBACK_TOKEN="s3cret-token")
    client = app.test_client()

    response = client.post(CALLBACK + query, data=RECORDED[0])

    assert response.status_code == 403
    assert response.json == {"detail": "Invalid or missing callback token"}
    assert stored(app) == []


def test_the_right_token_is_accepted(make_app):
    client = make_app(VOICE_CALLBACK_TOKEN="s3cret-token").test_client()

    assert client.post(CALLBACK + "?token=s3cret-token", data=RECORDED[0]).status_code == 200


@pytest.mark.parametrize(
    ("remote", "forwarded", "proxies", "status"),
    [
        ("196.201.214.10", None, 0, 200),
        ("10.0.0.5", None, 0, 403),
        # Behind one trusted proxy, the client is the last X-Forwarded-For hop, not the proxy.
        ("10.0.0.5", "196.201.214.10", 1, 200),
        ("10.0.0.5", "10.9.9.9", 1, 403),
        # Without trusting the proxy, a forged header changes nothing.
        ("10.0.0.5", "196.201.214.10", 0, 403),
    ],
)
def test_allowed_networks_are_checked_against_the_real_client(make_app, remote, forwarded, proxies, status):
    app = make_app(VOICE_CALLBACK_ALLOWED_NETWORKS=["196.201.214.0/24"], TRUSTED_PROXY_COUNT=proxies)
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}

    response = app.test_client().post(
        CALLBACK, data=RECORDED[0], headers=headers, environ_base={"REMOTE_ADDR": remote}
    )

    assert response.status_code == status
    assert len(stored(app)) == (1 if status == 200 else 0)


# --- Bad input --------------------------------------------------------------------------------

BAD = [
    ({"isActive": "1"}, "sessionId"),
    ({"sessionId": RECORDED_ID}, "isActive"),
    ({**RECORDED[0], "isActive": "2"}, "isActive"),
    ({**RECORDED[0], "isActive": "true"}, "isActive"),
    ({**RECORDED[-1], "durationInSeconds": "-5"}, "durationInSeconds"),
    ({**RECORDED[-1], "durationInSeconds": "ten"}, "durationInSeconds"),
    ({**RECORDED[-1], "dialDurationInSeconds": "1.5"}, "dialDurationInSeconds"),
    ({**RECORDED[-1], "recordingUrl": "ftp://voice.africastalking.com/r"}, "recordingUrl"),
    ({**RECORDED[-1], "recordingUrl": "javascript:alert(1)"}, "recordingUrl"),
    ({**RECORDED[0], "sessionId": "ATVId/../../etc"}, "sessionId"),
    ({**RECORDED[0], "sessionId": "x" * 65}, "sessionId"),
]


@pytest.mark.parametrize(("fields", "named"), BAD)
def test_bad_fields_are_400_naming_the_field_and_change_nothing(app, client, fields, named, caplog):
    with caplog.at_level(logging.WARNING):
        response = client.post(CALLBACK, data=fields)

    assert response.status_code == 400
    assert named in response.json["detail"]
    assert stored(app) == []
    with app.app_context():
        assert db.session.execute(sa.select(sa.func.count()).select_from(Recording)).scalar_one() == 0
    assert "callback refused" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"json": RECORDED[0]}, 400),
        (
            {
                "data": "isActive=1&sessionId=ATVId_a&sessionId=ATVId_b",
                "content_type": "application/x-www-form-urlencoded",
            },
            400,
        ),
        ({"data": {**RECORDED[0], "padding": "x" * 70_000}}, 413),
        ({"data": {**RECORDED[0], **{f"f{i}": "1" for i in range(300)}}}, 413),
        ({}, 400),
    ],
    ids=["json", "repeated-field", "over-64KiB", "too-many-fields", "empty"],
)
def test_what_is_not_an_at_form_is_refused_and_changes_nothing(app, client, kwargs, status):
    response = client.post(CALLBACK, **kwargs)

    assert response.status_code == status
    assert response.mimetype == "application/json" and response.json["detail"]
    assert stored(app) == []


def test_empty_durations_read_as_unknown_rather_than_dropping_the_callback(client):
    response = client.post(CALLBACK, data={**NO_URL[-1], "dialDurationInSeconds": ""})

    assert response.status_code == 200
    assert outcome(client, NO_URL_ID)["duration"] == 95


def test_when_the_database_fails_the_callback_is_a_500_not_an_acknowledgement(app, client, caplog):
    with app.app_context():
        db.session.execute(sa.text("ALTER TABLE voice_callbacks RENAME TO voice_callbacks_away"))
        db.session.commit()
    try:
        with caplog.at_level(logging.ERROR):
            response = client.post(CALLBACK, data=RECORDED[-1])
    finally:
        with app.app_context():
            db.session.execute(sa.text("ALTER TABLE voice_callbacks_away RENAME TO voice_callbacks"))
            db.session.commit()

    assert response.status_code == 500
    assert response.json == {"detail": "Failed to store callback"}
    assert RECORDED_ID in caplog.text
    # Nothing half-done: no recording or session was left behind by the failed transaction.
    with app.app_context():
        assert db.session.execute(sa.select(sa.func.count()).select_from(Leg)).scalar_one() == 0
    # Posted again once the database is back, it is taken.
    assert client.post(CALLBACK, data=RECORDED[-1]).status_code == 200
    assert outcome(client, RECORDED_ID) == EXPECTED[RECORDED_ID]


@pytest.mark.parametrize(
    "body",
    [b"isActive=1&sessionId=ATVId_a&note=%FF%FE", b"isActive=1&sessionId=ATVId_a&note=\xff\xfe"],
    ids=["percent-escaped", "raw"],
)
def test_a_body_that_is_not_utf8_is_refused(app, client, body):
    response = client.post(CALLBACK, data=body, content_type="application/x-www-form-urlencoded")

    assert response.status_code == 400
    assert response.json == {"detail": "A callback must be UTF-8"}
    assert stored(app) == []


# --- Odd values: stored whole, or refused naming the field; never a 500 ---------------------------


@pytest.mark.parametrize("field", ["hangupCause", "status"])
@pytest.mark.parametrize("length", [129, 5000])
def test_a_long_cause_or_status_is_stored_whole_and_cut_to_fit_the_recording(app, client, field, length):
    text = ("Ünïcode ✓ 'quoted' " * 300)[:length]
    fields = {**UNANSWERED[-1], "hangupCause": "", "status": "", field: text}

    response = client.post(CALLBACK, data=fields)

    assert response.status_code == 200
    [row] = stored(app)
    assert row.fields == fields  # the raw callback keeps every character
    body = client.get(LOOKUP + UNANSWERED_ID).json
    assert (body["status"], body["failure_reason"]) == ("failed", text[:128])


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({**UNANSWERED[-1], "status": "Fail\x00ed"}, "status"),
        ({**UNANSWERED[-1], "hangupCause": "\x00"}, "hangupCause"),
        ({**UNANSWERED[-1], "note\x00": "x"}, "note"),
        ({**RECORDED[-1], "durationInSeconds": str(2**31)}, "durationInSeconds"),
        ({**RECORDED[-1], "durationInSeconds": str(2**63)}, "durationInSeconds"),
        ({**RECORDED[-1], "dialDurationInSeconds": str(2**64)}, "dialDurationInSeconds"),
        ({**RECORDED[-1], "durationInSeconds": "9" * 5000}, "durationInSeconds"),
        ({**RECORDED[-1], "durationInSeconds": "٣"}, "durationInSeconds"),
        ({**RECORDED[-1], "durationInSeconds": "5_000"}, "durationInSeconds"),
        ({**RECORDED[-1], "dialDurationInSeconds": " 5"}, "dialDurationInSeconds"),
        ({**RECORDED[-1], "recordingUrl": "https://" + "x" * 5000}, "recordingUrl"),
    ],
    ids=[
        "nul-status",
        "nul-cause",
        "nul-key",
        "2^31",
        "2^63",
        "2^64",
        "5000-digits",
        "arabic-digit",
        "underscore",
        "space",
        "long-url",
    ],
)
def test_odd_values_are_400_naming_the_field_and_change_nothing(app, client, fields, named):
    response = client.post(CALLBACK, data=fields)

    assert response.status_code == 400
    assert named in response.json["detail"]
    assert stored(app) == []


def test_the_longest_duration_a_column_holds_is_taken(app, client):
    fields = {**NO_URL[-1], "durationInSeconds": str(2**31 - 1), "dialDurationInSeconds": str(2**31 - 1)}

    assert client.post(CALLBACK, data=fields).status_code == 200

    assert outcome(client, NO_URL_ID)["duration"] == 2**31 - 1
    assert stored(app)[0].fields == fields


def test_options_on_the_callback_url_is_answered_and_not_counted_as_a_callback(app, client):
    response = client.options(CALLBACK, data=RECORDED[0])

    assert response.status_code == 200  # it was a 500: the refusal counter wanted an outcome
    assert "POST" in response.headers["Allow"]
    assert stored(app) == []


@pytest.mark.parametrize(
    ("url", "taken"),
    [
        ("", True),
        ("https://voice.africastalking.com/recording/abc123def456", True),
        ("http://127.0.0.1:8080/recording/a.mp3?sig=x%2Fy&t=1#part", True),
        ("HTTPS://voice.africastalking.com/r", False),
        ("https://", False),
        ("https://voice.africastalking.com/a b", False),
        ("https://voice.africastalking.com/ré", False),
        ("https://-host/r", False),
    ],
)
def test_a_recording_url_is_taken_exactly_when_the_spec_pattern_matches(client, url, taken):
    spec = client.get("/api/v1/openapi.json").json
    pattern = spec["components"]["schemas"]["Callback"]["properties"]["recordingUrl"]["pattern"]

    response = client.post(CALLBACK, data={**NO_URL[-1], "recordingUrl": url})

    assert (re.fullmatch(pattern, url) is not None) == taken
    assert response.status_code == (200 if taken else 400)
