"""The worker: threads that claim due jobs and run them, a heartbeat that renews their leases, and the
periodic tasks (the sweep of recordings whose URL never came, retention, the removal of deleted
recordings' audio that the store refused).

Each kind of job (work/kinds.py) has a lane of threads of its own (fetches WORKER_CONCURRENCY,
deliveries WEBHOOK_CONCURRENCY), so that a slow or dead webhook receiver never delays the recordings.
Every outcome is settled in one place (``settle``). Every loop survives every exception, logged and
backed off; a process that cannot work (a loop failing for WORK_FAILING_SECONDS, a thread dead) exits 1
for its supervisor to restart it. Any number of workers, in any number of processes and machines, share
one database.

On SIGTERM (or Ctrl-C) it takes no new job, lets the jobs in hand finish for WORK_STOP_SECONDS, gives
back the leases of any still running (another worker takes them at once) and exits.
"""

import logging
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from datetime import timedelta

from flask import Flask

from ..domain.clock import utcnow
from ..extensions import db
from ..persistence import liveness, queue
from ..persistence.database import write_transaction
from ..recordings.deletion import remove_deleted_audio, remove_expired_audio
from ..recordings.lifecycle import sweep
from .jobs import Done, GiveUp, Kind, Outcome, Retry
from .kinds import KINDS

log = logging.getLogger(__name__)


def settle(kind: Kind, claim: queue.Claim, outcome: Outcome) -> bool:
    """Apply ``outcome`` to the claimed job and, through its kind, to what the job is about, in one
    transaction; False when the claim had lost its lease (the kind's ``unheld`` then decides)."""
    now = utcnow()
    with write_transaction() as session:
        kind.lock(claim)
        job = queue.held(session, claim)
        if job is None:
            log.warning("job %s (%s) was no longer ours to settle", claim.pk, claim.kind)
            then = kind.unheld(claim, outcome)
        else:
            match outcome:
                case Done():
                    queue.finish(job, now)
                case Retry(at=at, reason=reason):
                    queue.retry(job, at, reason)
                case GiveUp(reason=reason):
                    queue.fail(job, now, reason)
            then = kind.record(job, outcome)
    if then is not None:
        then()
    return job is not None


