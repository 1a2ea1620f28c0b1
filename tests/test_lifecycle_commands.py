"""flask recordings replay / sweep / simulate-call."""

from datetime import timedelta

import pytest
import sqlalchemy as sa

from recordings_service.extensions import db
from recordings_service.persistence.models import Leg, Recording
from testkit.audio import EVERYDAY, PHONE, RECORDED, AudioFile
from testkit.servers import gunicorn, worker
from tests.support import drain, fixture_call

CALLBACK = "/api/v1/voice/callback"


def status_of(client, recording_id: str) -> dict:
    return client.get(f"/api/v1/voice/recordings/{recording_id}").json


def post_calls(client, *names: str) -> None:
    for name in names:
        for fields in fixture_call(name):
            assert client.post(CALLBACK, data=fields).status_code == 200


def test_replay_of_a_consistent_database_changes_nothing(client, runner):
    post_calls(client, "recorded-call", "unanswered-call", "ended-without-recording-url")
    runner.invoke(args=["recordings", "seed-demo", "--count", "5"])  # recordings without callbacks
    called = [
        fixture_call(name)[0]["sessionId"]
        for name in ("recorded-call", "unanswered-call", "ended-without-recording-url")
    ]
    before = {rid: status_of(client, rid) for rid in ["conf_0000000001", *called]}

    result = runner.invoke(args=["recordings", "replay"])

    assert result.exit_code == 0, result.output
    assert "replayed 3 recordings: 0 changed" in result.output
    assert {rid: status_of(client, rid) for rid in before} == before


def test_replay_rebuilds_recordings_and_sessions_from_the_stored_callbacks(app, client, runner):
    post_calls(client, "recorded-call")
    recording_id = fixture_call("recorded-call")[0]["sessionId"]
    before = status_of(client, recording_id)
    with app.app_context():  # lose everything the callbacks taught, as a bad deploy might
        db.session.execute(
            sa.update(Recording).values(
                status="recording", duration=None, recording_url=None, processed_at=None
            )
        )
        db.session.execute(sa.update(Leg).values(heard=False, ended=False, recording_url=None))
        db.session.commit()

    result = runner.invoke(args=["recordings", "replay"])

    assert f"changed: {recording_id}" in result.output
    rebuilt = status_of(client, recording_id)
    # As it was, but for updated_at: replay changed it back.
    assert {**rebuilt, "updated_at": None} == {**before, "updated_at": None}
    assert rebuilt["updated_at"] > before["updated_at"]


def test_sweep_fails_recordings_stuck_without_a_url_and_a_late_url_still_completes_them(
    app, client, runner, media
):
    post_calls(client, "ended-without-recording-url", "recorded-call")
    stuck = fixture_call("ended-without-recording-url")[0]["sessionId"]
    with app.app_context():  # both have waited 31 minutes: one for its URL, one for its audio
        for recording in db.session.execute(sa.select(Recording)).scalars():
            recording.updated_at -= timedelta(minutes=31)
        db.session.commit()

    result = runner.invoke(args=["recordings", "sweep", "--older-than", "30m"])

    assert result.exit_code == 0, result.output
    assert f"failed: {stuck}" in result.output and "failed 1 recordings" in result.output
    assert (status_of(client, stuck)["status"], status_of(client, stuck)["failure_reason"]) == (
        "failed",
        "recording_url_timeout",
    )
    # Replay keeps the sweep's verdict: the callbacks alone still leave the URL missing.
    assert "0 changed" in runner.invoke(args=["recordings", "replay"]).output
    # The one whose audio is awaited is not the sweep's: its fetch has a give-up of its own.
    assert status_of(client, fixture_call("recorded-call")[0]["sessionId"])["status"] == "processing"
    late = {**fixture_call("ended-without-recording-url")[-1], "recordingUrl": media.serve_file("/late.mp3")}
    client.post(CALLBACK, data=late)
    assert status_of(client, stuck)["status"] == "failed"  # until the audio is stored
    drain(app)
    assert status_of(client, stuck)["status"] == "completed"


