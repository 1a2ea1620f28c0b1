"""The lean baseline: the same lookup as the service, with one hand-written SQL query through the raw
driver and ``jsonify``. No ORM, no schema, no middleware. Served by gunicorn like the app:

    DATABASE_URL=... gunicorn --config gunicorn.conf.py bench.baseline:app
"""

import os
import sqlite3
import threading
from datetime import UTC

import psycopg
from flask import Flask, jsonify

app = Flask(__name__)
URL = os.environ.get("DATABASE_URL", "sqlite:///instance/recordings.db")
QUERY = (
    "SELECT recording_id, status, duration, recording_url, created_at, processed_at, failure_reason "
    "FROM voice_recordings WHERE recording_id = {}"
)
_local = threading.local()


def _connection():
    if not hasattr(_local, "connection"):
        if URL.startswith("sqlite"):
            _local.connection = sqlite3.connect(URL.split("///", 1)[1], check_same_thread=False)
        else:
            _local.connection = psycopg.connect(URL.replace("+psycopg", ""), autocommit=True)
    return _local.connection


def _timestamp(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite: "2024-01-15 10:00:00.000000", UTC
        return f"{value[:10]}T{value[11:23]}Z"
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


@app.get("/api/v1/voice/recordings/<recording_id>")
def lookup(recording_id):
    placeholder = "?" if URL.startswith("sqlite") else "%s"
    row = _connection().execute(QUERY.format(placeholder), (recording_id,)).fetchone()
    if row is None:
        return jsonify(detail="Recording not found"), 404
    return jsonify(
        recording_id=row[0],
        status=row[1],
        duration=row[2],
        recording_url=row[3],
        created_at=_timestamp(row[4]),
        processed_at=_timestamp(row[5]),
        failure_reason=row[6],
    )
