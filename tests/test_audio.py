"""Processing means processing: each leg's recording fetched, verified and stored, then served.

Every test here runs on both databases and both storage backends (a directory, and S3 on moto); those
that fetch a recording, with the 22 kHz recorded call and with 8 kHz MP3 and WAV (testkit/audio.py).
"""

import hashlib
import io
import time

import pytest
import sqlalchemy as sa

from recordings_service.exceptions import ObjectNotFound
from recordings_service.extensions import db
from recordings_service.persistence.models import Job, Leg
from testkit.audio import (
    ACCEPTED,
    EVERYDAY,
    HALF_SECOND,
    HTML_PAGE,
    MP3_8K,
    PHONE,
    RECORDED,
    WAV_8K,
    broken_mp4,
    broken_wavpack,
    lying_flac,
    lying_mp3,
    lying_wav,
)
from testkit.media import Answer
from tests.support import drain, fixture_call, recorded_call

CALLBACK = "/api/v1/voice/callback"
LOOKUP = "/api/v1/voice/recordings/"
SESSION = fixture_call("recorded-call")[0]["sessionId"]
SOURCE = RECORDED.data

# Retries come at once (a few milliseconds), so a test can run them all.
FAST_RETRIES = {"AUDIO_FETCH_RETRY_BASE_SECONDS": 0.01, "AUDIO_FETCH_RETRY_MAX_SECONDS": 0.02}


@pytest.fixture(params=EVERYDAY, ids=lambda recording: recording.name)
def recording(request):
    """A recording AT may serve: the 22 kHz call, 8 kHz MP3 and 8 kHz WAV."""
    return request.param


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


def test_a_recording_is_processing_until_its_audio_is_stored_then_completed_and_served(
    app, client, media, recording
):
    calls = recorded_call(media, file=recording.path, content_type=recording.content_type)
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
    assert completed["duration"] == recording.duration  # the stored audio's own length, whole seconds
    assert completed["recording_url"] == calls[-1]["recordingUrl"]  # exactly what AT sent
    assert completed["processed_at"] is not None and completed["processed_at"] > processing["created_at"]
    assert completed["audio_url"] == f"https://recordings.example/api/v1/voice/recordings/{SESSION}/audio"

    audio = client.get(completed["audio_url"].removeprefix("https://recordings.example"))
    assert audio.status_code == 200 and audio.mimetype == recording.content_type
    assert hashlib.sha256(audio.data).hexdigest() == recording.sha256
    assert audio.headers["ETag"] == f'"{recording.sha256}"' and audio.headers["Accept-Ranges"] == "bytes"


def test_the_audio_answers_ranges_and_revalidation(app, client, media, recording):
    post_call(client, recorded_call(media, file=recording.path, content_type=recording.content_type))
    drain(app)
    url = LOOKUP + SESSION + "/audio"
    source = recording.data

    part = client.get(url, headers={"Range": "bytes=100-1099"})
    tail = client.get(url, headers={"Range": "bytes=-53"})
    outside = client.get(url, headers={"Range": f"bytes={len(source) + 10}-"})
    unchanged = client.get(url, headers={"If-None-Match": f'"{recording.sha256}"'})

    assert (part.status_code, part.data) == (206, source[100:1100])
    assert part.headers["Content-Range"] == f"bytes 100-1099/{len(source)}"
    assert (tail.status_code, tail.data) == (206, source[-53:])
    assert outside.status_code == 416 and outside.headers["Content-Range"] == f"bytes */{len(source)}"
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


def test_a_url_that_answers_404_three_times_then_serves_completes(app, client, media, recording):
    calls = fixture_call("recorded-call")
    url = media.serve_after("/fresh.mp3", [404, 404, 404], recording.data, recording.content_type)
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


def test_html_instead_of_audio_fails_as_invalid_at_once(app, client, media):
    calls = fixture_call("recorded-call")
    url = media.serve("/login.html", b"<html><body>Please sign in</body></html>" * 20, "text/html")
    post_call(client, [*calls[:-1], {**calls[-1], "recordingUrl": url}])

    body = settle(app, client, SESSION)

    assert (body["status"], body["failure_reason"]) == ("failed", "recording_invalid")
    [leg] = client.get(LOOKUP + SESSION + "/legs").json["items"]
    assert "text/html" in leg["audio"]["last_error"] and "not audio" in leg["audio"]["last_error"]
    assert leg["audio"]["attempts"] == 1  # not retried until AUDIO_FETCH_GIVE_UP: it cannot change


