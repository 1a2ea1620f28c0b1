"""Demo data (``seed-demo``, as ``make run`` runs it) keeps the rules real data keeps."""

from datetime import timedelta

from sqlalchemy import select

from recordings_service.devtools.demo import AUDIO_ROWS, DEMO_AUDIO
from recordings_service.extensions import db
from recordings_service.persistence.models import Recording
from recordings_service.recordings.lifecycle import sweep
from tests.support import drain, seeded_contract_body

LOOKUP = "/api/v1/voice/recordings/"


def statuses(app) -> dict[str, str]:
    with app.app_context():
        rows = db.session.execute(select(Recording.recording_id, Recording.status)).all()
    return {recording_id: status.value for recording_id, status in rows}


def test_every_completed_demo_recording_serves_its_audio(app, client, runner):
    assert runner.invoke(args=["recordings", "seed-demo", "--count", "200"]).exit_code == 0
    completed = [rid for rid, status in statuses(app).items() if status == "completed"]
    audio = DEMO_AUDIO.read_bytes()

    assert len(completed) > 100
    for recording_id in completed:
        audio_url = client.get(LOOKUP + recording_id).json["audio_url"]
        served = client.get(audio_url)
        assert (served.status_code, served.mimetype, served.data) == (200, "audio/mpeg", audio), recording_id


def test_the_contract_example_answers_its_documented_body(client, runner):
    runner.invoke(args=["recordings", "seed-demo", "--count", "10"])

    assert client.get(LOOKUP + "conf_1234567890").json == seeded_contract_body("http://localhost")


def test_neither_the_sweep_nor_the_worker_fails_a_demo_recording(app, runner):
    runner.invoke(args=["recordings", "seed-demo", "--count", "200"])
    before = statuses(app)

    with app.app_context():
        swept = sweep(timedelta(0))
    drain(app)

    assert swept == []
    assert statuses(app) == before
    assert "processing" not in before.values()


def test_deleting_a_demo_recording_leaves_the_others_audio(app, client, runner):
    runner.invoke(args=["recordings", "seed-demo", "--count", "20"])
    first, second = [rid for rid, status in sorted(statuses(app).items()) if status == "completed"][:2]
    second_audio = client.get(LOOKUP + second).json["audio_url"]

    assert client.delete(LOOKUP + first).status_code == 204

    assert client.get(LOOKUP + first).status_code == 404
    assert client.get(second_audio).data == DEMO_AUDIO.read_bytes()


def test_rows_past_the_audio_rows_are_never_completed(app, runner):
    runner.invoke(args=["recordings", "seed-demo", "--count", str(AUDIO_ROWS + 200)])
    found = statuses(app)

    assert "completed" in {found[f"conf_{n:010d}"] for n in range(AUDIO_ROWS)}
    assert {found[f"conf_{n:010d}"] for n in range(AUDIO_ROWS, AUDIO_ROWS + 200)} <= {"failed", "recording"}
