"""A recording as clients see it: read (one, many, a page), rendered (body and ETag), and cached.

Every way a client sees a recording goes through here: the lookup, the waiting lookup's watcher, the
listing's items and ``recordings show``. Adding a field to the body is one change, in ``schemas.RecordingSchema``.

Reads are single statements outside a transaction (``single_read``; the lookup's, ``KeyedRead``).
Completed recordings are kept rendered in each process for ``COMPLETED_CACHE_SECONDS``: a change to one
(a replay, later a deletion) reaches every process within that bound, and at once in the process that
made it (``forget``).
"""

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from cachetools import TTLCache
from flask import Flask, current_app, has_request_context, request
from sqlalchemy import Row, bindparam, func, literal, select, tuple_
from werkzeug.http import generate_etag

from ..domain.rules import AudioStatus, Status, is_valid_recording_id
from ..persistence.database import single_read
from ..persistence.keyed_read import KeyedRead
from ..persistence.models import BigId, Job, JobKind, Leg, Recording, UTCDateTime
from ..schemas import PagePosition, RecordingSchema

recording_schema = RecordingSchema()

# Where the primary leg's audio is served (web/voice.py routes it).
AUDIO_PATH = "/api/v1/voice/recordings/{recording_id}/audio"


def _body_fields(recording, base_url: str) -> dict:
    """A recording (a model or a row of its table) as the schema dumps it: its columns, and the URLs made
    from them. (A dict: marshmallow reads its keys in half the time it read a proxy's attributes.)"""
    fields = {name: getattr(recording, name) for name in _BODY_COLUMNS}
    if recording.audio_session_id is None or recording.audio_removed_at is not None:
        fields["audio_url"] = None
    else:
        fields["audio_url"] = base_url + AUDIO_PATH.format(recording_id=recording.recording_id)
    return fields


def base_url() -> str:
    """The service's address for absolute URLs: PUBLIC_BASE_URL, else the request's own host."""
    configured = current_app.config["PUBLIC_BASE_URL"]
    if configured:
        return configured
    if has_request_context():
        return request.host_url.rstrip("/")
    return f"http://localhost:{current_app.config['PORT']}"  # development, outside a request (the CLI)


@dataclass(frozen=True)
class Rendered:
    """A recording's lookup body as sent, with its strong ETag (a hash of exactly these bytes)."""

    recording_id: str
    body: bytes
    etag: str
    status: Status


def render(recording: Recording | Row | tuple, base: str | None = None) -> Rendered:
    """Serialise ``recording`` (a model or a row of its table, a Row or a named tuple) as the lookup
    answers it, its URLs under ``base`` (default: ``base_url()``)."""
    dumped = recording_schema.dump(_body_fields(recording, base or base_url()))
    body = json.dumps(dumped, separators=(",", ":")).encode()
    return Rendered(recording.recording_id, body, generate_etag(body), recording.status)


# --- Reading ----------------------------------------------------------------------------------

_recordings = Recording.__table__
# What a body is made from, and no more: the schema's fields that are columns, and what ``_body_fields``
# makes the audio URL from. Each column read is a value to fetch and convert, on the lookup, the
# request clients make most.
_BODY_COLUMNS = [column.name for column in _recordings.c if column.name in recording_schema.fields]
_BODY = [_recordings.c[name] for name in _BODY_COLUMNS] + [_recordings.c.audio_session_id]
# A deleted recording is, to clients, no recording at all.
_NOT_DELETED = _recordings.c.deleted_at.is_(None)
# The lookup's own statement, run the short way (``KeyedRead``).
BY_ID = KeyedRead(select(*_BODY).where(_recordings.c.recording_id == bindparam("recording_id"), _NOT_DELETED))
_BY_IDS = select(*_BODY).where(
    _recordings.c.recording_id.in_(bindparam("recording_ids", expanding=True)), _NOT_DELETED
)


