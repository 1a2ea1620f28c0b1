"""The lookup's hot path, the request clients make most.

A completed recording never changes again (``domain.advance``), so each process keeps the rendered
body of the completed ones it has served: answering them again needs no database. Nothing else is
kept (a failed recording may still complete), so the database stays the only truth and any number of
processes agree. Other recordings are read with one prepared Core query: no ORM object, no Session.
"""

import threading

from cachetools import LRUCache
from sqlalchemy import bindparam, select

from .database import single_read
from .domain import Status, is_valid_recording_id
from .extensions import db
from .models import Recording
from .schemas import Rendered, recording_schema, render_recording

_recordings = Recording.__table__
# The columns the body shows, and no more: each one costs the driver and the row processing.
_BY_ID = select(*(_recordings.c[name] for name in recording_schema.fields)).where(
    _recordings.c.recording_id == bindparam("recording_id")
)


class CompletedRecordings:
    """Rendered completed recordings, the ``size`` most recently asked for."""

    def __init__(self, size: int):
        self._cache: LRUCache[str, Rendered] = LRUCache(maxsize=size)
        self._lock = threading.Lock()  # cachetools caches are not thread-safe; gthread workers are threaded

    def get(self, recording_id: str) -> Rendered | None:
        with self._lock:
            return self._cache.get(recording_id)

    def keep(self, recording_id: str, rendered: Rendered) -> None:
        if rendered.status is Status.COMPLETED:
            with self._lock:
                self._cache[recording_id] = rendered


def render_lookup(recording_id: str, completed: CompletedRecordings) -> Rendered | None:
    """Return the lookup body of ``recording_id``, or None when there is no such recording."""
    if not is_valid_recording_id(recording_id):
        return None
    rendered = completed.get(recording_id)
    if rendered is not None:
        return rendered
    with single_read(db.engine) as connection:
        row = connection.execute(_BY_ID, {"recording_id": recording_id}).first()
    if row is None:
        return None
    rendered = render_recording(row)
    completed.keep(recording_id, rendered)
    return rendered
