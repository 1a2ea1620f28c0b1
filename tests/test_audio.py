"""Processing means processing: each leg's recording fetched, verified and stored, then served.

Every test here runs on both databases and both storage backends (a directory, and S3 on moto).
"""

import hashlib
import io
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from recordings_service.extensions import db
from recordings_service.integrations.storage import ObjectNotFound
from recordings_service.persistence.models import CallSession, Job
from testkit.media import RECORDED_CALL, Answer
from tests.support import drain, fixture_call, recorded_call

CALLBACK = "/api/v1/voice/callback"
LOOKUP = "/api/v1/voice/recordings/"
SOURCE = RECORDED_CALL.read_bytes()
SOURCE_SHA256 = "f3713d2296317d5c48cb842eb80ecd725d2484f62e0a87c3a1d7bc6db3acc3be"
SESSION = fixture_call("recorded-call")[0]["sessionId"]
# Half a second of a tone as AIFF: audio of a format that has no extension of its own here.
AIFF = (Path(__file__).parent / "fixtures" / "tone-8k.aiff").read_bytes()

# Retries come at once (a few milliseconds), so a test can run them all.
FAST_RETRIES = {"AUDIO_FETCH_RETRY_BASE_SECONDS": 0.01, "AUDIO_FETCH_RETRY_MAX_SECONDS": 0.02}


@pytest.fixture
def app(make_app, storage_settings):
    return make_app(PUBLIC_BASE_URL="https://recordings.example", **storage_settings, **FAST_RETRIES)


def post_call(client, calls) -> None:
    for fields in calls:
        assert client.post(CALLBACK, data=fields).status_code == 200


def settle(app, client, recording_id: str, seconds: float = 20) -> dict:
    """Run the worker's due jobs until the recording is no longer waiting for its audio."""
    deadline = time.monotonic() + seconds
    while True:
        drain(app)
        body = client.get(LOOKUP + recording_id).json
        if body["status"] != "processing" or time.monotonic() > deadline:
            return body
        time.sleep(0.02)


def test_a_recording_is_processing_until_its_audio_is_stored_then_completed_and_served(app, client, media):
    calls = recorded_call(media)
    post_call(client, calls)

    processing = client.get(LOOKUP + SESSION).json
    assert processing == {
        "recording_id": SESSION,
        "status": "processing",
        "duration": 338,  # AT's figure until the audio is stored
        "recording_url": calls[-1]["recordingUrl"],
        "created_at": processing["created_at"],
        "processed_at": None,
        "failure_reason": None,
        "audio_url": None,
        "audio_removed_at": None,
        "updated_at": processing["updated_at"],
    }

    assert drain(app) == 1
    completed = client.get(LOOKUP + SESSION).json
    assert completed["status"] == "completed"
    assert completed["duration"] == 7  # the stored audio's own length (7.29 s), whole seconds
    assert completed["recording_url"] == calls[-1]["recordingUrl"]  # exactly what AT sent
    assert completed["processed_at"] is not None and completed["processed_at"] > processing["created_at"]
    assert completed["audio_url"] == f"https://recordings.example/api/v1/voice/recordings/{SESSION}/audio"

    audio = client.get(completed["audio_url"].removeprefix("https://recordings.example"))
    assert audio.status_code == 200 and audio.mimetype == "audio/mpeg"
    assert hashlib.sha256(audio.data).hexdigest() == SOURCE_SHA256
    assert audio.headers["ETag"] == f'"{SOURCE_SHA256}"' and audio.headers["Accept-Ranges"] == "bytes"


def test_the_audio_answers_ranges_and_revalidation(app, client, media):
    post_call(client, recorded_call(media))
    drain(app)
    url = LOOKUP + SESSION + "/audio"

    part = client.get(url, headers={"Range": "bytes=100-1099"})
    tail = client.get(url, headers={"Range": "bytes=-53"})
    outside = client.get(url, headers={"Range": f"bytes={len(SOURCE) + 10}-"})
    unchanged = client.get(url, headers={"If-None-Match": f'"{SOURCE_SHA256}"'})

    assert (part.status_code, part.data) == (206, SOURCE[100:1100])
    assert part.headers["Content-Range"] == f"bytes 100-1099/{len(SOURCE)}"
    assert (tail.status_code, tail.data) == (206, SOURCE[-53:])
    assert outside.status_code == 416 and outside.headers["Content-Range"] == f"bytes */{len(SOURCE)}"
    assert outside.json["detail"]
    assert (unchanged.status_code, unchanged.data) == (304, b"")


