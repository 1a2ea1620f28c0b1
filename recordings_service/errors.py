"""Every error the service answers is JSON ``{"detail": "<text>"}``.

HTTP errors (routing 404/405, aborts, validation) reach ``http_error`` through ``extensions.Api``, which
flask-smorest registers on the app, not a blueprint, so routing errors get the same shape. A database
failure under any view is answered by one handler, with the text the view declares
(``web.blueprints.on_database_error``).
"""

import logging
from collections.abc import Iterator

from flask import Flask, current_app, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

log = logging.getLogger(__name__)


def error_response(status: int, detail: str, headers: dict | None = None):
    """Return a Flask response tuple carrying ``detail`` with ``status``."""
    return {"detail": detail}, status, headers or {}


def _field_messages(messages: dict | list, prefix: str = "") -> Iterator[str]:
    if not isinstance(messages, dict):  # a message about the whole body, e.g. "Invalid JSON body."
        yield " ".join(map(str, messages))
        return
    for key, value in messages.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _field_messages(value, f"{name}.")
        else:
            yield f"{name}: {' '.join(map(str, value)) if isinstance(value, list) else value}"


def http_error(error: HTTPException):
    """Answer ``error`` as ``{"detail": ...}``, naming each bad field of a validation error."""
    data = getattr(error, "data", None) or {}
    if "messages" in data:
        # webargs keys its messages by location ("json", "query"...); the field names are what help.
        fields = [line for location in data["messages"].values() for line in _field_messages(location)]
        detail = "Invalid request: " + " ".join(fields)
    elif "message" in data:
        detail = str(data["message"])
    elif error.description and error.description != type(error).description:
        detail = error.description
    else:
        detail = error.name
    headers = dict(data.get("headers") or {})
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        headers["Allow"] = ", ".join(sorted(error.valid_methods))  # RFC 9110 15.5.6
    return error_response(error.code or 500, detail, headers)


DATABASE_FAILED = "Database unavailable"


def register_error_handlers(app: Flask) -> None:
    """Answer a database failure, and anything else a view did not expect, with a JSON 500 after
    rolling the session back; the cause goes to the log."""

    @app.errorhandler(SQLAlchemyError)
    def database_error(error: SQLAlchemyError):
        current_app.extensions["sqlalchemy"].session.rollback()
        log.error("database failure in %s %s", request.method, request.path, exc_info=error)
        view = current_app.view_functions.get(request.endpoint)
        return error_response(500, getattr(view, "database_error", DATABASE_FAILED))

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception):
        current_app.extensions["sqlalchemy"].session.rollback()
        log.error("unhandled error", exc_info=error)
        return error_response(500, "Internal server error")
