"""gunicorn settings for `make run` and production (`gunicorn --config gunicorn.conf.py wsgi:app`)."""

import gc
import multiprocessing
import os
import shutil
import tempfile

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
# Threads, so that requests held by `Prefer: wait` (up to 30 s) do not starve plain lookups:
# every worker holds up to `threads` requests at once, waiting ones costing a thread and no connection.
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "64"))
# A worker takes no more connections than it has threads: with all of them held, it stops accepting and
# a new lookup goes to another worker, instead of queueing behind held requests (gunicorn's default: 1000).
# That leaves no room for idle keep-alive connections: each response closes its connection.
worker_connections = threads
keepalive = 0
timeout = 30
graceful_timeout = 30
accesslog = "-"  # stdout
# The default logs the whole request line, and so the callback's ?token= secret: log the path only.
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms "%(a)s" request_id=%({x-request-id}o)s'
errorlog = "-"
if os.environ.get("LOG_FORMAT", "json") == "json":
    # gunicorn's own lines as JSON too, like the app's (recordings_service/observability.py).
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {
                "()": "recordings_service.web.observability.json_formatter",
            }
        },
        "filters": {"access_request_id": {"()": "recordings_service.web.observability.AccessLogRequestId"}},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stdout",
                "filters": ["access_request_id"],
            },
            "stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"},
        },
        # The app puts its own handler on the root logger (recordings_service.observability).
        "root": {"level": "INFO", "handlers": []},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
        },
    }

# Metrics from every worker: prometheus_client's multiprocess mode reads the files they all write here.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="recordings-metrics-"))


def on_starting(server):
    # Counts left by an earlier run of the server would be added to this one's.
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, exist_ok=True)


def post_worker_init(worker):
    # Everything the worker made while loading the app lives as long as the worker: out of the
    # collector's sight, full collections stop walking it. (make bench: lookup p99 about 3x lower.)
    gc.freeze()


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


# gunicorn's default (4094) answers a long id with its own HTML 414; the contract wants the JSON 404.
limit_request_line = 8190
