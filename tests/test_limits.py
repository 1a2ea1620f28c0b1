"""Nothing a client sends makes the service drop a callback or answer 5xx: bodies over the limit, chunked
or not, over real HTTP; odd values in every field; and random requests of every kind (hypothesis)."""

import json
import socket

import pytest
import sqlalchemy as sa

from recordings_service.extensions import db
from recordings_service.persistence.models import Recording, StoredCallback
from testkit.servers import gunicorn, http

CALLBACK = "/api/v1/voice/callback"
LIMIT = 64 * 1024  # MAX_CONTENT_LENGTH's default


def stored_callbacks(app) -> list[StoredCallback]:
    with app.app_context():
        rows = db.session.execute(sa.select(StoredCallback).order_by(StoredCallback.pk)).scalars().all()
        db.session.expunge_all()
        return rows


def recordings_count(app) -> int:
    with app.app_context():
        return db.session.execute(sa.select(sa.func.count()).select_from(Recording)).scalar_one()


# --- Bodies over MAX_CONTENT_LENGTH, through gunicorn ------------------------------------------


def _exchange(port: int, head: bytes, body_parts: list[bytes], timeout: float = 30) -> bytes:
    """Send ``head`` then each of ``body_parts`` on a new connection; return all that came back. The
    server may answer and close before everything is sent: what was not sent is then left."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(head)
            for part in body_parts:
                sock.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass
        received = []
        try:
            while chunk := sock.recv(65536):
                received.append(chunk)
        except ConnectionResetError:
            pass
        return b"".join(received)


def _answer(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 "), raw[:200]
    is_json = b"content-type: application/json" in head.lower()
    return int(head.split(b" ", 2)[1]), json.loads(body) if is_json else {}


def _callback_body(session_id: str, size: int) -> bytes:
    start = f"isActive=1&sessionId={session_id}&padding=".encode()
    return start + b"x" * (size - len(start))


def _chunks(body: bytes, size: int = 4096) -> list[bytes]:
    return [
        b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size)
    ]


FORM_HEAD = "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"


@pytest.fixture
def server(database, app):
    with gunicorn(database, workers=1) as base:
        yield base, int(base.rsplit(":", 1)[1])


@pytest.mark.slow
@pytest.mark.parametrize("size", [LIMIT + 1, 70_000, 1_000_000])
def test_a_chunked_callback_over_the_limit_is_413_and_nothing_is_stored(server, app, size):
    base, port = server
    head = (
        FORM_HEAD.format(path=CALLBACK) + "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()

    raw = _exchange(port, head, [*_chunks(_callback_body("ATVId_chunked", size)), b"0\r\n\r\n"])

    status, body = _answer(raw)
    assert status == 413 and "65536" in body["detail"]
    assert stored_callbacks(app) == [] and recordings_count(app) == 0
    assert http("GET", f"{base}/api/v1/voice/recordings/ATVId_chunked")[0] == 404


@pytest.mark.slow
def test_a_chunked_callback_within_the_limit_is_taken_whole(server, app):
    base, port = server
    body = _callback_body("ATVId_chunked", LIMIT)
    head = (
        FORM_HEAD.format(path=CALLBACK) + "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()

    status, _ = _answer(_exchange(port, head, [*_chunks(body), b"0\r\n\r\n"]))

    assert status == 200
    [row] = stored_callbacks(app)
    assert len(row.fields["padding"]) == LIMIT - len(b"isActive=1&sessionId=ATVId_chunked&padding=")


@pytest.mark.slow
@pytest.mark.parametrize("size", [LIMIT + 1, 10_000_000])
def test_a_callback_whose_content_length_is_over_the_limit_is_413_and_nothing_is_stored(server, app, size):
    base, port = server
    body = _callback_body("ATVId_long", size)
    head = (FORM_HEAD.format(path=CALLBACK) + f"Content-Length: {size}\r\nConnection: close\r\n\r\n").encode()

    status, answer = _answer(_exchange(port, head, [body]))

    assert status == 413 and "65536" in answer["detail"]
    assert stored_callbacks(app) == [] and recordings_count(app) == 0
    assert http("GET", f"{base}/api/v1/voice/recordings/ATVId_long")[0] == 404
