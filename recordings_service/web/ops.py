"""The ``ops`` blueprint: health probes and Prometheus metrics, for load balancers and scrapers."""

import logging
import os
from functools import lru_cache

from alembic.script import ScriptDirectory
from flask import Response, current_app
from flask_smorest import abort
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError

from ..domain.rules import Status
from ..persistence import queue
from ..persistence.database import check_writable, single_read
from ..persistence.models import JobState, Recording
from ..schemas import ErrorSchema
from .auth import public
from .blueprints import Blueprint

log = logging.getLogger(__name__)

blp = Blueprint("ops", __name__, description="Health probes and metrics")


@lru_cache(maxsize=4)
def _migration_heads(directory: str) -> frozenset[str]:
    return frozenset(ScriptDirectory(directory).get_heads())


@blp.route("/healthz", methods=["GET"])
@blp.response(200, description="The process is alive")
@public
def healthz():
    """Tell whether the process is alive (it never looks at the database)."""
    return {"status": "ok"}


@blp.route("/readyz", methods=["GET"])
@blp.response(
    200, description="The database answers, takes writes, and its schema is at the migrations' head"
)
@blp.alt_response(
    503, schema=ErrorSchema, description="Not ready: database unreachable, read-only or not migrated"
)
@public
def readyz():
    """Tell whether the service can serve: database reachable and writable, migrations at head."""
    expected = _migration_heads(current_app.extensions["migrate"].directory)
    try:
        with single_read() as connection:
            current = set(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())
    except SQLAlchemyError:
        log.exception("readiness check: database unreachable or not migrated")
        abort(503, message="Database unreachable or not migrated")
    if current != expected:
        abort(
            503,
            message=f"Database at migration {', '.join(sorted(current)) or 'none'}, expected {', '.join(sorted(expected))}",
        )
    try:
        check_writable()
    except SQLAlchemyError:
        log.exception("readiness check: the database does not take writes")
        abort(503, message="Database does not take writes (read-only)")
    return {"status": "ready"}


METRICS_DATABASE_FAILURES = Counter(
    "metrics_database_failures_total", "Scrapes that could not count recordings: the database failed"
)


class FromTheDatabase:
    """What the database holds, counted at each scrape: recordings by status, and the job queue (its
    depth, the wait of its oldest due job, its outcomes), which the workers share through the database.
    Left out of a scrape when the database fails, so that every other metric is still there when it
    matters most."""

    def collect(self):
        try:
            with single_read() as connection:
                query = select(Recording.status, func.count()).group_by(Recording.status)
                counts = dict(connection.execute(query).all())
            depths = queue.depth()
        except SQLAlchemyError:
            log.exception("metrics: reading the database failed")
            METRICS_DATABASE_FAILURES.inc()
            return
        recordings = GaugeMetricFamily("voice_recordings", "Recordings by status", labels=["status"])
        for status in Status:
            recordings.add_metric([status.value], counts.get(status, 0))
        yield recordings
        jobs = GaugeMetricFamily("jobs", "Background jobs by kind and state", labels=["kind", "state"])
        due = GaugeMetricFamily("jobs_due", "Pending jobs due now, waiting for a worker", labels=["kind"])
        oldest = GaugeMetricFamily(
            "jobs_oldest_due_seconds", "How long the longest-waiting due job has waited", labels=["kind"]
        )
        for depth in depths:
            for state in JobState:
                jobs.add_metric([depth.kind, state.value], getattr(depth, state.value))
            due.add_metric([depth.kind], depth.due)
            oldest.add_metric([depth.kind], depth.oldest_due_seconds)
        yield from (jobs, due, oldest)


@blp.route("/metrics", methods=["GET"])
@blp.response(200, description="Prometheus text exposition format")
def metrics():
    """Expose Prometheus metrics: requests, latencies, callbacks by outcome, recordings, the job queue."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        processes = CollectorRegistry()
        MultiProcessCollector(processes)
    else:
        processes = REGISTRY
    recordings = CollectorRegistry(auto_describe=False)
    recordings.register(FromTheDatabase())
    # Counted before the processes' metrics are read, so that this scrape's failure is in it.
    exposition = generate_latest(recordings)
    # content_type, not mimetype: CONTENT_TYPE_LATEST carries its charset already.
    return Response(generate_latest(processes) + exposition, content_type=CONTENT_TYPE_LATEST)
