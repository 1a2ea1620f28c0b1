"""gunicorn settings for `make run` and production (`gunicorn --config gunicorn.conf.py wsgi:app`)."""

import multiprocessing
import os

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
access_log_format = '%(h)s - - %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms "%(a)s"'
errorlog = "-"
# gunicorn's default (4094) answers a long id with its own HTML 414; the contract wants the JSON 404.
limit_request_line = 8190
