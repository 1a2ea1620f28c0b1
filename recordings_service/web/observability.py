"""What operators see of every request: its id (in every log line, see ``logs``) and Prometheus counters.

Metrics work with several gunicorn workers through prometheus_client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``, which gunicorn.conf.py sets); without it they are per process.
"""

import re
import time
import uuid

from flask import Flask, Response, g, request
from prometheus_client import Counter, Histogram

from ..logs import configure_logging

REQUESTS = Counter("http_requests_total", "HTTP requests answered", ["method", "route", "status"])
LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CALLBACKS = Counter("voice_callbacks_total", "Africa's Talking callbacks by outcome", ["outcome"])

# Label values come from a fixed set, whatever clients send: a made-up method is OTHER, a path no
# route matches is "unmatched". (Each new value would be a new time series, kept for good.)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# Honour a caller's request id only if it is short and plain: it goes into every log line.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def _start_request() -> None:
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
    g.started = time.perf_counter()


def _finish_request(response: Response) -> Response:
    response.headers["X-Request-ID"] = g.request_id
    route = request.url_rule.rule if request.url_rule else "unmatched"
    method = request.method if request.method in _METHODS else "OTHER"
    REQUESTS.labels(method, route, str(response.status_code)).inc()
    LATENCY.labels(method, route).observe(time.perf_counter() - g.started)
    return response


def init_app(app: Flask) -> None:
    configure_logging(app.config["LOG_FORMAT"])
    app.before_request(_start_request)
    app.after_request(_finish_request)
