"""Each worker process's heartbeat (``models.WorkerProcess``): written by the worker's lease heartbeat,
read by ``recordings worker --check``."""

from datetime import datetime, timedelta

from sqlalchemy import delete, select

from ..domain.clock import utcnow
from .database import single_read, write_transaction
from .models import WorkerProcess

# A worker's row left by a process that died (no clean stop) is removed after this.
FORGOTTEN_AFTER = timedelta(days=1)


def beat(name: str, started_at: datetime, jobs_in_hand: int) -> None:
    """Write worker ``name``'s heartbeat: alive now, with ``jobs_in_hand``."""
    now = utcnow()
    with write_transaction() as session:
        row = session.get(WorkerProcess, name)
        if row is None:
            session.add(
                WorkerProcess(name=name, started_at=started_at, beat_at=now, jobs_in_hand=jobs_in_hand)
            )
        else:
            row.beat_at, row.jobs_in_hand = now, jobs_in_hand
        session.execute(delete(WorkerProcess).where(WorkerProcess.beat_at < now - FORGOTTEN_AFTER))


def gone(name: str) -> None:
    """Remove worker ``name``'s row: it stopped."""
    with write_transaction() as session:
        session.execute(delete(WorkerProcess).where(WorkerProcess.name == name))


def workers() -> list:
    """Every worker's last heartbeat, the latest first."""
    query = select(
        WorkerProcess.name, WorkerProcess.started_at, WorkerProcess.beat_at, WorkerProcess.jobs_in_hand
    ).order_by(WorkerProcess.beat_at.desc())
    with single_read() as connection:
        return connection.execute(query).all()
