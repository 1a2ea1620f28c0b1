"""What operators see: request ids, JSON logs, Prometheus metrics, and the health probes.

Metrics work with several gunicorn workers through prometheus_client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``, which gunicorn.conf.py sets); without it they are per process.
"""

import logging
import os
import re
import time
import uuid
from functools import lru_cache

from alembic.script import ScriptDirectory
from flask import Flask, Response, current_app, g, has_request_context, request
from flask_smorest import Blueprint, abort
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from pythonjsonlogger.json import JsonFormatter
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError

from .domain import Status
from .errors import ErrorSchema
from .extensions import db
from .models import Recording

log = logging.getLogger(__name__)

blp = Blueprint("ops", __name__, description="Health probes and metrics")

REQUESTS = Counter("http_requests_total", "HTTP requests answered", ["method", "route", "status"])
LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CALLBACKS = Counter("voice_callbacks_total", "Africa's Talking callbacks by outcome", ["outcome"])

# Honour a caller's request id only if it is short and plain: it goes into every log line.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


# --- Request ids and logs ---------------------------------------------------------------------


def _start_request() -> None:
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
    g.started = time.perf_counter()


def _finish_request(response: Response) -> Response:
    response.headers["X-Request-ID"] = g.request_id
    route = request.url_rule.rule if request.url_rule else "unmatched"
    REQUESTS.labels(request.method, route, str(response.status_code)).inc()
    LATENCY.labels(request.method, route).observe(time.perf_counter() - g.started)
    return response


class RequestIdFilter(logging.Filter):
    """Put the current request's id on every log record (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = g.get("request_id", "-") if has_request_context() else "-"
        return True


class AccessLogRequestId(logging.Filter):
    """Give gunicorn's access lines the request id too, read from the response's X-Request-ID
    (gunicorn passes its log atoms, response headers included, as the record's arguments)."""

    def filter(self, record: logging.LogRecord) -> bool:
        atoms = record.args if isinstance(record.args, dict) else {}
        record.request_id = atoms.get("{x-request-id}o") or "-"
        return True


def json_formatter() -> JsonFormatter:
    return JsonFormatter(
        "{asctime}{levelname}{name}{message}{request_id}",
        style="{",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
    )


class _ServiceHandler(logging.StreamHandler):
    """The handler this module installs, so that making several apps installs it once."""


def configure_logging(log_format: str) -> None:
    """Log to stderr as JSON (``LOG_FORMAT=json``, the default) or text, every line with its request id.

    ``LOG_FORMAT=none`` leaves logging as it is (the tests: pytest captures it).
    """
    if log_format == "none":
        return
    handler = _ServiceHandler()
    handler.addFilter(RequestIdFilter())
    if log_format == "json":
        handler.setFormatter(json_formatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, _ServiceHandler)] + [handler]
    root.setLevel(logging.INFO)


def register_observability(app: Flask) -> None:
    app.before_request(_start_request)
    app.after_request(_finish_request)


# --- Health probes and metrics ----------------------------------------------------------------


@lru_cache(maxsize=4)
def _migration_heads(directory: str) -> frozenset[str]:
    return frozenset(ScriptDirectory(directory).get_heads())


@blp.route("/healthz", methods=["GET"])
@blp.response(200, description="The process is alive")
@blp.doc(security=[])
def healthz():
    """Tell whether the process is alive (it never looks at the database)."""
    return {"status": "ok"}


@blp.route("/readyz", methods=["GET"])
@blp.response(200, description="The database answers and its schema is at the migrations' head")
@blp.alt_response(503, schema=ErrorSchema, description="Not ready: database unreachable or not migrated")
@blp.doc(security=[])
def readyz():
    """Tell whether the service can serve: database reachable, migrations at head."""
    expected = _migration_heads(current_app.extensions["migrate"].directory)
    try:
        current = set(db.session.execute(text("SELECT version_num FROM alembic_version")).scalars())
    except SQLAlchemyError:
        log.exception("readiness check: database unreachable or not migrated")
        abort(503, message="Database unreachable or not migrated")
    if current != expected:
        abort(
            503,
            message=f"Database at migration {', '.join(sorted(current)) or 'none'}, expected {', '.join(sorted(expected))}",
        )
    return {"status": "ready"}


class RecordingsByStatus:
    """``voice_recordings{status}``, counted in the database at each scrape."""

    def collect(self):
        gauge = GaugeMetricFamily("voice_recordings", "Recordings by status", labels=["status"])
        counts = dict(
            db.session.execute(select(Recording.status, func.count()).group_by(Recording.status)).all()
        )
        for status in Status:
            gauge.add_metric([status.value], counts.get(status.value, 0))
        yield gauge


@blp.route("/metrics", methods=["GET"])
@blp.response(200, description="Prometheus text exposition format")
def metrics():
    """Expose Prometheus metrics: requests, latencies, callbacks by outcome, recordings by status."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        processes = CollectorRegistry()
        MultiProcessCollector(processes)
    else:
        processes = REGISTRY
    recordings = CollectorRegistry(auto_describe=False)
    recordings.register(RecordingsByStatus())
    return Response(generate_latest(processes) + generate_latest(recordings), mimetype=CONTENT_TYPE_LATEST)
