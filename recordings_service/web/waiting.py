"""Waiting instead of polling (``Prefer: wait=N``): requests held until their recording changes.

One watcher thread per worker process looks at the recordings that requests wait on, every
``interval`` seconds in one query, and wakes each waiter whose recording's body (ETag) is no longer
the one it has. Waiting requests hold no database connection; the database stays the only truth,
so any number of processes and hosts may wait on the same recordings.

A worker holds at most ``WAIT_MAX_HELD`` requests at once; beyond that a request is answered at once,
as RFC 7240 lets a server do with a preference, so waits never take what other requests need.
"""

import logging
import threading
import time
from dataclasses import dataclass, field

from flask import Flask
from sqlalchemy.exc import SQLAlchemyError

from ..exceptions import NoRoomToWait, WaitedOnGone
from ..recordings import public
from ..recordings.public import Rendered

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Waiter:
    recording_id: str
    etag: str
    base: str  # the service's address as the request reached it: the body's URLs are under it
    woken: threading.Event = field(default_factory=threading.Event)
    rendered: Rendered | None = None
    gone: bool = False


def init_app(app: Flask) -> None:
    app.extensions["recording_watcher"] = ChangeWatcher(
        app, app.config["WAIT_POLL_INTERVAL"], app.config["WAIT_MAX_HELD"]
    )


class ChangeWatcher:
    """Wakes requests waiting on recordings when their bodies change."""

    def __init__(self, app: Flask, interval: float, most: int):
        self._app = app
        self._interval = interval
        self._most = most
        self._waiters: set[_Waiter] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def wait_for_change(self, recording_id: str, etag: str, timeout: float) -> Rendered | None:
        """Return the recording's new rendering once its ETag differs from ``etag``, or None after
        ``timeout`` seconds without a change. Raises ``NoRoomToWait`` when the worker may hold no more, and
        ``WaitedOnGone`` when the recording is no more."""
        waiter = _Waiter(recording_id, etag, public.base_url())
        with self._lock:
            if len(self._waiters) >= self._most:
                raise NoRoomToWait
            self._waiters.add(waiter)
            # Started by the first waiter, so a thread never crosses gunicorn's fork of the workers.
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._watch, name="recording-watcher", daemon=True)
                self._thread.start()
        try:
            waiter.woken.wait(timeout)
        finally:
            with self._lock:
                self._waiters.discard(waiter)
        if waiter.gone:
            raise WaitedOnGone(recording_id)
        return waiter.rendered

    def _watch(self) -> None:
        while True:
            with self._lock:
                waiters = list(self._waiters)
                if not waiters:
                    self._thread = None
                    return
            try:
                self._check(waiters)
            except SQLAlchemyError:
                # Waiters keep waiting (at worst until their timeout); the next round tries again.
                log.exception("checking %d waited-on recordings failed", len(waiters))
            time.sleep(self._interval)

    def _check(self, waiters: list[_Waiter]) -> None:
        # One query for each address the service was reached at (almost always one): the bodies hold
        # absolute URLs, which must be the ones each waiting client's own lookup shows.
        by_base: dict[str, list[_Waiter]] = {}
        for waiter in waiters:
            by_base.setdefault(waiter.base, []).append(waiter)
        with self._app.app_context():
            current = {
                base: public.read_many({waiter.recording_id for waiter in group}, base)
                for base, group in by_base.items()
            }
        for waiter in waiters:
            rendered = current[waiter.base].get(waiter.recording_id)
            if rendered is None:
                waiter.gone = True
                waiter.woken.set()
            elif rendered.etag != waiter.etag:
                waiter.rendered = rendered
                waiter.woken.set()