def test_sweep_leaves_recent_recordings_alone(client, runner):
    post_calls(client, "ended-without-recording-url")

    assert "failed 0 recordings" in runner.invoke(args=["recordings", "sweep", "--older-than", "30m"]).output


@pytest.mark.parametrize(("value", "failed"), [("1800", 1), ("1800s", 1), ("30m", 1), ("0.5h", 1), ("1h", 0)])
def test_sweep_reads_a_duration_as_every_time_setting_does(app, client, runner, value, failed):
    post_calls(client, "ended-without-recording-url")
    with app.app_context():
        for recording in db.session.execute(sa.select(Recording)).scalars():
            recording.updated_at -= timedelta(minutes=31)
        db.session.commit()

    result = runner.invoke(args=["recordings", "sweep", "--older-than", value])

    assert result.exit_code == 0 and f"failed {failed} recordings" in result.output, result.output


@pytest.mark.parametrize("value", ["thirty minutes", "-5m", "5w", ""])
def test_sweep_rejects_a_duration_it_cannot_read(runner, value):
    result = runner.invoke(args=["recordings", "sweep", "--older-than", value])

    assert result.exit_code == 2 and "expected a duration such as 30 (seconds), 30s, 5m" in result.output


@pytest.mark.slow
@pytest.mark.parametrize(
    ("outcome", "audio", "status", "reason"),
    [
        *(("recorded", recording, "completed", None) for recording in [*EVERYDAY, PHONE]),
        ("no-url", RECORDED, "processing", None),
        ("unanswered", RECORDED, "failed", "SUBSCRIBER_ABSENT"),
    ],
    ids=lambda value: value.name if isinstance(value, AudioFile) else None,
)
def test_simulate_call_drives_a_running_service(database, runner, outcome, audio, status, reason):
    settings = {"VOICE_CALLBACK_TOKEN": "tok-123", "VOICE_DIAL_NUMBERS": "+254722000111"}
    with gunicorn(database, **settings) as base, worker(database, **settings):
        result = runner.invoke(
            args=[
                "recordings",
                "simulate-call",
                "conf_sim",
                "--url",
                base,
                "--outcome",
                outcome,
                "--token",
                "tok-123",
                "--audio",
                str(audio.path),
            ]
        )

    assert result.exit_code == 0, result.output
    assert "register conf_sim with session ATVId_" in result.output
    assert 'phoneNumbers="+254722000111"' in result.output
    last = result.output.strip().splitlines()[-1]
    assert f'"status":"{status}"' in last and (reason is None or reason in last)
    if status == "completed":
        assert f'"duration":{audio.duration},' in last


def test_simulate_call_without_the_token_says_what_went_wrong(database, runner):
    with gunicorn(database, VOICE_CALLBACK_TOKEN="tok-123") as base:
        result = runner.invoke(args=["recordings", "simulate-call", "conf_sim", "--url", base])

    assert result.exit_code == 1
    assert "Invalid or missing callback token" in result.output


def test_simulate_call_with_api_keys_required(database, runner):
    key = runner.invoke(args=["recordings", "create-api-key", "simulator"]).output.strip()
    with (
        gunicorn(database, API_AUTH_REQUIRED="true", VOICE_CALLBACK_TOKEN="tok-123") as base,
        worker(database),
    ):
        refused = runner.invoke(
            args=["recordings", "simulate-call", "conf_a", "--url", base, "--token", "tok-123"]
        )
        result = runner.invoke(
            args=[
                "recordings",
                "simulate-call",
                "conf_b",
                "--url",
                base,
                "--token",
                "tok-123",
                "--api-key",
                key,
            ]
        )

    assert refused.exit_code == 1 and "A valid API key is required" in refused.output
    assert result.exit_code == 0, result.output
    assert '"status":"completed"' in result.output.strip().splitlines()[-1]