def read(recording_id: str, waiting: bool = False) -> Rendered | None:
    """Return the lookup body of ``recording_id``, or None when there is no such recording.
    ``waiting``: for a request that asks to wait (``single_read``)."""
    if not is_valid_recording_id(recording_id):
        return None
    cache = _cache()
    base = base_url()
    key = (base, recording_id)
    rendered = cache.get(key)
    if rendered is not None:
        return rendered
    row = BY_ID.first({"recording_id": recording_id}, waiting)
    if row is None:
        return None
    rendered = render(row, base)
    cache.keep(key, rendered)
    return rendered


def read_many(recording_ids: Iterable[str], base: str | None = None) -> dict[str, Rendered]:
    """Return the lookup bodies of those of ``recording_ids`` that exist, by id, in one statement (their
    URLs under ``base``, as ``render``)."""
    ids = [recording_id for recording_id in set(recording_ids) if is_valid_recording_id(recording_id)]
    if not ids:
        return {}
    with single_read() as connection:
        rows = connection.execute(_BY_IDS, {"recording_ids": ids}).all()
    return {row.recording_id: render(row, base) for row in rows}


def page(
    status: Status | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    limit: int = 50,
    after: PagePosition | None = None,
) -> tuple[list[dict], PagePosition | None]:
    """Return a page of recordings, newest first, and where the next page starts (None at the end).

    Pages are found by keyset (the last row's creation time and key, both in one index), so a page
    deep in the list costs what the first does. Each item dumps with ``RecordingSchema``.
    """
    query = (
        select(_recordings.c.id, *_BODY)
        .where(_NOT_DELETED)
        .order_by(_recordings.c.created_at.desc(), _recordings.c.id.desc())
        .limit(limit + 1)
    )
    if status is not None:
        query = query.where(_recordings.c.status == status)
    if created_after is not None:
        query = query.where(_recordings.c.created_at > created_after)
    if created_before is not None:
        query = query.where(_recordings.c.created_at < created_before)
    if after is not None:
        position = tuple_(literal(after.created_at, UTCDateTime), literal(after.pk, BigId))
        query = query.where(tuple_(_recordings.c.created_at, _recordings.c.id) < position)
    with single_read() as connection:
        rows = connection.execute(query).all()
    base = base_url()
    items = [_body_fields(row, base) for row in rows[:limit]]
    if len(rows) <= limit:
        return items, None
    last = rows[limit - 1]
    return items, PagePosition(last.created_at, last.id)


# --- The cache of completed recordings --------------------------------------------------------


class CompletedCache:
    """Rendered completed recordings, at most ``size``, each kept ``seconds`` after it was read."""

    def __init__(self, size: int, seconds: float):
        # Keyed by (base URL, recording id): the body holds absolute URLs.
        self._entries: TTLCache[tuple[str, str], Rendered] = TTLCache(maxsize=size, ttl=seconds)
        self._lock = threading.Lock()  # cachetools caches are not thread-safe

    def get(self, key: tuple[str, str]) -> Rendered | None:
        with self._lock:
            return self._entries.get(key)

    def keep(self, key: tuple[str, str], rendered: Rendered) -> None:
        if rendered.status is Status.COMPLETED and self._entries.maxsize:
            with self._lock:
                self._entries[key] = rendered

    def forget(self, recording_ids: Iterable[str]) -> None:
        gone = set(recording_ids)
        with self._lock:
            for key in [key for key in self._entries if key[1] in gone]:
                self._entries.pop(key, None)


def init_app(app: Flask) -> None:
    app.extensions["completed_recordings"] = CompletedCache(
        app.config["COMPLETED_CACHE_SIZE"], app.config["COMPLETED_CACHE_SECONDS"]
    )


def _cache() -> CompletedCache:
    return current_app.extensions["completed_recordings"]


def forget(recording_ids: Iterable[str]) -> None:
    """Say that ``recording_ids`` changed although they may be completed: the one way such a change
    reaches the cache. This process serves the new body at once; others within COMPLETED_CACHE_SECONDS."""
    _cache().forget(recording_ids)


# --- Legs and their audio ---------------------------------------------------------------------


