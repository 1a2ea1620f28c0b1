"""Helpers the tests share."""

import json
from pathlib import Path

import sqlalchemy as sa

from recordings_service.devtools.simulation import RECORDED_CALL
from recordings_service.extensions import db
from recordings_service.work.worker import Worker

# The API's documented example (docs/api.md), as the lookup answers it.
CONTRACT_BODY = {
    "recording_id": "conf_1234567890",
    "status": "completed",
    "duration": 342,
    "recording_url": "https://voice.africastalking.com/recording/abc123def456",
    "created_at": "2024-01-15T10:00:00.000Z",
    "processed_at": "2024-01-15T10:05:42.000Z",
    "failure_reason": None,
    "audio_url": None,  # as the spec gives it, without audio stored here
    "audio_removed_at": None,
    "updated_at": "2024-01-15T10:05:42.000Z",
}


def seeded_contract_body(base: str) -> dict:
    """The API's documented example as ``seed-demo`` makes it, looked up at ``base``: its audio is stored here."""
    return {**CONTRACT_BODY, "audio_url": f"{base}/api/v1/voice/recordings/conf_1234567890/audio"}


FIXTURES = Path(__file__).parent / "fixtures" / "africastalking"


def fixture_call(name: str) -> list[dict[str, str]]:
    """The form posts of one recorded AT call (tests/fixtures/africastalking/NAME.jsonl), in order."""
    return [
        json.loads(line) for line in (FIXTURES / f"{name}.jsonl").read_text().splitlines() if line.strip()
    ]


def empty_tables() -> None:
    """Delete every row of every table (in an app context): a fresh database, schema kept."""
    tables = [table.name for table in reversed(db.metadata.sorted_tables)]
    if db.engine.dialect.name == "postgresql":
        db.session.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    else:
        for table in tables:
            db.session.execute(sa.text(f"DELETE FROM {table}"))
    db.session.commit()


def recorded_call(
    media, path: str = "/recording/abc123def456.mp3", file: Path = RECORDED_CALL, content_type="audio/mpeg"
) -> list[dict[str, str]]:
    """The shared recorded call, its recordingUrl a real recording (``file``) that ``media`` (testkit.media)
    serves."""
    url = media.serve_file(path, file, content_type)
    return [
        {**fields, "recordingUrl": url} if "recordingUrl" in fields else fields
        for fields in fixture_call("recorded-call")
    ]


def drain(app) -> int:
    """Run the background jobs due now (as `flask recordings worker --drain` does); how many ran."""
    with app.app_context():
        return Worker(app).drain()
