"""Request bodies, read whole before the app sees them: at most ``MAX_CONTENT_LENGTH`` bytes, chunked or
not, within ``BODY_TIMEOUT_SECONDS``. A body over the limit is a 413 and one too slow a 408, so no
request is ever taken cut short, and a client trickling its body cannot hold a worker's connection.

(gunicorn's gevent workers bound the time to send the headers with ``keepalive``; this bounds the body.
Werkzeug alone would cut a chunked body at the limit and pass the app what came before the cut.)
"""

import io
from contextlib import nullcontext

from flask import Flask, request
from flask_smorest import abort

REFUSED = "recordings.body_refused"  # environ key: (status, detail) when the body was not taken


class _TooSlow(Exception):
    pass


def _deadline(seconds: float):
    """Return a limit on the whole read, or no limit where none can be set.

    Under gevent (how gunicorn.conf.py serves) it is a timeout that interrupts a read blocked on the
    socket. Elsewhere (the test client, a threaded server) there is no limit.
    """
    from gevent import Timeout, monkey

    return Timeout(seconds, _TooSlow) if monkey.is_module_patched("socket") else nullcontext()


class BodyReader:
    """WSGI middleware that reads the request body into memory, or marks the request refused."""

    def __init__(self, app, limit: int, seconds: float):
        self.app = app
        self.limit = limit
        self.seconds = seconds

    def __call__(self, environ, start_response):
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if chunked or length:
            refusal = self._read(environ, chunked, length)
            if refusal is not None:
                environ[REFUSED] = refusal
                environ["wsgi.input"] = io.BytesIO()
                environ["CONTENT_LENGTH"] = "0"
                environ.pop("HTTP_TRANSFER_ENCODING", None)
        return self.app(environ, start_response)

    def _read(self, environ, chunked: bool, length: int) -> tuple[int, str] | None:
        if length < 0:
            return 400, "Content-Length must be a whole number"
        if length > self.limit:
            return 413, f"The body is over {self.limit} bytes"
        wanted = self.limit + 1 if chunked else length
        stream, parts, received = environ["wsgi.input"], [], 0
        try:
            with _deadline(self.seconds):
                while received < wanted:
                    part = stream.read(min(65536, wanted - received))
                    if not part:
                        break
                    parts.append(part)
                    received += len(part)
        except _TooSlow:
            return 408, f"The body did not arrive within {self.seconds:g} s"
        if received > self.limit:
            return 413, f"The body is over {self.limit} bytes"
        if received < length:
            return 400, "The body ended before its Content-Length"
        body = b"".join(parts)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        environ.pop("wsgi.input_terminated", None)
        return None


def _refuse_unread_bodies():
    refusal = request.environ.get(REFUSED)
    if refusal is not None:
        status, detail = refusal
        abort(status, message=detail, headers={"Connection": "close"})


def init_app(app: Flask) -> None:
    """Read every body up front; refuse, through the app (request id, metrics, JSON), what was not taken."""
    app.wsgi_app = BodyReader(
        app.wsgi_app, app.config["MAX_CONTENT_LENGTH"], app.config["BODY_TIMEOUT_SECONDS"]
    )
    app.before_request(_refuse_unread_bodies)
