"""The production front: deploy/nginx.conf (Debian's nginx) before gunicorn, as docs/production.md,
"gunicorn behind nginx", runs them, with TRUSTED_PROXY_COUNT=1. Every request here goes through nginx.

Clients post callbacks from 127.0.0.5, a loopback address of their own, so that the client nginx sees
is not nginx itself (127.0.0.1, as gunicorn sees it); only 127.0.0.5 may post callbacks.
"""

import gzip
import http.client
import json
import socket
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from recordings_service import create_app
from recordings_service.extensions import db
from recordings_service.persistence.models import StoredCallback
from testkit.config import config_for
from testkit.nginx import nginx
from testkit.servers import FORM, free_port, gunicorn
from tests.support import empty_tables, fixture_call, seeded_contract_body

pytestmark = pytest.mark.slow

LOOKUP = "/api/v1/voice/recordings/"
TOKEN = "front-" + "t" * 32
CALLBACK = f"/api/v1/voice/callback?token={TOKEN}"
CLIENT = "127.0.0.5"
RECORDED = fixture_call("recorded-call")

# The base the app sees behind nginx: deploy/nginx.conf's X-Forwarded-Host is $host, without the port.
FRONT_BASE = "http://127.0.0.1"


@pytest.fixture(scope="module")
def front(database, tmp_path_factory):
    """gunicorn (gunicorn.conf.py, 2 workers) behind nginx (deploy/nginx.conf), on a database holding the
    API's documented example and 10 demo rows."""
    app = create_app(config_for(database))
    with app.app_context():
        empty_tables()
        app.test_cli_runner().invoke(args=["recordings", "seed-demo", "--count", "10"])
        db.session.remove()
        db.engine.dispose()
    log = tmp_path_factory.mktemp("front") / "gunicorn.log"
    settings = {
        "TRUSTED_PROXY_COUNT": "1",
        "VOICE_CALLBACK_ALLOWED_NETWORKS": f"{CLIENT}/32",
        "VOICE_CALLBACK_TOKEN": TOKEN,
        "LOG_FORMAT": "json",
    }
    with gunicorn(database, log_to=log, **settings) as upstream, nginx(upstream) as proxy:
        yield SimpleNamespace(port=proxy.port, nginx=proxy, gunicorn_log=log)