def test_a_range_is_served_when_one_can_be_and_ignored_when_not_understood(app, client, media):
    post_call(client, recorded_call(media))
    drain(app)
    url = LOOKUP + SESSION + "/audio"
    whole = f"bytes */{len(SOURCE)}"

    def get(value: str):
        response = client.get(url, headers={"Range": value})
        return response.status_code, response.headers.get("Content-Range"), response.data

    # Nothing of the audio asked for: the last no bytes, or only ranges past its end.
    assert get("bytes=-0")[:2] == (416, whole)
    assert get(f"bytes={len(SOURCE)}-, -0")[:2] == (416, whole)
    # Several ranges, one of them satisfiable: the whole audio.
    assert get("bytes=0-0,100-199") == (200, None, SOURCE)
    assert get(f"bytes=-0, {len(SOURCE)}-, 5-9") == (200, None, SOURCE)
    # A unit it does not know, or a set that is not one of byte ranges: ignored.
    assert get("items=0-9") == (200, None, SOURCE)
    assert get("bytes=9-5") == (200, None, SOURCE)
    assert get("bytes=" + "9" * 5000 + "-") == (200, None, SOURCE)
    # One range, however written.
    assert get("Bytes= 10-19 ,") == (206, f"bytes 10-19/{len(SOURCE)}", SOURCE[10:20])
    assert get(f"bytes=-{len(SOURCE) + 100}") == (206, f"bytes 0-{len(SOURCE) - 1}/{len(SOURCE)}", SOURCE)


def test_if_range_serves_the_range_only_for_the_audio_it_names(app, client, media):
    post_call(client, recorded_call(media))
    drain(app)
    url = LOOKUP + SESSION + "/audio"
    first = client.get(url)
    assert first.data == SOURCE
    etag, stored = first.headers["ETag"], first.headers["Last-Modified"]

    def get(if_range: str, value: str = "bytes=-100"):
        response = client.get(url, headers={"Range": value, "If-Range": if_range})
        return response.status_code, response.data

    assert get(etag) == (206, SOURCE[-100:])
    assert get(stored) == (206, SOURCE[-100:])
    assert get('"another"') == (200, SOURCE)
    assert get("W/" + etag) == (200, SOURCE)  # If-Range compares tags strongly
    assert get("Mon, 01 Jan 2001 00:00:00 GMT") == (200, SOURCE)
    # A stale If-Range asks for the whole audio: what the Range says no longer matters.
    assert get('"another"', value="bytes=-0") == (200, SOURCE)
    assert get(etag, value="bytes=-0")[0] == 416


def test_no_audio_until_stored_and_none_for_unknown_recordings(app, client, media):
    post_call(client, recorded_call(media))

    assert client.get(LOOKUP + SESSION + "/audio").status_code == 404
    assert client.get(LOOKUP + "conf_nope/audio").json == {"detail": "Audio not found"}
    assert client.get(LOOKUP + "conf_nope/legs").json == {"detail": "Recording not found"}


def test_a_url_that_answers_404_three_times_then_serves_completes(app, client, media):
    calls = fixture_call("recorded-call")
    url = media.serve_after("/fresh.mp3", [404, 404, 404], SOURCE)
    post_call(client, [*calls[:-1], {**calls[-1], "recordingUrl": url}])

    body = settle(app, client, SESSION)

    assert body["status"] == "completed"
    assert media.fetches("/fresh.mp3") == 4
    [leg] = client.get(LOOKUP + SESSION + "/legs").json["items"]
    assert (leg["audio"]["status"], leg["audio"]["attempts"], leg["audio"]["last_error"]) == (
        "stored",
        4,
        None,
    )


def test_a_url_that_never_serves_fails_as_unavailable_after_the_give_up_time(
    make_app, storage_settings, media
):
    app = make_app(AUDIO_FETCH_GIVE_UP=0.3, **storage_settings, **FAST_RETRIES)
    client = app.test_client()
    calls = fixture_call("recorded-call")
    url = media.status("/gone.mp3", 404)
    post_call(client, [*calls[:-1], {**calls[-1], "recordingUrl": url}])

    body = settle(app, client, SESSION)

    assert (body["status"], body["failure_reason"], body["recording_url"]) == (
        "failed",
        "recording_unavailable",
        url,
    )
    assert media.fetches("/gone.mp3") >= 2  # retried until the give-up
    [leg] = client.get(LOOKUP + SESSION + "/legs").json["items"]
    assert leg["audio"]["status"] == "failed" and "404" in leg["audio"]["last_error"]
    with app.app_context():
        assert db.session.execute(sa.select(Job.state)).scalar_one().value == "failed"