def test_a_body_cut_short_of_its_content_length_is_fetched_again(app, client, media, recording):
    calls = fixture_call("recorded-call")
    source = recording.data
    headers = {"Content-Type": recording.content_type, "Content-Length": str(len(source))}
    # The first two thirds alone are more than a second of audio: only the length tells it was cut.
    cut = Answer(200, headers, lambda: [source[: len(source) * 2 // 3]], close=True)
    media.serve_file("/cut", recording.path, recording.content_type)
    media.answers["/cut"] = [cut, media.answers["/cut"]]
    post_call(client, [*calls[:-1], {**calls[-1], "recordingUrl": media.url("/cut")}])

    body = settle(app, client, SESSION)

    assert (body["status"], body["duration"]) == ("completed", recording.duration)
    assert hashlib.sha256(client.get(LOOKUP + SESSION + "/audio").data).hexdigest() == recording.sha256


def test_every_recorded_leg_is_stored_and_shown(app, client, media, recording):
    a, b = "ATVId_leg_a", "ATVId_leg_b"
    client.post("/api/v1/voice/recordings", json={"recording_id": "conf_two", "session_ids": [a, b]})
    final = fixture_call("recorded-call")[-1]
    short = {
        **final,
        "sessionId": a,
        "dialDurationInSeconds": "30",
        "recordingUrl": media.serve_file("/a", recording.path, recording.content_type),
    }
    long = {
        **final,
        "sessionId": b,
        "dialDurationInSeconds": "90",
        "recordingUrl": media.serve_file("/b", recording.path, recording.content_type),
    }
    post_call(client, [short, long])

    body = settle(app, client, "conf_two")
    legs = {leg["session_id"]: leg for leg in client.get(LOOKUP + "conf_two/legs").json["items"]}

    # The lookup shows the longest leg's; both are kept and both can be downloaded.
    assert (body["status"], body["recording_url"]) == ("completed", long["recordingUrl"])
    assert (legs[a]["primary"], legs[b]["primary"]) == (False, True)
    for session_id in (a, b):
        audio = legs[session_id]["audio"]
        stored = (audio["status"], audio["sha256"], audio["size"])
        assert stored == ("stored", recording.sha256, len(recording.data))
        download = client.get(audio["url"].removeprefix("https://recordings.example"))
        assert hashlib.sha256(download.data).hexdigest() == recording.sha256


def test_production_never_fetches_from_a_private_address(make_app, storage_settings, media):
    app = make_app(EGRESS_ALLOW_PRIVATE=False, **storage_settings, **FAST_RETRIES)
    client = app.test_client()
    post_call(client, recorded_call(media))

    body = settle(app, client, SESSION)

    assert (body["status"], body["failure_reason"]) == ("failed", "recording_unavailable")
    assert media.connections == 0  # refused before connecting, and not retried: it cannot change
    [leg] = client.get(LOOKUP + SESSION + "/legs").json["items"]
    assert leg["audio"]["attempts"] == 1 and "127.0.0.1" in leg["audio"]["last_error"]


def test_replay_rebuilds_the_same_state_from_callbacks_and_the_stored_audio(
    app, client, runner, media, recording
):
    post_call(client, recorded_call(media, file=recording.path, content_type=recording.content_type))
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


def recorded_at(client, url: str) -> None:
    """Post the shared recorded call with its recording at ``url``."""
    calls = fixture_call("recorded-call")
    post_call(client, [*calls[:-1], {**calls[-1], "recordingUrl": url}])


def the_leg(client) -> dict:
    [leg] = client.get(LOOKUP + SESSION + "/legs").json["items"]
    return leg["audio"]


def the_job(app) -> tuple[str, int]:
    with app.app_context():
        state, attempts = db.session.execute(sa.select(Job.state, Job.attempts)).one()
        db.session.close()
    return state.value, attempts


@pytest.mark.parametrize("recording", ACCEPTED, ids=lambda recording: recording.name)
def test_telephone_audio_of_every_kind_completes_with_its_duration(app, client, media, recording):
    recorded_at(client, media.serve_file(f"/{recording.name}", recording.path, recording.content_type))

    body = settle(app, client, SESSION)

    assert (body["status"], body["duration"]) == ("completed", recording.duration)
    audio = client.get(LOOKUP + SESSION + "/audio")
    assert audio.mimetype == recording.content_type
    assert hashlib.sha256(audio.data).hexdigest() == recording.sha256


def test_untagged_8_khz_mp3_served_with_no_type_completes(app, client, media):
    recorded_at(client, media.serve_file("/call", MP3_8K.path, content_type="application/octet-stream"))

    body = settle(app, client, SESSION)

    assert (body["status"], body["duration"]) == ("completed", 3)
    audio = client.get(LOOKUP + SESSION + "/audio")
    assert (audio.mimetype, audio.data) == ("audio/mpeg", MP3_8K.data)


def content_length_lie(media, path: str) -> str:
    """Serve the whole recorded call under a Content-Length of 1,000: the client reads 1,000 bytes."""
    headers = {"Content-Type": "audio/mpeg", "Content-Length": "1000"}
    media.answers[path] = Answer(200, headers, lambda: [RECORDED.data], close=True)
    return media.url(path)


NOT_RECORDINGS = {
    "wav-claiming-4294967280-s": lambda media: media.serve("/x.wav", lying_wav(), "audio/wav"),
    "flac-claiming-4294967280-s": lambda media: media.serve("/x.flac", lying_flac(), "audio/flac"),
    "wavpack-with-no-rate": lambda media: media.serve("/x.wv", broken_wavpack(), "audio/x-wavpack"),
    "mp4-of-endless-size": lambda media: media.serve("/x.m4a", broken_mp4(), "audio/mp4"),
    "mp3-with-a-lying-xing-header": lambda media: media.serve("/x.mp3", lying_mp3()),
    "half-a-second": lambda media: media.serve_file("/half.wav", HALF_SECOND, "audio/wav"),
    "content-length-lie": lambda media: content_length_lie(media, "/lie.mp3"),
    "html-page-as-mp3": lambda media: media.serve_file("/login.mp3", HTML_PAGE, "audio/mpeg"),
}


@pytest.mark.parametrize("serve", NOT_RECORDINGS.values(), ids=NOT_RECORDINGS.keys())
def test_bytes_that_are_not_a_recording_fail_at_once_with_the_reason(app, client, media, serve):
    recorded_at(client, serve(media))

    body = settle(app, client, SESSION)

    assert (body["status"], body["failure_reason"], body["audio_url"]) == (
        "failed",
        "recording_invalid",
        None,
    )
    leg = the_leg(client)
    assert (leg["status"], leg["attempts"]) == ("failed", 1)
    assert "not audio" in leg["last_error"] or "of audio" in leg["last_error"]
    assert the_job(app) == ("failed", 1)  # settled by its first attempt: no 24 h of retries


@pytest.mark.parametrize(
    "serve",
    [
        lambda media: media.status("/forbidden.mp3", 403),
        lambda media: media.redirect("/loop.mp3", media.url("/loop.mp3")),
    ],
    ids=["403", "redirect-loop"],
)
def test_a_url_that_cannot_serve_by_waiting_fails_at_once(app, client, media, serve):
    recorded_at(client, serve(media))

    body = settle(app, client, SESSION)

    assert (body["status"], body["failure_reason"]) == ("failed", "recording_unavailable")
    assert (the_leg(client)["attempts"], the_job(app)) == (1, ("failed", 1))


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
            db.session.execute(sa.select(Leg.audio_key).filter_by(session_id=session_id)).scalar_one()
            for session_id in session_ids
        ]


def test_legs_whose_session_ids_make_one_name_keep_their_own_audio(app, client, media):
    # Keyed by session id and extension, both would be "ATVId_col.mp3".
    mp3, wav = "ATVId_col", "ATVId_col.mp3"
    post_call(client, call_of(mp3, media.serve_file("/col.mp3")))
    post_call(client, call_of(wav, media.serve_file("/col.wav", WAV_8K.path, WAV_8K.content_type)))

    drain(app)

    keys = audio_keys(app, mp3, wav)
    for session_id, body in ((mp3, SOURCE), (wav, WAV_8K.data)):
        assert client.get(LOOKUP + session_id).json["status"] == "completed"
        assert client.get(LOOKUP + session_id + "/audio").data == body
    assert client.delete(LOOKUP + wav).status_code == 204
    assert client.get(LOOKUP + mp3 + "/audio").data == SOURCE  # deleting one left the other's audio
    assert keys[0].endswith(".mp3") and keys[1].endswith(".wav"), keys  # an extension always


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
        db.session.execute(sa.update(Leg).filter_by(session_id=SESSION).values(audio_key=earlier))
        db.session.commit()

    audio = client.get(LOOKUP + SESSION + "/audio")
    deleted = client.delete(LOOKUP + SESSION)

    assert audio.status_code == 200 and audio.data == SOURCE
    assert deleted.status_code == 204
    with pytest.raises(ObjectNotFound):
        storage.stat(earlier)


def final_saying(duration: str, url: str) -> list[dict]:
    """The shared recorded call, its recording at ``url``, AT saying the call lasted ``duration``."""
    calls = fixture_call("recorded-call")
    final = {
        **calls[-1],
        "durationInSeconds": duration,
        "dialDurationInSeconds": duration,
        "recordingUrl": url,
    }
    return [*calls[:-1], final]


def test_audio_longer_than_its_call_is_not_a_recording_of_it(app, client, media):
    post_call(client, final_saying("10", media.serve_file("/long.mp3", PHONE.path, PHONE.content_type)))

    body = settle(app, client, SESSION)

    assert (body["status"], body["failure_reason"]) == ("failed", "recording_invalid")
    assert "30 s of audio, longer than its 10 s call" in the_leg(client)["last_error"]


def test_audio_as_long_as_its_call_completes(app, client, media):
    post_call(client, final_saying("30", media.serve_file("/call.mp3", PHONE.path, PHONE.content_type)))

    body = settle(app, client, SESSION)

    assert (body["status"], body["duration"]) == ("completed", PHONE.duration)