class Worker:
    """Runs jobs of ``kinds``, each kind in a lane of threads of its own, until told to stop."""

    def __init__(self, app: Flask, kinds: Iterable[Kind] = KINDS):
        self.app = app
        self.lease = timedelta(seconds=app.config["WORK_LEASE_SECONDS"])
        self.kinds = {kind.name: kind for kind in kinds}
        self.name, self.started_at = queue.new_token(), utcnow()
        self.stopping = threading.Event()
        self._held: dict[int, queue.Claim] = {}
        self._held_lock = threading.Lock()
        # Each loop that is failing: since when (time.monotonic()), until it gets through once.
        self._failing: dict[str, float] = {}

    def stop(self, *_) -> None:
        if not self.stopping.is_set():
            log.info("stopping: no new jobs; finishing the ones in hand")
        self.stopping.set()

    def run(self) -> int:
        """Work until SIGTERM or SIGINT (then 0), or until it cannot work (then 1): a loop has kept
        failing for WORK_FAILING_SECONDS, or a thread has died."""
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        config = self.app.config
        # Daemon threads: a job stuck past WORK_STOP_SECONDS (a download that hangs) has its lease given
        # back below and must not keep the process from exiting.
        jobs = [
            threading.Thread(target=self._take_jobs, args=(kind,), name=f"{kind.name}-{n}", daemon=True)
            for kind in self.kinds.values()
            for n in range(config[kind.threads])
        ]
        periodic = [
            threading.Thread(target=self._heartbeat, name="leases", daemon=True),
            threading.Thread(
                target=self._every,
                args=(config["SWEEP_INTERVAL_SECONDS"], self._sweep),
                name="sweep",
                daemon=True,
            ),
            threading.Thread(
                target=self._every,
                args=(config["RETENTION_INTERVAL_SECONDS"], self._remove_deleted),
                name="removal",
                daemon=True,
            ),
        ]
        if config["AUDIO_RETENTION_DAYS"] is not None:
            periodic.append(
                threading.Thread(
                    target=self._every,
                    args=(config["RETENTION_INTERVAL_SECONDS"], self._retain),
                    name="retention",
                    daemon=True,
                )
            )
        for loop in jobs + periodic:
            loop.start()
        log.info(
            "worker started: %s",
            ", ".join(f"{config[kind.threads]} threads for {kind.name}" for kind in self.kinds.values()),
        )
        code = 0
        while not self.stopping.wait(1):
            if reason := self._cannot_work(jobs + periodic):
                log.critical("exiting for a restart: %s", reason)
                code = 1
                self.stopping.set()
        deadline = time.monotonic() + config["WORK_STOP_SECONDS"]
        for loop in jobs:
            loop.join(timeout=max(deadline - time.monotonic(), 0))
        with self._held_lock:
            unfinished = list(self._held.values())
        try:
            with self.app.app_context():
                if unfinished:
                    queue.release(unfinished)
                    log.warning(
                        "gave back %d unfinished jobs: %s", len(unfinished), [c.pk for c in unfinished]
                    )
                liveness.gone(self.name)
        except Exception:
            log.exception(
                "could not give back %d jobs (their leases will run out) nor remove this worker's row",
                len(unfinished),
            )
            code = 1
        log.info("worker stopped")
        return code

    def _cannot_work(self, threads: list[threading.Thread]) -> str | None:
        """Why this process cannot work, if it cannot: a thread died, or a loop has kept failing."""
        if dead := [thread.name for thread in threads if not thread.is_alive()]:
            return f"threads died: {', '.join(dead)}"
        bound = self.app.config["WORK_FAILING_SECONDS"]
        now = time.monotonic()
        failing = [name for name, since in list(self._failing.items()) if now - since > bound]
        if failing:
            return f"failing for over {bound:.0f} s: {', '.join(sorted(failing))}"
        return None

    def drain(self) -> int:
        """Run the jobs due now, one after another in this thread, each once; return how many ran.

        (``flask recordings worker --drain``: for a cron job, or to see one job through.)
        """
        ran: set[int] = set()
        while (claim := queue.claim(self.kinds, self.lease)) is not None:
            if claim.pk in ran:  # due again already (a retry with no delay): not in this round
                queue.release([claim])
                break
            self._run(claim)
            ran.add(claim.pk)
        return len(ran)

    def _run(self, claim: queue.Claim) -> None:
        """Run one attempt of ``claim``'s job and settle its outcome; a handler that raises has failed
        the attempt, by its kind's rule."""
        kind = self.kinds[claim.kind]
        with self._held_lock:
            self._held[claim.pk] = claim
        try:
            try:
                outcome = kind.run(claim)
            except Exception as error:
                log.exception("job %s (%s) raised", claim.pk, claim.kind)
                db.session.remove()  # whatever the handler left open
                outcome = kind.failed(claim, f"{type(error).__name__}: {error}")
            settle(kind, claim, outcome)
        finally:
            with self._held_lock:
                self._held.pop(claim.pk, None)

    def _survive(self, name: str, failures: int, backoff: float, what: str) -> int:
        """Handle an exception in loop ``name`` and return the count of failures in a row.

        It logs the exception (with its traceback the first time in a row), starts a fresh session and
        waits, longer with each of the ``failures`` in a row, up to ``backoff`` seconds.
        """
        if failures == 0:
            log.exception("%s: %s; trying again", name, what)
        else:
            log.warning("%s: %s again (%d in a row): %s", name, what, failures + 1, sys.exc_info()[1])
        db.session.remove()
        self._failing.setdefault(name, time.monotonic())
        wait = min(backoff, self.app.config["WORK_POLL_SECONDS"] * 2 ** min(failures, 10))
        self.stopping.wait(wait * random.uniform(0.5, 1))
        return failures + 1

    def _got_through(self, name: str) -> int:
        self._failing.pop(name, None)
        return 0

    def _take_jobs(self, kind: Kind) -> None:
        poll = self.app.config["WORK_POLL_SECONDS"]
        name = threading.current_thread().name
        failures = 0
        with self.app.app_context():
            while not self.stopping.is_set():
                try:
                    claim = queue.claim([kind.name], self.lease)
                    if claim is None:
                        failures = self._got_through(name)
                        self.stopping.wait(poll * random.uniform(0.5, 1.5))
                        continue
                    self._run(claim)
                    failures = self._got_through(name)
                except Exception:
                    failures = self._survive(name, failures, poll * 5, "taking or settling a job failed")

    def _heartbeat(self) -> None:
        """Renew the leases of the jobs in hand, so that a long download is not taken by another worker,
        and write this process's heartbeat row."""
        every = self.lease.total_seconds() / 3
        failures = 0
        with self.app.app_context():
            while not self.stopping.is_set():
                with self._held_lock:
                    claims = list(self._held.values())
                try:
                    if claims:
                        queue.heartbeat(claims, self.lease)
                    liveness.beat(self.name, self.started_at, len(claims))
                    failures = self._got_through("leases")
                except Exception:
                    failures = self._survive("leases", failures, 0, f"renewing {len(claims)} leases failed")
                self.stopping.wait(every)

    def _every(self, seconds: float, task: Callable[[], None]) -> None:
        with self.app.app_context():
            # Spread out, so that several workers started together do not sweep together.
            while not self.stopping.wait(seconds * random.uniform(0.5, 1.0)):
                try:
                    task()
                except Exception:
                    log.exception("%s failed; trying again later", task.__name__)
                    db.session.remove()

    def _sweep(self) -> None:
        sweep(timedelta(seconds=self.app.config["SWEEP_AFTER_SECONDS"]))

    def _retain(self) -> None:
        days = self.app.config["AUDIO_RETENTION_DAYS"]
        remove_expired_audio(self.app.extensions["audio_storage"], timedelta(days=days))

    def _remove_deleted(self) -> None:
        remove_deleted_audio(self.app.extensions["audio_storage"])
