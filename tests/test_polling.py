"""Polling that costs nothing when nothing changed: ETag, 304, Retry-After, and Prefer: wait."""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from testkit.servers import gunicorn, http, post_callback
from tests.support import drain, fixture_call, recorded_call

LOOKUP = "/api/v1/voice/recordings/"
CALLBACK = "/api/v1/voice/callback"
RECORDED = fixture_call("recorded-call")
SESSION = RECORDED[0]["sessionId"]


@pytest.fixture
def live(client):
    """A recording whose call is live: conf_1, session RECORDED's."""
    client.post("/api/v1/voice/recordings", json={"recording_id": "conf_1", "session_ids": [SESSION]})
    client.post(CALLBACK, data=RECORDED[0])
    return "conf_1"


def test_a_lookup_carries_a_strong_etag_and_asks_for_revalidation(client, live):
    response = client.get(LOOKUP + live)

    etag, weak = response.get_etag()
    assert etag and not weak
    assert response.headers["Cache-Control"] == "no-cache"


def test_the_current_etag_gets_a_304_without_a_body(client, live):
    etag = client.get(LOOKUP + live).headers["ETag"]

    response = client.get(LOOKUP + live, headers={"If-None-Match": etag})

    assert response.status_code == 304
    assert response.data == b""
    assert response.headers["ETag"] == etag


@pytest.mark.parametrize(
    ("if_none_match", "status"),
    [
        ('"other", {etag}', 304),  # one of several tags the client holds
        ("W/{etag}", 304),  # If-None-Match compares weakly (RFC 9110 13.1.2)
        ("*", 304),
        ('"other"', 200),
        ("", 200),
    ],
)
def test_if_none_match_forms(client, live, if_none_match, status):
    etag = client.get(LOOKUP + live).headers["ETag"]

    response = client.get(LOOKUP + live, headers={"If-None-Match": if_none_match.format(etag=etag)})

    assert response.status_code == status
    assert (response.data == b"") == (status == 304)
    assert "Content-Type" not in response.headers if status == 304 else response.is_json


def test_the_etag_changes_exactly_when_the_body_does(client, live):
    first = client.get(LOOKUP + live).headers["ETag"]

    client.post(CALLBACK, data=RECORDED[1])  # Answered: the call is still live, the body unchanged
    client.post(CALLBACK, data=RECORDED[1])  # a duplicate
    unchanged = client.get(LOOKUP + live, headers={"If-None-Match": first})
    client.post(CALLBACK, data=RECORDED[2])  # the final request, with the URL
    changed = client.get(LOOKUP + live, headers={"If-None-Match": first})

    assert unchanged.status_code == 304
    assert changed.status_code == 200 and changed.json["status"] == "processing"
    assert changed.headers["ETag"] != first


def test_retry_after_only_while_the_recording_may_still_change(app, client, live, make_app, media):
    assert client.get(LOOKUP + live).headers["Retry-After"] == "2"
    client.post(CALLBACK, data=recorded_call(media)[2])
    assert client.get(LOOKUP + live).headers["Retry-After"] == "2"  # processing: its audio is awaited
    drain(app)

    completed = client.get(LOOKUP + live)
    assert completed.json["status"] == "completed" and "Retry-After" not in completed.headers
    custom = make_app(RETRY_AFTER_SECONDS=5).test_client()
    custom.post("/api/v1/voice/recordings", json={"recording_id": "conf_2"})
    assert custom.get(LOOKUP + "conf_2").headers["Retry-After"] == "5"


def test_prefer_wait_without_an_etag_answers_at_once(client, live):
    response = client.get(LOOKUP + live, headers={"Prefer": "wait=30"})

    assert response.status_code == 200
    assert "Preference-Applied" not in response.headers


@pytest.mark.parametrize(
    "prefer",
    ["wait=٣", "wait=" + "9" * 5000, "wait=-1", "wait=1.5", "wait=", "wait", 'wait="3"x', "wait=3;" * 500],
    ids=["arabic-digit", "5000-digits", "negative", "fraction", "empty", "bare", "quoted", "repeated"],
)
def test_a_wait_preference_the_server_cannot_read_is_ignored_and_answered_at_once(client, live, prefer):
    etag = client.get(LOOKUP + live).headers["ETag"]

    started = time.monotonic()
    response = client.get(LOOKUP + live, headers={"If-None-Match": etag, "Prefer": prefer})

    # RFC 7240: a preference not understood is ignored, never an error; held, it would take 30 s.
    assert response.status_code == 304
    assert "Preference-Applied" not in response.headers
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("if_none_match", ["*", "{etag}"])
def test_a_completed_recording_is_answered_at_once_even_to_a_wait(client, runner, if_none_match):
    runner.invoke(args=["recordings", "seed-demo", "--count", "0"])  # the documented example: completed
    etag = client.get(LOOKUP + "conf_1234567890").headers["ETag"]

    started = time.monotonic()
    response = client.get(
        LOOKUP + "conf_1234567890",
        headers={"If-None-Match": if_none_match.format(etag=etag), "Prefer": "wait=30"},
    )

    # It will not change: nothing to wait for.
    assert response.status_code == 304
    assert "Preference-Applied" not in response.headers
    assert time.monotonic() - started < 10