_sessions = Leg.__table__
_jobs = Job.__table__
# Each leg with its latest fetch job (attempts, next attempt, last error).
_LATEST_FETCH = (
    select(_jobs.c.leg_pk, func.max(_jobs.c.id).label("job_pk"))
    .where(_jobs.c.kind == JobKind.FETCH_AUDIO)
    .group_by(_jobs.c.leg_pk)
    .subquery()
)
_LEGS = (
    select(
        _recordings.c.recording_id,
        _recordings.c.audio_session_id,
        _sessions,
        _jobs.c.attempts,
        _jobs.c.run_at,
        _jobs.c.state.label("job_state"),
        _jobs.c.last_error,
    )
    .select_from(_recordings)
    .join(_sessions, _sessions.c.recording_pk == _recordings.c.id)
    .outerjoin(_LATEST_FETCH, _LATEST_FETCH.c.leg_pk == _sessions.c.id)
    .outerjoin(_jobs, _jobs.c.id == _LATEST_FETCH.c.job_pk)
    .where(_recordings.c.recording_id == bindparam("recording_id"))
    .order_by(_sessions.c.id)
)
LEG_AUDIO_PATH = "/api/v1/voice/recordings/{recording_id}/legs/{session_id}/audio"


def legs(recording_id: str) -> list[dict] | None:
    """The legs of ``recording_id`` as the API shows them, or None when there is no such recording."""
    if read(recording_id) is None:
        return None
    with single_read() as connection:
        rows = connection.execute(_LEGS, {"recording_id": recording_id}).all()
    base = base_url()
    return [_leg(row, base) for row in rows]


def _leg(row: Row, base: str) -> dict:
    audio = None
    if row.audio_status is not None:
        stored = row.audio_status is AudioStatus.STORED and row.audio_removed_at is None
        pending = row.audio_status is AudioStatus.PENDING and row.job_state == "pending"
        audio = {
            "status": row.audio_status,
            "url": base + LEG_AUDIO_PATH.format(recording_id=row.recording_id, session_id=row.session_id)
            if stored
            else None,
            "content_type": row.audio_content_type,
            "size": row.audio_size,
            "sha256": row.audio_sha256,
            "duration": row.audio_duration,
            "stored_at": row.audio_stored_at,
            "removed_at": row.audio_removed_at,
            "failure": row.audio_failure,
            "attempts": row.attempts or 0,
            "next_attempt_at": row.run_at if pending else None,
            "last_error": row.audio_error,
        }
    return {
        "session_id": row.session_id,
        "number": row.number,
        "primary": row.session_id == row.audio_session_id,
        "ended": row.ended,
        "duration": row.duration,
        "recording_url": row.recording_url,
        "failure_reason": row.failure_reason,
        "audio": audio,
    }


@dataclass(frozen=True)
class AudioFile:
    """Stored audio a client may download."""

    key: str
    size: int
    sha256: str
    content_type: str
    stored_at: datetime


_AUDIO = (
    select(
        _sessions.c.audio_key,
        _sessions.c.audio_size,
        _sessions.c.audio_sha256,
        _sessions.c.audio_content_type,
        _sessions.c.audio_stored_at,
    )
    .join(_recordings, _recordings.c.id == _sessions.c.recording_pk)
    .where(
        _recordings.c.recording_id == bindparam("recording_id"),
        _sessions.c.session_id == bindparam("session_id"),
        _sessions.c.audio_status == AudioStatus.STORED,
        _sessions.c.audio_removed_at.is_(None),
        _NOT_DELETED,
    )
)


def audio_file(recording_id: str, session_id: str | None = None) -> AudioFile | None:
    """The stored audio of a recording's leg ``session_id`` (by default its primary leg's), or None."""
    if not is_valid_recording_id(recording_id) or (
        session_id is not None and not is_valid_recording_id(session_id)
    ):
        return None
    if session_id is None:
        with single_read() as connection:
            session_id = connection.execute(
                select(_recordings.c.audio_session_id).where(_recordings.c.recording_id == recording_id)
            ).scalar_one_or_none()
        if session_id is None:
            return None
    with single_read() as connection:
        row = connection.execute(_AUDIO, {"recording_id": recording_id, "session_id": session_id}).first()
    return None if row is None else AudioFile(*row)
