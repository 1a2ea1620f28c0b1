"""What operators see of every request: its id, JSON log lines, and Prometheus counters.

Metrics work with several gunicorn workers through prometheus_client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``, which gunicorn.conf.py sets); without it they are per process.
"""

import logging
import re
import time
import uuid

from flask import Flask, Response, g, has_request_context, request
from prometheus_client import Counter, Histogram
from pythonjsonlogger.json import JsonFormatter

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


def init_app(app: Flask) -> None:
    configure_logging(app.config["LOG_FORMAT"])
    app.before_request(_start_request)
    app.after_request(_finish_request)
