"""Helpers the tests share."""

import json
from pathlib import Path

import sqlalchemy as sa

from recordings_service.extensions import db

# The contract's own example (shared/seed), as the lookup answers it.
CONTRACT_BODY = {
    "recording_id": "conf_1234567890",
    "status": "completed",
    "duration": 342,
    "recording_url": "https://voice.africastalking.com/recording/abc123def456",
    "created_at": "2024-01-15T10:00:00.000Z",
    "processed_at": "2024-01-15T10:05:42.000Z",
    "failure_reason": None,
}

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