def test_html_instead_of_audio_fails_as_invalid(make_app, storage_settings, media):
    app = make_app(AUDIO_FETCH_GIVE_UP=0.3, **storage_settings, **FAST_RETRIES)
    client = app.test_client()
    calls = fixture_call("recorded-call")
    url = media.serve("/login.html", b"<html><body>Please sign in</body></html>" * 20, "text/html")
    post_call(client, [*calls[:-1], {**calls[-1], "recordingUrl": url}])

    body = settle(app, client, SESSION)

    assert (body["status"], body["failure_reason"]) == ("failed", "recording_invalid")
    [leg] = client.get(LOOKUP + SESSION + "/legs").json["items"]
    assert "text/html" in leg["audio"]["last_error"] and "not audio" in leg["audio"]["last_error"]


def test_a_body_cut_short_of_its_content_length_is_fetched_again(app, client, media):
    calls = fixture_call("recorded-call")
    headers = {"Content-Type": "audio/mpeg", "Content-Length": str(len(SOURCE))}
    cut = Answer(200, headers, lambda: [SOURCE[:20000]], close=True)  # mutagen alone would take it: 5.0 s
    media.serve_file("/cut.mp3")
    media.answers["/cut.mp3"] = [cut, media.answers["/cut.mp3"]]
    post_call(client, [*calls[:-1], {**calls[-1], "recordingUrl": media.url("/cut.mp3")}])

    body = settle(app, client, SESSION)

    assert (body["status"], body["duration"]) == ("completed", 7)
    assert hashlib.sha256(client.get(LOOKUP + SESSION + "/audio").data).hexdigest() == SOURCE_SHA256


def test_every_recorded_leg_is_stored_and_shown(app, client, media):
    a, b = "ATVId_leg_a", "ATVId_leg_b"
    client.post("/api/v1/voice/recordings", json={"recording_id": "conf_two", "session_ids": [a, b]})
    final = fixture_call("recorded-call")[-1]
    short = {
        **final,
        "sessionId": a,
        "dialDurationInSeconds": "30",
        "recordingUrl": media.serve_file("/a.mp3"),
    }
    long = {
        **final,
        "sessionId": b,
        "dialDurationInSeconds": "90",
        "recordingUrl": media.serve_file("/b.mp3"),
    }
    post_call(client, [short, long])

    body = settle(app, client, "conf_two")
    legs = {leg["session_id"]: leg for leg in client.get(LOOKUP + "conf_two/legs").json["items"]}

    # The lookup shows the longest leg's; both are kept and both can be downloaded.
    assert (body["status"], body["recording_url"]) == ("completed", long["recordingUrl"])
    assert (legs[a]["primary"], legs[b]["primary"]) == (False, True)
    for session_id in (a, b):
        audio = legs[session_id]["audio"]
        assert (audio["status"], audio["sha256"], audio["size"]) == ("stored", SOURCE_SHA256, len(SOURCE))
        download = client.get(audio["url"].removeprefix("https://recordings.example"))
        assert hashlib.sha256(download.data).hexdigest() == SOURCE_SHA256


def test_production_never_fetches_from_a_private_address(make_app, storage_settings, media):
    app = make_app(EGRESS_ALLOW_PRIVATE=False, **storage_settings, **FAST_RETRIES)
    client = app.test_client()
    post_call(client, recorded_call(media))

    body = settle(app, client, SESSION)

    assert (body["status"], body["failure_reason"]) == ("failed", "recording_unavailable")
    assert media.connections == 0  # refused before connecting, and not retried: it cannot change
    [leg] = client.get(LOOKUP + SESSION + "/legs").json["items"]
    assert leg["audio"]["attempts"] == 1 and "127.0.0.1" in leg["audio"]["last_error"]


def test_replay_rebuilds_the_same_state_from_callbacks_and_the_stored_audio(app, client, runner, media):
    post_call(client, recorded_call(media))
    drain(app)
    before = client.get(LOOKUP + SESSION).json

    result = runner.invoke(args=["recordings", "replay"])

    assert "replayed 1 recordings: 0 changed" in result.output
    assert client.get(LOOKUP + SESSION).json == before


def test_the_queue_is_visible_to_operators(app, client, runner, media):
    calls = fixture_call("recorded-call")
    post_call(client, [*calls[:-1], {**calls[-1], "recordingUrl": media.status("/late.mp3", 503)}])
    drain(app)

    listing = runner.invoke(args=["recordings", "jobs"])
    metrics = client.get("/metrics").text

    assert listing.exit_code == 0, listing.output
    assert "fetch_audio: 1 pending" in listing.output and "attempts=1" in listing.output
    assert "503" in listing.output and SESSION in listing.output
    assert 'jobs{kind="fetch_audio",state="pending"} 1.0' in metrics
    assert 'jobs_oldest_due_seconds{kind="fetch_audio"}' in metrics