def request(front, method, path, body=None, headers=None, source=CLIENT):
    """One request to nginx on a connection of its own from ``source``: (status, headers, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", front.port, timeout=60, source_address=(source, 0))
    try:
        connection.request(method, path, body, headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def callback(front, fields, source=CLIENT, headers=None):
    return request(
        front, "POST", CALLBACK, urllib.parse.urlencode(fields), {**FORM, **(headers or {})}, source
    )


def session(fields: dict, session_id: str) -> dict:
    return {**fields, "sessionId": session_id}


def test_the_documented_lookup_through_the_front(front):
    found = request(front, "GET", LOOKUP + "conf_1234567890")
    missing = request(front, "GET", LOOKUP + "conf_9999999999")
    too_long = request(front, "GET", LOOKUP + "x" * 5000)  # reaches the app: its JSON 404

    assert found[0] == 200 and json.loads(found[2]) == seeded_contract_body(FRONT_BASE)
    for status, headers, body in (missing, too_long):
        assert status == 404
        assert headers["Content-Type"] == "application/json"
        assert json.loads(body) == {"detail": "Recording not found"}


def test_json_is_gzipped_for_clients_that_ask(front):
    plain = request(front, "GET", LOOKUP + "conf_1234567890")
    zipped = request(front, "GET", LOOKUP + "conf_1234567890", headers={"Accept-Encoding": "gzip"})

    assert "Content-Encoding" not in plain[1]
    assert zipped[1]["Content-Encoding"] == "gzip"
    assert zipped[1]["Vary"] == "Accept-Encoding"
    assert len(zipped[2]) < len(plain[2])
    assert json.loads(gzip.decompress(zipped[2])) == seeded_contract_body(FRONT_BASE)
    # nginx made the tag weak (the bytes differ); it still revalidates: a 304.
    etag = zipped[1]["ETag"]
    assert etag == "W/" + plain[1]["ETag"]
    revalidated = request(
        front, "GET", LOOKUP + "conf_1234567890", headers={"Accept-Encoding": "gzip", "If-None-Match": etag}
    )
    assert (revalidated[0], revalidated[2]) == (304, b"")


def test_a_client_keeps_its_connection_for_many_requests(front):
    connection = http.client.HTTPConnection("127.0.0.1", front.port, timeout=10)
    connection.connect()
    where = connection.sock.getsockname()
    answers = []
    try:
        for n in range(5):
            connection.request("GET", LOOKUP + f"conf_{n:010d}")
            response = connection.getresponse()
            answers.append((response.status, response.headers["Connection"], len(response.read()) > 0))
            # http.client would quietly open a new connection had nginx closed this one.
            assert connection.sock is not None and connection.sock.getsockname() == where
    finally:
        connection.close()

    assert answers == [(200, "keep-alive", True)] * 5


def test_the_client_is_the_address_nginx_saw_for_the_network_check_and_the_logs(front, database):
    allowed = callback(front, session(RECORDED[0], "ATVId_front_xff"))
    # From nginx's own address, claiming to be the allowed client: nginx appends the address it saw,
    # which is the one read (TRUSTED_PROXY_COUNT=1).
    forged = callback(
        front,
        session(RECORDED[0], "ATVId_front_forged"),
        source="127.0.0.1",
        headers={"X-Forwarded-For": CLIENT},
    )

    assert allowed[0] == 200
    assert forged[0] == 403 and json.loads(forged[2]) == {
        "detail": "Callbacks are not accepted from this address"
    }
    app = create_app(config_for(database))
    with app.app_context():
        stored = db.session.execute(sa.select(StoredCallback.session_id, StoredCallback.remote_addr)).all()
        db.session.remove()
        db.engine.dispose()
    assert [tuple(row) for row in stored if row[0].startswith("ATVId_front_")] == [
        ("ATVId_front_xff", CLIENT)
    ]
    access = [json.loads(line) for line in front.gunicorn_log.read_text().splitlines() if '"status"' in line]
    callbacks = [
        (line["status"], line["remote_addr"]) for line in access if line["path"] == "/api/v1/voice/callback"
    ]
    assert (200, CLIENT) in callbacks and (403, "127.0.0.1") in callbacks
    # nginx's access log has the client too, and never the callback's token.
    nginx_log = front.nginx.access_log.read_text()
    assert f"{CLIENT} [" in nginx_log and "POST /api/v1/voice/callback HTTP/1.1" in nginx_log
    assert TOKEN not in nginx_log


def test_no_nginx_log_line_holds_the_callback_token_when_gunicorn_is_down_or_the_body_too_big():
    """nginx's error lines quote the request line whole, and the callback's token is in its query."""
    with nginx(f"http://127.0.0.1:{free_port()}") as proxy:  # nothing listens there: gunicorn is down
        front = SimpleNamespace(port=proxy.port)
        down = callback(front, session(RECORDED[0], "ATVId_front_down"))
        too_big = request(front, "POST", CALLBACK, b"pad=" + b"x" * 100_000, FORM)
        lookup = request(front, "GET", LOOKUP + "conf_down")
        errors, access = proxy.error_log.read_text(), proxy.access_log.read_text()

    assert (down[0], too_big[0], lookup[0]) == (502, 413, 502)
    assert "conf_down" in errors  # the other requests' failures are still logged
    assert TOKEN not in errors and TOKEN not in access
    # The access log has each failure as the request the client made (not error_page's internal one).
    assert '"POST /api/v1/voice/callback HTTP/1.1" 502' in access
    assert '"POST /api/v1/voice/callback HTTP/1.1" 413' in access
    assert '"GET /api/v1/voice/recordings/conf_down HTTP/1.1" 502' in access


@pytest.mark.parametrize(
    ("name", "method", "path", "body", "headers", "status"),
    [
        ("a body over 64 KiB", "POST", CALLBACK, b"pad=" + b"x" * 100_000, FORM, 413),
        ("a 20 KB header", "GET", LOOKUP + "conf_1234567890", None, {"X-Pad": "x" * 20_000}, 400),
        ("a 20 KB request line", "GET", LOOKUP + "x" * 20_000, None, {}, 414),
        ("nginx's error pages themselves", "GET", "/.errors/500", None, {}, 404),
    ],
)
def test_nginx_refuses_with_the_json_error(front, name, method, path, body, headers, status):
    seen_before = gunicorn_requests(front)
    answer = request(front, method, path, body, headers)

    assert answer[0] == status, name
    assert answer[1]["Content-Type"] == "application/json", name
    assert json.loads(answer[2])["detail"], name
    assert gunicorn_requests(front) == seen_before, name  # gunicorn never saw it


def gunicorn_requests(front) -> int:
    return sum('"status"' in line for line in front.gunicorn_log.read_text().splitlines())


def test_a_client_sending_its_headers_a_byte_a_second_is_cut_off_by_nginx(front):
    payload = f"GET {LOOKUP}conf_1234567890 HTTP/1.1\r\nHost: x\r\nX-Pad: {'x' * 40}\r\n\r\n".encode()
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", front.port), timeout=30) as sock:
        sent = 0
        try:
            for byte in payload:
                sock.sendall(bytes([byte]))
                sent += 1
                time.sleep(1)
            answer = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            answer = b""
    cut_after = time.monotonic() - started

    assert sent < len(payload)
    assert answer == b""
    assert 9 <= cut_after <= 14, cut_after  # client_header_timeout 10s
    print(f"a byte-a-second client was cut off by nginx after {cut_after:.1f} s ({sent} bytes sent)")


def test_a_long_poll_passes_through_and_is_woken_by_a_callback(front):
    session_id = "ATVId_front_wait"
    registered = request(
        front,
        "POST",
        "/api/v1/voice/recordings",
        json.dumps({"recording_id": "conf_front_wait", "session_ids": [session_id]}),
        {"Content-Type": "application/json"},
    )
    assert registered[0] == 201
    assert callback(front, session(RECORDED[0], session_id))[0] == 200
    gz = {"Accept-Encoding": "gzip"}
    etag = request(front, "GET", LOOKUP + "conf_front_wait", headers=gz)[1]["ETag"]
    assert etag.startswith('W/"')  # compressed by nginx: its clients wait with a weak tag

    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(
            request,
            front,
            "GET",
            LOOKUP + "conf_front_wait",
            None,
            {**gz, "If-None-Match": etag, "Prefer": "wait=30"},
        )
        time.sleep(1.5)
        assert not held.done()  # held: by the app, through nginx
        assert callback(front, session(RECORDED[2], session_id))[0] == 200
        posted = time.monotonic()
        status, headers, body = held.result(timeout=40)
        woken_after = time.monotonic() - posted

    assert status == 200
    assert headers["Preference-Applied"] == "wait=30"
    assert json.loads(gzip.decompress(body))["status"] == "processing"
    assert woken_after < 1, woken_after
    print(f"a long poll through nginx was answered {woken_after:.3f} s after the callback's answer")
