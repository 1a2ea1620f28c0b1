"""A kind of job of the tests' own, built and registered as the service's kinds are (work/jobs.py).

Its job is done on the attempt its ``target_url`` names; attempts before that fail, the odd ones by
raising. Its rule retries at once, and gives up once three attempts have failed.
"""

from sqlalchemy import select

from recordings_service.domain.clock import utcnow
from recordings_service.persistence.database import single_read
from recordings_service.persistence.models import Job
from recordings_service.persistence.queue import Claim
from recordings_service.work.jobs import Done, GiveUp, Kind, Outcome, Retry


def run(claim: Claim) -> Outcome:
    """Run one attempt: done on the attempt the job names."""
    with single_read() as connection:
        needed = int(connection.execute(select(Job.target_url).where(Job.pk == claim.pk)).scalar_one())
    if claim.attempts >= needed:
        return Done(claim.attempts)
    if claim.attempts % 2:
        raise RuntimeError(f"attempt {claim.attempts} of {needed}")
    return failed(claim, f"attempt {claim.attempts} of {needed}")


def failed(claim: Claim, reason: str) -> Outcome:
    """Again at once, three attempts in all."""
    if claim.attempts >= 3:
        return GiveUp(reason, claim.attempts)
    return Retry(utcnow(), reason, claim.attempts)


def record(job: Job, outcome: Outcome) -> None:
    """Keep the attempt's number, where deliveries keep the endpoint's answer."""
    job.last_status = outcome.detail


KIND = Kind("tally", run, failed, threads="TALLY_CONCURRENCY", record=record)
