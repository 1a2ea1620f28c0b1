"""Nothing a client sends makes the service drop a callback or answer 5xx.

The tests send bodies over the limit, chunked or not, over real HTTP, odd values in every field, and
random requests of every kind (hypothesis).
"""

import json
import socket
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from recordings_service.extensions import db
from recordings_service.persistence.models import Recording, StoredCallback
from testkit.servers import gunicorn, http
from tests.support import empty_tables

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


# --- Random requests of every kind: never a 5xx, and a 2xx means stored --------------------------

SESSIONS = ["ATVId_a", "ATVId_b", "ATVId_c", "conf_1"]
# What a header can carry: latin-1 (a client's UTF-8 bytes reach the app as latin-1 text).
header_text = st.text(
    st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"), max_size=60
)
# Text of every script, emoji and control character; NUL (always refused) now and then only.
no_nul = st.characters(codec="utf-8", exclude_characters="\x00")
any_text = st.one_of(
    *[st.text(no_nul, max_size=200)] * 4,
    st.text(no_nul, min_size=129, max_size=3000),
    st.sampled_from(["\x00", "Failed\x00"]),
)
numbers = st.integers(min_value=-(2**70), max_value=2**70).map(str) | st.sampled_from(
    ["", "٣", "5_000", " 5"]
)


def mostly(usual, odd):
    """``usual`` seven times in eight, else ``odd``: mostly what AT could send, with odd values among it."""
    return st.one_of(*[usual] * 7, odd)


@st.composite
def callbacks(draw) -> dict[str, str]:
    fields = {
        "sessionId": draw(mostly(st.sampled_from(SESSIONS), st.text(no_nul, max_size=70))),
        "isActive": draw(mostly(st.sampled_from(["0", "1"]), st.text(max_size=3))),
    }
    seconds = mostly(st.integers(0, 2**31 - 1).map(str), numbers)
    optional = {
        "status": mostly(st.sampled_from(["Success", "Failed", "Aborted"]), any_text),
        "hangupCause": mostly(st.sampled_from(["NORMAL_CLEARING", "USER_BUSY", "NO_ANSWER"]), any_text),
        "durationInSeconds": seconds,
        "dialDurationInSeconds": seconds,
        "recordingUrl": mostly(
            st.sampled_from(["", "https://voice.africastalking.com/recording/r1"]), any_text
        ),
        "callerNumber": any_text,
    }
    for name in draw(st.lists(st.sampled_from(sorted(optional)), unique=True)):
        fields[name] = draw(optional[name])
    fields.update(draw(st.dictionaries(st.text(no_nul, min_size=1, max_size=20), any_text, max_size=3)))
    return fields


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
registrations = st.fixed_dictionaries(
    {},
    optional={
        "recording_id": mostly(
            st.sampled_from(["conf_1", "conf_2", "ATVId_a"]), st.text(max_size=70) | json_values
        ),
        "session_ids": mostly(
            st.lists(st.sampled_from(SESSIONS), max_size=4), st.lists(st.text(max_size=70)) | json_values
        ),
        "dial": st.lists(st.sampled_from(["+254722000111", "0722"]) | st.text(max_size=20), max_size=3)
        | json_values,
        "extra": json_values,
    },
)
list_queries = st.dictionaries(
    st.sampled_from(["status", "created_after", "created_before", "limit", "cursor", "other"]),
    st.sampled_from(["completed", "failed", "2024-01-15T10:00:00Z", "0001-01-01T00:00:00+14:00", "1", "200"])
    | st.text(max_size=40)
    | numbers,
    max_size=4,
)
request_headers = st.fixed_dictionaries(
    {},
    optional={
        "Prefer": st.sampled_from(["wait=1", "wait=0"]) | header_text.map(lambda text: "wait=" + text),
        "If-None-Match": st.sampled_from(["*", '"x"']) | header_text,
        "X-Request-ID": header_text,
        "X-Forwarded-For": header_text,
    },
)
requests = st.lists(
    st.tuples(st.sampled_from(["callback", "callback", "register", "list", "lookup"]), st.data()),
    min_size=1,
    max_size=8,
)


@pytest.fixture
def fuzzed_app(make_app):
    return make_app(WAIT_MAX_SECONDS=0)  # a wait that is honoured is held no time at all


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=requests)
def test_random_requests_never_get_a_5xx_and_every_2xx_is_kept(fuzzed_app, steps):
    app = fuzzed_app
    with app.app_context():
        empty_tables()
    client = app.test_client()
    accepted, registered = [], []
    for kind, data in steps:
        headers = data.draw(request_headers)
        if kind == "callback":
            fields = data.draw(callbacks())
            response = client.post(CALLBACK, data=fields, headers=headers)
            if response.status_code < 300:
                accepted.append(fields)
        elif kind == "register":
            response = client.post("/api/v1/voice/recordings", json=data.draw(registrations), headers=headers)
            if response.status_code < 300:
                registered.append(response.json["recording_id"])
        elif kind == "list":
            response = client.get(
                "/api/v1/voice/recordings", query_string=data.draw(list_queries), headers=headers
            )
        else:
            recording_id = data.draw(st.sampled_from(SESSIONS + ["conf_2"]) | st.text(max_size=70))
            response = client.get("/api/v1/voice/recordings/" + quote(recording_id, safe=""), headers=headers)
        assert response.status_code < 500, (kind, response.status_code, response.get_data(as_text=True))
        if response.status_code >= 400:
            assert response.json["detail"]

    event(f"callbacks taken: {min(len(accepted), 3)}+; registrations taken: {min(len(registered), 3)}+")

    def canonical(fields_list):
        return sorted(json.dumps(fields, sort_keys=True) for fields in fields_list)

    assert canonical(row.fields for row in stored_callbacks(app)) == canonical(accepted)
    for recording_id in registered:
        assert client.get("/api/v1/voice/recordings/" + recording_id).status_code == 200
    with app.app_context():
        reasons = db.session.execute(sa.select(Recording.failure_reason)).scalars()
        assert all(reason is None or len(reason) <= 128 for reason in reasons)


# --- An id holding NUL, on every route that takes a recording id ---------------------------------


def routes_of_recordings(app) -> list[tuple[str, str]]:
    """Each (method, URL) of a route taking a recording id, built with ids holding NUL (``%00``)."""
    urls = app.url_map.bind("localhost")
    ids = {"recording_id": "conf_\x00", "session_id": "ATVId_\x00"}
    return [
        (method, urls.build(rule.endpoint, {name: ids[name] for name in rule.arguments}, method=method))
        for rule in app.url_map.iter_rules()
        if "recording_id" in rule.arguments
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"})
    ]


def test_an_id_holding_nul_is_404_on_every_route_taking_a_recording_id(app, client):
    routes = routes_of_recordings(app)
    answers = {(method, url): client.open(url, method=method) for method, url in routes}

    assert {method for method, _ in routes} == {"GET", "DELETE"} and len(routes) == 6
    assert all("%00" in url for _, url in routes)
    assert {route: (answer.status_code, answer.json) for route, answer in answers.items()} == {
        route: (404, {"detail": "Recording not found"}) for route in routes
    }


def test_a_leg_id_holding_nul_is_404(client):
    response = client.get("/api/v1/voice/recordings/conf_1/legs/ATVId_%00/audio")

    assert (response.status_code, response.json) == (404, {"detail": "Audio not found"})


def test_a_browsers_preflight_for_an_id_holding_nul_is_answered(client):
    response = client.options(
        "/api/v1/voice/recordings/conf_%00",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"},
    )

    assert response.status_code == 200 and response.headers["Access-Control-Allow-Origin"]
