"""gunicorn settings for `make run` and production (`gunicorn --config gunicorn.conf.py wsgi:app`)."""

import multiprocessing
import os

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
timeout = 30
graceful_timeout = 30
keepalive = 5
accesslog = "-"  # stdout
# The default logs the whole request line, and so the callback's ?token= secret: log the path only.
access_log_format = '%(h)s - - %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms "%(a)s"'
errorlog = "-"
# gunicorn's default (4094) answers a long id with its own HTML 414; the contract wants the JSON 404.
limit_request_line = 8190