def test_a_held_request_with_no_change_ends_in_a_304_after_the_wait(make_app):
    app = make_app(WAIT_MAX_SECONDS=1)
    client = app.test_client()
    client.post("/api/v1/voice/recordings", json={"recording_id": "conf_1"})
    etag = client.get(LOOKUP + "conf_1").headers["ETag"]

    started = time.monotonic()
    response = client.get(
        LOOKUP + "conf_1", headers={"If-None-Match": etag, "Prefer": "respond-async, wait=600"}
    )

    assert response.status_code == 304
    assert response.headers["Preference-Applied"] == "wait=1"  # capped at WAIT_MAX_SECONDS
    assert time.monotonic() - started >= 0.9  # it was held, not answered at once


def test_a_wait_over_the_workers_budget_is_answered_at_once_and_told_to_come_back_later(make_app):
    app = make_app(WAIT_MAX_HELD=1, WAIT_FULL_RETRY_AFTER_SECONDS=17, WAIT_MAX_SECONDS=3)
    client = app.test_client()
    client.post("/api/v1/voice/recordings", json={"recording_id": "conf_1"})
    etag = client.get(LOOKUP + "conf_1").headers["ETag"]
    wait = {"If-None-Match": etag, "Prefer": "wait=3"}

    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(app.test_client().get, LOOKUP + "conf_1", headers=wait)
        time.sleep(0.3)
        assert not held.done()  # the one wait the worker may hold
        started = time.monotonic()
        over = client.get(LOOKUP + "conf_1", headers=wait)
        answered_in = time.monotonic() - started
        more = [client.get(LOOKUP + "conf_1", headers=wait).headers["Retry-After"] for _ in range(20)]
        poll = client.get(LOOKUP + "conf_1", headers={"If-None-Match": etag})
        first = held.result(timeout=20)

    assert over.status_code == 304 and answered_in < 2  # at once, not after its 3 s
    assert "Preference-Applied" not in over.headers  # RFC 7240: the preference was not honoured
    # WAIT_FULL_RETRY_AFTER_SECONDS to twice that, not a poller's 2; spread, so that the clients turned
    # away together do not come back together.
    assert all(17 <= int(after) <= 34 for after in [over.headers["Retry-After"], *more])
    assert len(set(more)) > 1
    assert poll.headers["Retry-After"] == "2"
    assert first.status_code == 304 and first.headers["Preference-Applied"] == "wait=3"


def test_lookups_do_not_queue_behind_the_database_reads_of_requests_asking_to_wait(make_app):
    # A pool of 4: reads take 3 of its connections, and the requests asking to wait one of those.
    app = make_app(DB_POOL_SIZE=4, DB_MAX_OVERFLOW=0, WAIT_MAX_SECONDS=1)
    client = app.test_client()
    client.post("/api/v1/voice/recordings", json={"recording_id": "conf_1"})
    etag = client.get(LOOKUP + "conf_1").headers["ETag"]
    share = app.extensions["database_reads"].waits
    share.acquire()  # as if a wave of waits were being read: the ones below queue for their share
    with ThreadPoolExecutor(6) as pool:
        waits = [
            pool.submit(
                app.test_client().get, LOOKUP + "conf_1", headers={"If-None-Match": etag, "Prefer": "wait=1"}
            )
            for _ in range(6)
        ]
        time.sleep(0.3)
        lookup = client.get(LOOKUP + "conf_1")  # not behind them: answered while they queue
        queued = [not wait.done() for wait in waits]
        share.release()
        answers = [wait.result(timeout=20) for wait in waits]

    assert lookup.status_code == 200
    assert queued == [True] * 6
    assert [answer.status_code for answer in answers] == [304] * 6


