"""The worker: threads that claim due jobs and run them, a heartbeat that renews their leases, and the
periodic tasks (the sweep of recordings whose URL never came, retention, the removal of deleted
recordings' audio that the store refused).

Fetching recordings and delivering webhooks have threads of their own (WORKER_CONCURRENCY,
WEBHOOK_CONCURRENCY), so that a slow or dead webhook receiver never delays the recordings. Any number of workers, in any number of processes and machines, share one database.

On SIGTERM (or Ctrl-C) it takes no new job, lets the jobs in hand finish for WORK_STOP_SECONDS, gives
back the leases of any still running (another worker takes them at once) and exits.
"""

import logging
import random
import signal
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from flask import Flask
from sqlalchemy.exc import SQLAlchemyError

from ..integrations.storage import StorageError
from ..persistence import queue
from ..persistence.models import JobKind
from ..recordings.deletion import remove_deleted_audio, remove_expired_audio
from ..recordings.lifecycle import sweep
from . import audio, webhooks

log = logging.getLogger(__name__)

Handler = Callable[[queue.Claim], None]


class Worker:
    """Runs jobs with ``concurrency`` threads until told to stop."""

    def __init__(self, app: Flask, concurrency: int):
        self.app = app
        self.lease = timedelta(seconds=app.config["WORK_LEASE_SECONDS"])
        self.handlers: dict[str, Handler] = {
            JobKind.FETCH_AUDIO: audio.fetch_audio,
            JobKind.DELIVER_WEBHOOK: webhooks.deliver_webhook,
        }
        # Each lane: the kinds of job it takes, and its threads.
        self.lanes = [
            ([JobKind.FETCH_AUDIO], concurrency),
            ([JobKind.DELIVER_WEBHOOK], app.config["WEBHOOK_CONCURRENCY"]),
        ]
        self.stopping = threading.Event()
        self._held: dict[int, queue.Claim] = {}
        self._held_lock = threading.Lock()

    def stop(self, *_) -> None:
        if not self.stopping.is_set():
            log.info("stopping: no new jobs; finishing the ones in hand")
        self.stopping.set()

    def run(self) -> None:
        """Work until SIGTERM or SIGINT."""
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        config = self.app.config
        # Daemon threads: a job stuck past WORK_STOP_SECONDS (a download that hangs) has its lease given
        # back below and must not keep the process from exiting.
        jobs = [
            threading.Thread(target=self._take_jobs, args=(kinds,), name=f"{kinds[0]}-{n}", daemon=True)
            for kinds, threads in self.lanes
            for n in range(threads)
        ]
        periodic = [
            threading.Thread(target=self._heartbeat, name="leases", daemon=True),
            threading.Thread(
                target=self._every, args=(config["SWEEP_INTERVAL_SECONDS"], self._sweep), daemon=True
            ),
            threading.Thread(
                target=self._every,
                args=(config["RETENTION_INTERVAL_SECONDS"], self._remove_deleted),
                daemon=True,
            ),
        ]
        if config["AUDIO_RETENTION_DAYS"] is not None:
            periodic.append(
                threading.Thread(
                    target=self._every, args=(config["RETENTION_INTERVAL_SECONDS"], self._retain), daemon=True
                )
            )
        for loop in jobs + periodic:
            loop.start()
        log.info("worker started: %s", ", ".join(f"{n} threads for {kinds[0]}" for kinds, n in self.lanes))
        while not self.stopping.wait(1):
            pass
        deadline = time.monotonic() + config["WORK_STOP_SECONDS"]
        for loop in jobs:
            loop.join(timeout=max(deadline - time.monotonic(), 0))
        with self._held_lock:
            unfinished = list(self._held.values())
        if unfinished:
            with self.app.app_context():
                queue.release(unfinished)
            log.warning("gave back %d unfinished jobs: %s", len(unfinished), [c.pk for c in unfinished])
        log.info("worker stopped")

    def drain(self) -> int:
        """Run the jobs due now, one after another in this thread, each once; return how many ran.

        (``flask recordings worker --drain``: for a cron job, or to see one job through.)
        """
        ran: set[int] = set()
        while (claim := queue.claim(self.handlers, self.lease)) is not None:
            if claim.pk in ran:  # due again already (a retry with no delay): not in this round
                queue.release([claim])
                break
            self._run(claim)
            ran.add(claim.pk)
        return len(ran)

    def _run(self, claim: queue.Claim) -> None:
        with self._held_lock:
            self._held[claim.pk] = claim
        try:
            self.handlers[claim.kind](claim)
        except Exception:
            # A job that raises keeps its lease until it runs out; then it is tried again.
            log.exception("job %s (%s) raised", claim.pk, claim.kind)
        finally:
            with self._held_lock:
                self._held.pop(claim.pk, None)

    def _take_jobs(self, kinds: list[str]) -> None:
        poll = self.app.config["WORK_POLL_SECONDS"]
        with self.app.app_context():
            while not self.stopping.is_set():
                try:
                    claim = queue.claim(kinds, self.lease)
                except SQLAlchemyError:
                    log.exception("claiming a job failed; trying again")
                    self.stopping.wait(poll * 5)
                    continue
                if claim is None:
                    self.stopping.wait(poll * random.uniform(0.5, 1.5))
                    continue
                self._run(claim)

    def _heartbeat(self) -> None:
        """Renew the leases of the jobs in hand, so that a long download is not taken by another worker."""
        with self.app.app_context():
            while not self.stopping.wait(self.lease.total_seconds() / 3):
                with self._held_lock:
                    claims = list(self._held.values())
                if claims:
                    try:
                        queue.renew(claims, self.lease)
                    except SQLAlchemyError:
                        log.exception("renewing %d leases failed", len(claims))

    def _every(self, seconds: float, task: Callable[[], None]) -> None:
        with self.app.app_context():
            # Spread out, so that several workers started together do not sweep together.
            while not self.stopping.wait(seconds * random.uniform(0.5, 1.0)):
                try:
                    task()
                except (SQLAlchemyError, StorageError):
                    log.exception("%s failed; trying again later", task.__name__)

    def _sweep(self) -> None:
        sweep(timedelta(seconds=self.app.config["SWEEP_AFTER_SECONDS"]))

    def _retain(self) -> None:
        days = self.app.config["AUDIO_RETENTION_DAYS"]
        remove_expired_audio(self.app.extensions["audio_storage"], timedelta(days=days))

    def _remove_deleted(self) -> None:
        remove_deleted_audio(self.app.extensions["audio_storage"])
