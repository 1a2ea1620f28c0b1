"""``flask recordings ...`` commands, run through Flask's CLI runner."""

import json

from recordings_service.devtools.demo import count_recordings
from recordings_service.extensions import db
from recordings_service.persistence.models import Recording


def find_recording(recording_id: str) -> Recording:
    return db.session.execute(db.select(Recording).filter_by(recording_id=recording_id)).scalar_one()


def test_seed_demo_adds_a_realistic_mix_and_the_documented_example(app, runner):
    result = runner.invoke(args=["recordings", "seed-demo", "--count", "500"])

    assert result.exit_code == 0, result.output
    assert "added 501 recordings" in result.output
    with app.app_context():
        assert count_recordings() == 501
        example = find_recording("conf_1234567890")
        assert (example.status, example.duration) == ("completed", 342)
        statuses = {find_recording(f"conf_{n:010d}").status for n in range(500)}
        assert statuses == {"recording", "completed", "failed"}
        for n in range(500):
            row = find_recording(f"conf_{n:010d}")
            assert (row.recording_url is not None) == (row.status == "completed")
            assert (row.failure_reason is not None) == (row.status == "failed")
            assert (row.processed_at is not None) == (row.status == "completed")
            assert row.processed_at is None or row.processed_at > row.created_at


def test_seed_demo_twice_adds_nothing_and_keeps_existing_rows(app, runner):
    runner.invoke(args=["recordings", "seed-demo", "--count", "50"])
    with app.app_context():
        before = find_recording("conf_0000000007").created_at

    result = runner.invoke(args=["recordings", "seed-demo", "--count", "60"])

    assert "added 10 recordings" in result.output
    with app.app_context():
        assert count_recordings() == 61
        assert find_recording("conf_0000000007").created_at == before


def test_show_prints_the_api_body(runner):
    runner.invoke(args=["recordings", "seed-demo", "--count", "0"])

    result = runner.invoke(args=["recordings", "show", "conf_1234567890"])

    assert result.exit_code == 0
    assert json.loads(result.output)["created_at"] == "2024-01-15T10:00:00.000Z"


def test_show_of_a_missing_id_fails(runner):
    result = runner.invoke(args=["recordings", "show", "conf_nope"])

    assert result.exit_code != 0
    assert "not found" in result.output


def test_list_is_newest_first_and_filters_by_status(runner):
    runner.invoke(args=["recordings", "seed-demo", "--count", "40"])

    lines = runner.invoke(args=["recordings", "list", "--limit", "5"]).output.splitlines()
    failed = runner.invoke(
        args=["recordings", "list", "--status", "failed", "--limit", "100"]
    ).output.splitlines()

    assert [line.split()[0] for line in lines] == [f"conf_{n:010d}" for n in range(5)]
    assert failed and all(line.split()[1] == "failed" for line in failed)


def test_list_rejects_an_unknown_status(runner):
    result = runner.invoke(args=["recordings", "list", "--status", "done"])

    assert result.exit_code == 2
    assert "done" in result.output


def test_commands_naming_a_recording_answer_not_found_for_an_id_no_recording_can_have(runner):
    for command in ("show", "delete", "deliveries"):
        result = runner.invoke(args=["recordings", command, "conf_\x00x"])

        assert result.exit_code == 1, (command, result.output)
        assert isinstance(result.exception, SystemExit), (command, result.exception)  # no traceback
        assert "not found" in result.output, (command, result.output)
