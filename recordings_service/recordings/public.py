"""A recording as clients see it: read (one, many, a page), rendered (body and ETag), and cached.

Every way a client sees a recording goes through here: the lookup, the waiting lookup's watcher, the
listing's items and ``recordings show``. Adding a field to the body is one change, in ``RecordingSchema``.

Reads are single statements outside a transaction (``single_read``). Completed recordings are kept
rendered in each process for ``COMPLETED_CACHE_SECONDS``: a change to one (a replay, later a deletion)
reaches every process within that bound, and at once in the process that made it (``forget``).
"""

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import marshmallow as ma
from cachetools import TTLCache
from flask import Flask, current_app
from sqlalchemy import Row, bindparam, literal, select, tuple_
from werkzeug.http import generate_etag

from ..domain.recordings import Status, is_valid_recording_id
from ..fields import Timestamp
from ..persistence.database import single_read
from ..persistence.models import BigId, Recording, UTCDateTime


class RecordingSchema(ma.Schema):
    """A recording as clients see it (the lookup contract)."""

    recording_id = ma.fields.String(required=True, metadata={"example": "conf_1234567890"})
    status = ma.fields.Enum(Status, by_value=True, required=True, metadata={"example": "completed"})
    duration = ma.fields.Integer(
        required=True, allow_none=True, metadata={"description": "Whole seconds; null until known"}
    )
    recording_url = ma.fields.String(required=True, allow_none=True)
    created_at = Timestamp(required=True, metadata={"example": "2024-01-15T10:00:00.000Z"})
    processed_at = Timestamp(required=True, allow_none=True, metadata={"example": "2024-01-15T10:05:42.000Z"})
    failure_reason = ma.fields.String(
        required=True, allow_none=True, metadata={"description": "Null unless failed"}
    )


recording_schema = RecordingSchema()


@dataclass(frozen=True)
class Rendered:
    """A recording's lookup body as sent, with its strong ETag (a hash of exactly these bytes)."""

    recording_id: str
    body: bytes
    etag: str
    status: Status


def render(recording: Recording | Row) -> Rendered:
    """Serialise ``recording`` (a model or a row of its table) as the lookup answers it."""
    body = json.dumps(recording_schema.dump(recording), separators=(",", ":")).encode()
    return Rendered(recording.recording_id, body, generate_etag(body), recording.status)


# --- Reading ----------------------------------------------------------------------------------

_recordings = Recording.__table__
_BY_ID = select(_recordings).where(_recordings.c.recording_id == bindparam("recording_id"))
_BY_IDS = select(_recordings).where(
    _recordings.c.recording_id.in_(bindparam("recording_ids", expanding=True))
)


def read(recording_id: str) -> Rendered | None:
    """Return the lookup body of ``recording_id``, or None when there is no such recording."""
    if not is_valid_recording_id(recording_id):
        return None
    cache = _cache()
    rendered = cache.get(recording_id)
    if rendered is not None:
        return rendered
    with single_read() as connection:
        row = connection.execute(_BY_ID, {"recording_id": recording_id}).first()
    if row is None:
        return None
    rendered = render(row)
    cache.keep(recording_id, rendered)
    return rendered


def read_many(recording_ids: Iterable[str]) -> dict[str, Rendered]:
    """Return the lookup bodies of those of ``recording_ids`` that exist, by id, in one statement."""
    ids = [recording_id for recording_id in set(recording_ids) if is_valid_recording_id(recording_id)]
    if not ids:
        return {}
    with single_read() as connection:
        rows = connection.execute(_BY_IDS, {"recording_ids": ids}).all()
    return {row.recording_id: render(row) for row in rows}


@dataclass(frozen=True)
class PagePosition:
    """Where a page of the newest-first listing ended: the last row's creation time and key."""

    created_at: datetime
    pk: int


def page(
    status: Status | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    limit: int = 50,
    after: PagePosition | None = None,
) -> tuple[list[Row], PagePosition | None]:
    """Return a page of recordings, newest first, and where the next page starts (None at the end).

    Pages are found by keyset (the last row's creation time and key, both in one index), so a page
    deep in the list costs what the first does. Each row dumps with ``RecordingSchema``.
    """
    query = (
        select(_recordings)
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
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], PagePosition(last.created_at, last.id)


# --- The cache of completed recordings --------------------------------------------------------


class CompletedCache:
    """Rendered completed recordings, at most ``size``, each kept ``seconds`` after it was read."""

    def __init__(self, size: int, seconds: float):
        self._entries: TTLCache[str, Rendered] = TTLCache(maxsize=size, ttl=seconds)
        self._lock = threading.Lock()  # cachetools caches are not thread-safe

    def get(self, recording_id: str) -> Rendered | None:
        with self._lock:
            return self._entries.get(recording_id)

    def keep(self, recording_id: str, rendered: Rendered) -> None:
        if rendered.status is Status.COMPLETED and self._entries.maxsize:
            with self._lock:
                self._entries[recording_id] = rendered

    def forget(self, recording_ids: Iterable[str]) -> None:
        with self._lock:
            for recording_id in recording_ids:
                self._entries.pop(recording_id, None)


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