def call_of(session_id: str, url: str) -> list[dict]:
    """The shared recorded call's callbacks, as the session ``session_id`` whose recording is at ``url``."""
    return [
        {**fields, "sessionId": session_id, **({"recordingUrl": url} if "recordingUrl" in fields else {})}
        for fields in fixture_call("recorded-call")
    ]


def wait_for(condition, seconds: float) -> float:
    """Seconds until ``condition()`` held; fails the test if it did not within ``seconds``."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, "gave up waiting"
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.mark.slow
def test_urls_trickling_their_answer_hold_no_fetch_past_its_deadline(
    make_app, database, storage_settings, media
):
    from testkit.servers import worker

    deadline, threads = 1.0, 4
    app = make_app(**storage_settings, **FAST_RETRIES)
    client = app.test_client()
    # As many URLs as the worker has fetching threads, each sending its headers a byte every 50 ms.
    slow = [f"ATVId_trickle_{n}" for n in range(threads)]
    for session_id in slow:
        post_call(client, call_of(session_id, media.trickle(f"/{session_id}.mp3")))
    settings = {
        **storage_settings,
        "WORKER_CONCURRENCY": str(threads),
        "AUDIO_FETCH_DEADLINE": str(deadline),
        "AUDIO_FETCH_RETRY_BASE_SECONDS": "0.01",
        "AUDIO_FETCH_RETRY_MAX_SECONDS": "0.02",
    }
    with worker(database, **settings):
        wait_for(lambda: all(media.fetches(f"/{session_id}.mp3") for session_id in slow), 30)
        post_call(client, recorded_call(media))  # every thread is held by a trickling URL now
        took = wait_for(lambda: client.get(LOOKUP + SESSION).json["status"] == "completed", deadline * 10)

    assert took < deadline * 3
    assert media.trickled and all(seconds < deadline * 2 for seconds in media.trickled), media.trickled
    for session_id in slow:  # each attempt ended as a timeout does: tried again
        [leg] = client.get(LOOKUP + session_id + "/legs").json["items"]
        assert leg["audio"]["status"] == "pending" and "Timeout" in leg["audio"]["last_error"]


def audio_keys(app, *session_ids: str) -> list[str | None]:
    with app.app_context():
        return [
            db.session.execute(sa.select(CallSession.audio_key).filter_by(session_id=session_id)).scalar_one()
            for session_id in session_ids
        ]


def test_legs_whose_session_ids_make_one_name_keep_their_own_audio(app, client, media):
    # Keyed by session id and extension, both would be "ATVId_col.mp3".
    mp3, aiff = "ATVId_col", "ATVId_col.mp3"
    post_call(client, call_of(mp3, media.serve_file("/col.mp3")))
    post_call(client, call_of(aiff, media.serve("/col.aiff", AIFF, "audio/aiff")))

    drain(app)

    keys = audio_keys(app, mp3, aiff)
    for session_id, body in ((mp3, SOURCE), (aiff, AIFF)):
        assert client.get(LOOKUP + session_id).json["status"] == "completed"
        assert client.get(LOOKUP + session_id + "/audio").data == body
    assert client.delete(LOOKUP + aiff).status_code == 204
    assert client.get(LOOKUP + mp3 + "/audio").data == SOURCE  # deleting one left the other's audio
    assert keys[0].endswith(".mp3") and keys[1].endswith(".bin"), keys  # an extension always


def test_audio_stored_under_an_earlier_key_is_still_served_and_deleted(app, client, media):
    # Audio stored before keys were named by primary keys keeps its key: the leg's row says where it is.
    post_call(client, recorded_call(media))
    drain(app)
    storage = app.extensions["audio_storage"]
    earlier = f"{SESSION}.mp3"
    [key] = audio_keys(app, SESSION)
    storage.put(earlier, io.BytesIO(SOURCE), content_type="audio/mpeg")
    storage.delete(key)
    with app.app_context():
        db.session.execute(sa.update(CallSession).filter_by(session_id=SESSION).values(audio_key=earlier))
        db.session.commit()

    audio = client.get(LOOKUP + SESSION + "/audio")
    deleted = client.delete(LOOKUP + SESSION)

    assert audio.status_code == 200 and audio.data == SOURCE
    assert deleted.status_code == 204
    with pytest.raises(ObjectNotFound):
        storage.stat(earlier)
