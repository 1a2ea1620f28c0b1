"""What a kind of job provides: a handler that runs one attempt and returns its outcome.

The outcome is done, retry at a time, or give up. The worker settles every outcome the same way
(work/worker.py).

A kind is one module that builds a ``Kind``, registered with one line in ``KINDS`` (work/kinds.py).
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..persistence.models import Job
from ..persistence.queue import Claim


@dataclass(frozen=True)
class Done:
    """The job's work is done. ``detail``: what the kind's records keep of it."""

    detail: Any = None


@dataclass(frozen=True)
class Retry:
    """The attempt failed for ``reason``; the job is due again at ``at``."""

    at: datetime
    reason: str
    detail: Any = None


@dataclass(frozen=True)
class GiveUp:
    """The attempt failed for ``reason``, and the job will not be tried again."""

    reason: str
    detail: Any = None


Outcome = Done | Retry | GiveUp


def _nothing(*_) -> None:
    return None


@dataclass(frozen=True)
class Kind:
    """A kind of job, and what the worker needs to run and settle it.

    ``run`` makes one attempt. ``failed`` is the kind's rule for a failed attempt (``Retry`` or
    ``GiveUp``); the worker asks it when ``run`` raises, the exception as the reason. ``threads`` names
    the setting of its lane's concurrency. In the settling transaction ``lock`` locks the rows the
    outcome changes before the job's own (the order every writer keeps), and once the job is known to
    be still held, ``record`` applies the outcome to them; it may return what to do once committed.
    When the job is no longer held (cancelled, or taken by another worker), ``unheld`` decides instead
    what becomes of the attempt's work, and may return what to do once committed as well.
    """

    name: str
    run: Callable[[Claim], Outcome]
    failed: Callable[[Claim, str], Outcome]
    threads: str
    lock: Callable[[Claim], None] = _nothing
    record: Callable[[Job, Outcome], Callable[[], None] | None] = _nothing
    unheld: Callable[[Claim, Outcome], Callable[[], None] | None] = _nothing