def test_a_held_request_is_answered_with_the_change_that_wakes_it(app, client, live):
    etag = client.get(LOOKUP + live).headers["ETag"]

    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(
            app.test_client().get, LOOKUP + live, headers={"If-None-Match": etag, "Prefer": "wait=20"}
        )
        time.sleep(0.3)
        assert not held.done()  # it is being held
        client.post(CALLBACK, data=RECORDED[2])
        response = held.result(timeout=20)

    # Answered with the new body: woken by the change, not by the wait running out (which gives 304).
    assert response.status_code == 200
    assert response.json["status"] == "processing"
    assert response.headers["Preference-Applied"] == "wait=20"


def test_a_held_request_for_a_recording_deleted_meanwhile_is_answered_404(app, client, live):
    etag = client.get(LOOKUP + live).headers["ETag"]

    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(
            app.test_client().get, LOOKUP + live, headers={"If-None-Match": etag, "Prefer": "wait=3"}
        )
        time.sleep(0.3)
        assert not held.done()  # it is being held
        assert client.delete(LOOKUP + live).status_code == 204
        response = held.result(timeout=20)

    assert (response.status_code, response.json) == (404, {"detail": "Recording not found"})


def test_a_held_request_woken_by_the_stored_audio_shows_the_audio_url_its_own_lookup_does(app, client, media):
    """The watcher renders the waking body outside the request: its audio_url must still be under the
    address the client used, as a plain lookup's is."""
    here = "https://recordings.example.org"
    for fields in recorded_call(media):
        client.post(CALLBACK, data=fields)
    processing = client.get(LOOKUP + SESSION, base_url=here)
    assert processing.json["status"] == "processing"

    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(
            app.test_client().get,
            LOOKUP + SESSION,
            base_url=here,
            headers={"If-None-Match": processing.headers["ETag"], "Prefer": "wait=20"},
        )
        time.sleep(0.3)
        assert not held.done()
        drain(app)  # the worker stores the audio: completed
        woken = held.result(timeout=20)

    assert woken.json["status"] == "completed"
    assert woken.json["audio_url"] == f"{here}/api/v1/voice/recordings/{SESSION}/audio"
    assert woken.json == client.get(LOOKUP + SESSION, base_url=here).json


def test_a_weak_tag_is_waited_on_too(make_app):
    """A front that compresses (deploy/nginx.conf's gzip) makes the ETag weak: its clients wait too."""
    client = make_app(WAIT_MAX_SECONDS=1).test_client()
    client.post("/api/v1/voice/recordings", json={"recording_id": "conf_1"})
    etag = client.get(LOOKUP + "conf_1").headers["ETag"]

    response = client.get(LOOKUP + "conf_1", headers={"If-None-Match": f"W/{etag}", "Prefer": "wait=1"})

    assert response.status_code == 304
    assert response.headers["Preference-Applied"] == "wait=1"


@pytest.mark.slow
def test_hundreds_of_waiting_clients_do_not_starve_lookups(database, runner):
    """While 200 clients hold Prefer: wait=30, plain lookups still answer and the waiters get the
    completion."""
    runner.invoke(args=["recordings", "seed-demo", "--count", "50"])
    with gunicorn(database, workers=5) as base:
        http(
            "POST",
            base + "/api/v1/voice/recordings",
            json.dumps({"recording_id": "conf_big", "session_ids": [SESSION]}).encode(),
            {"Content-Type": "application/json"},
        )
        post_callback(base, RECORDED[0])
        etag = http("GET", base + LOOKUP + "conf_big")[1]["ETag"]

        def hold(_):
            status, headers, body = http(
                "GET",
                base + LOOKUP + "conf_big",
                headers={"If-None-Match": etag, "Prefer": "wait=30"},
                timeout=60,
            )
            return status, time.monotonic(), json.loads(body)["status"] if body else None

        with ThreadPoolExecutor(220) as pool:
            held = [pool.submit(hold, n) for n in range(200)]
            time.sleep(1)
            lookups = list(pool.map(lambda n: http("GET", base + LOOKUP + f"conf_{n:010d}")[0], range(50)))
            assert not any(future.done() for future in held)  # looked up while all 200 were held
            post_callback(base, RECORDED[2])
            posted = time.monotonic()
            answers = [future.result(timeout=60) for future in held]

    assert lookups == [200] * 50
    assert {(status, body_status) for status, _, body_status in answers} == {(200, "processing")}
    latest = max(answered for _, answered, _ in answers) - posted
    print(f"200 held clients learned of the completion within {latest:.3f} s of the callback's answer")
