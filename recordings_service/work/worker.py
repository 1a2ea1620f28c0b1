"""The worker: threads that claim due jobs and run them, a heartbeat that renews their leases, and the
periodic sweep. Any number of workers, in any number of processes and machines, share one database.

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

from ..persistence import queue
from ..persistence.models import JobKind
from ..recordings.lifecycle import sweep
from . import audio

log = logging.getLogger(__name__)

Handler = Callable[[queue.Claim], None]


class Worker:
    """Runs jobs with ``concurrency`` threads until told to stop."""

    def __init__(self, app: Flask, concurrency: int):
        self.app = app
        self.concurrency = concurrency
        self.lease = timedelta(seconds=app.config["WORK_LEASE_SECONDS"])
        self.handlers: dict[str, Handler] = {JobKind.FETCH_AUDIO: audio.fetch_audio}
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
        loops = [
            threading.Thread(target=self._take_jobs, name=f"jobs-{n}", daemon=True)
            for n in range(self.concurrency)
        ]
        loops.append(threading.Thread(target=self._heartbeat, name="leases", daemon=True))
        loops.append(
            threading.Thread(
                target=self._every,
                args=(config["SWEEP_INTERVAL_SECONDS"], self._sweep),
                name="sweep",
                daemon=True,
            )
        )
        for loop in loops:
            loop.start()
        log.info("worker started: %d job threads, kinds %s", self.concurrency, ", ".join(self.handlers))
        while not self.stopping.wait(1):
            pass
        deadline = time.monotonic() + config["WORK_STOP_SECONDS"]
        for loop in loops[: self.concurrency]:
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

    def _take_jobs(self) -> None:
        poll = self.app.config["WORK_POLL_SECONDS"]
        with self.app.app_context():
            while not self.stopping.is_set():
                try:
                    claim = queue.claim(self.handlers, self.lease)
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
                except SQLAlchemyError:
                    log.exception("%s failed; trying again later", task.__name__)

    def _sweep(self) -> None:
        sweep(timedelta(seconds=self.app.config["SWEEP_AFTER_SECONDS"]))
