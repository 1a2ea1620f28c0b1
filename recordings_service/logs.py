"""Log lines: JSON (or text) on stderr, each with an ISO 8601 UTC time and its request's id, and no
secret nor any URL's query string in any of them, gunicorn's own lines included (gunicorn.conf.py
takes its logging from here).

``redact`` is also what clears others' text (AT's errors) of secrets before an answer, a stored field
or an event quotes it.

An access line carries its facts as keys of their own (method, path, status, duration_ms, request_id,
remote_addr), so that a log store can filter on them.
"""

import logging
import os
import re
import urllib.parse
from datetime import UTC, datetime

from flask import g, has_request_context
from pythonjsonlogger.json import JsonFormatter

# What must never reach a log: the callback's ?token=, API keys, and any Authorization header value.
_SECRETS = re.compile(r"(?i)(token=)[^&\s\"'\\]+|(bearer\s+)[^\s\"'\\]+|\brsk_[A-Za-z0-9_-]+")
# A URL's query string (a recording URL's signature, say), wherever a line quotes a URL: httpx's own
# request lines, an error naming the URL it failed on.
_URL_QUERY = re.compile(r"(?i)\b(https?://[^\s?#\"'<>]+)\?[^\s#\"'<>]*")
# Secrets known by value (the settings below), whatever text they turn up in.
_KNOWN: set[str] = set()
# The settings whose values are secrets; boto3 reads AWS_SECRET_ACCESS_KEY from the environment.
SECRET_SETTINGS = ("AT_API_KEY", "VOICE_CALLBACK_TOKEN", "WEBHOOK_SECRET", "AWS_SECRET_ACCESS_KEY")


# Shorter values are no real key, and replacing them everywhere would garble every line.
KNOWN_SECRET_MIN_LENGTH = 8


def keep_secret(value: str | None) -> None:
    """Never let ``value`` (a key AT issued, say) reach a log line: it is redacted wherever it appears."""
    if value and len(value) >= KNOWN_SECRET_MIN_LENGTH:
        _KNOWN.add(value)


def keep_secrets(config) -> None:
    """Keep every secret the app's ``config`` holds (``SECRET_SETTINGS``, the database's password)."""
    for name in SECRET_SETTINGS:
        keep_secret(config.get(name) or os.environ.get(name))
    keep_secret(urllib.parse.urlsplit(config.get("SQLALCHEMY_DATABASE_URI") or "").password)


def redact(text: str) -> str:
    """Return ``text`` with every secret it holds replaced by ``[redacted]``."""
    for secret in _KNOWN:
        text = text.replace(secret, "[redacted]")
    text = _URL_QUERY.sub(lambda match: match.group(1) + "?[redacted]", text)
    return _SECRETS.sub(lambda match: (match.group(1) or match.group(2) or "") + "[redacted]", text)


class RedactSecrets(logging.Filter):
    """Replace secrets in a record's message (and its arguments, and its traceback) before any handler
    writes it.

    gunicorn, for one, logs a malformed request line whole, ``?token=`` and all; an exception's text
    may quote a header.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        # (gunicorn's access atoms, the arguments of its access lines, are read by AccessLogFields first.)
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info:
            # Formatters write exc_text when there is no exc_info: the traceback, redacted, instead.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class RequestIdFilter(logging.Filter):
    """Put the current request's id on every log record (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = g.get("request_id", "-") if has_request_context() else "-"
        return True


class AccessLogFields(logging.Filter):
    """Give gunicorn's access lines their facts as fields, read from the atoms gunicorn passes as the
    record's arguments (the request id from the response's X-Request-ID)."""

    def filter(self, record: logging.LogRecord) -> bool:
        atoms = record.args if isinstance(record.args, dict) else {}
        record.method = atoms.get("m")
        record.path = atoms.get("U")  # the path alone: a query string may hold the callback token
        record.status = int(atoms["s"]) if str(atoms.get("s", "")).isdigit() else atoms.get("s")
        record.duration_ms = round(atoms["D"] / 1000, 2) if isinstance(atoms.get("D"), int) else None
        record.request_id = atoms.get("{x-request-id}o") or "-"
        record.remote_addr = atoms.get("h")
        return True


class _UTCFormatter(JsonFormatter):
    def formatTime(self, record: logging.LogRecord, datefmt=None) -> str:  # noqa: N802 (logging's name)
        return iso_time(record.created)


def iso_time(seconds: float) -> str:
    """``2026-11-28T10:25:38.123Z``: ISO 8601, UTC, milliseconds."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def json_formatter() -> JsonFormatter:
    return _UTCFormatter(
        "{asctime}{levelname}{name}{message}{request_id}",
        style="{",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
    )


class TextFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt=None) -> str:  # noqa: N802
        return iso_time(record.created)


def text_formatter() -> logging.Formatter:
    return TextFormatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")


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
    handler.addFilter(RedactSecrets())
    handler.setFormatter(json_formatter() if log_format == "json" else text_formatter())
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, _ServiceHandler)] + [handler]
    root.setLevel(logging.INFO)


def gunicorn_logconfig(log_format: str) -> dict:
    """gunicorn's ``logconfig_dict``: its error and access lines formatted like the app's, redacted."""
    formatter = (
        "recordings_service.logs.json_formatter"
        if log_format == "json"
        else "recordings_service.logs.text_formatter"
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"service": {"()": formatter}},
        "filters": {
            "access_fields": {"()": "recordings_service.logs.AccessLogFields"},
            "request_id": {"()": "recordings_service.logs.RequestIdFilter"},
            "redact": {"()": "recordings_service.logs.RedactSecrets"},
        },
        "handlers": {
            "access": {
                "class": "logging.StreamHandler",
                "formatter": "service",
                "stream": "ext://sys.stdout",
                "filters": ["access_fields", "redact"],
            },
            "error": {
                "class": "logging.StreamHandler",
                "formatter": "service",
                "stream": "ext://sys.stderr",
                "filters": ["request_id", "redact"],
            },
        },
        # The app puts its own handler on the root logger (configure_logging).
        "root": {"level": "INFO", "handlers": []},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["error"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["access"], "propagate": False},
        },
    }
