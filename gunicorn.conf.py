"""gunicorn settings for `make run` and production (`gunicorn --config gunicorn.conf.py wsgi:app`)."""

import gc
import multiprocessing
import os
import shutil
import sys
import tempfile

# Metrics from every worker: prometheus_client's multiprocess mode reads the files they all write here.
# Set before anything imports prometheus_client, which reads it once, at import.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="recordings-metrics-"))

from config import ConfigError as _ConfigError  # noqa: E402
from config import load as _load_settings  # noqa: E402
from recordings_service.logs import gunicorn_logconfig  # noqa: E402
from recordings_service.openfiles import worker_connections as _connections  # noqa: E402

# The settings table (config.py), read and checked here, in the master, so that a bad value stops
# gunicorn with its one line before any worker starts (a worker failing to load the app would be
# started again and again).
try:
    _settings = _load_settings()
    # Connections a worker serves at once, within its open-file limit, which is raised to the hard
    # limit: set above it, gunicorn refuses to start; the default is lowered to it, with a warning
    # (recordings_service/openfiles.py). A worker whose connections are all taken stops accepting, and
    # new clients wait in the listen queue, then in SYN retries (1 s, 3 s, 7 s).
    worker_connections, _connections_warning = _connections(_settings["GUNICORN_CONNECTIONS"])
except _ConfigError as _error:
    sys.exit(_error.message)

bind = f"0.0.0.0:{_settings['PORT']}"
# One a core: a gevent worker keeps its core busy by itself, and more workers only take turns on the
# same cores (bench/README.md, "Why the code is as it is").
workers = _settings["WEB_CONCURRENCY"] or multiprocessing.cpu_count()
# gevent: a connection costs a greenlet, not a thread, so clients holding `Prefer: wait` (up to 30 s),
# idle keep-alive connections and slow senders cannot use up what callbacks and lookups need. What a
# worker lets held waits take is WAIT_MAX_HELD (config.py). psycopg 3 and the standard library cooperate
# with gevent once gunicorn has patched them. GUNICORN_WORKER_CLASS=gthread is the alternative
# (docs/production.md, "Running it").
worker_class = _settings["GUNICORN_WORKER_CLASS"]
threads = _settings["GUNICORN_THREADS"]  # gthread only
# Kept-alive connections wait this long for their next request; with gevent it is also the time a
# client has to send a request's headers (gunicorn's async workers read them under this timeout), so a
# client sending a byte a second is cut off after it. Bodies have BODY_TIMEOUT_SECONDS (config.py).
keepalive = _settings["GUNICORN_KEEPALIVE"]
timeout = 30
graceful_timeout = 30
accesslog = "-"  # stdout
# The line's text; its facts are fields of their own too (recordings_service/logs.py). The path only:
# the query string may hold the callback's ?token= secret.
access_log_format = '"%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms'
errorlog = "-"
# gunicorn's own lines formatted like the app's (JSON or text), secrets redacted.
logconfig_dict = gunicorn_logconfig(_settings["LOG_FORMAT"])
# gunicorn's control socket (gunicornc) is one path per user: several servers on a machine would share
# it, and nothing here uses it.
control_socket_disable = True


def on_starting(server):
    if _connections_warning:
        server.log.warning(_connections_warning)
    # Counts left by an earlier run of the server would be added to this one's.
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, exist_ok=True)


def post_worker_init(worker):
    # Everything the worker made while loading the app lives as long as the worker. Frozen out of the
    # collector's sight, it is not walked by every full collection, which would hold up lookups.
    gc.freeze()
    # Once, from the first worker (after gevent has patched it: the master imports none of the app), and
    # beside it, not before it serves: a database that hangs must not hold up /healthz for its timeout.
    app = worker.wsgi
    if worker.age == 1 and "sqlalchemy" in getattr(app, "extensions", {}):
        import threading

        from recordings_service.persistence.database import warn_if_over_budget

        def check_budget():
            with app.app_context():
                warn_if_over_budget(worker.cfg.workers)

        threading.Thread(target=check_budget, name="connection-budget", daemon=True).start()


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


# gunicorn's default (4094) answers a long id with its own HTML 414; the API answers the JSON 404.
limit_request_line = 8190


def post_request(worker, req, environ, resp):
    """Before a kept-alive connection's next request, let the worker's other connections go first.

    A gevent worker switches greenlets only when one blocks; a client that sends its next request as
    soon as it has an answer (a poller, a proxy's pooled connection) would otherwise be served again
    and again while the worker's other connections wait.
    """
    if worker_class == "gevent" and not resp.should_close():
        import gevent

        gevent.idle()
