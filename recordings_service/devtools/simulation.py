"""Realistic Africa's Talking call sequences, shaped like the callbacks AT posts, and a client that
posts them to a running service: for local development (``flask recordings simulate-call``)."""

import json
import mimetypes
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from ..domain.rules import Status
from ..exceptions import InvalidAudio
from ..integrations.audio_format import inspect
from ..recordings import public

# What each kind of call ends as: (status, failure_reason).
OUTCOMES = {
    "recorded": (Status.COMPLETED, None),
    "no-url": (Status.PROCESSING, None),
    "unanswered": (Status.FAILED, "SUBSCRIBER_ABSENT"),
    "busy": (Status.FAILED, "USER_BUSY"),
}


def new_session_id(rng: random.Random | None = None) -> str:
    return f"ATVId_{(rng or random.SystemRandom()).getrandbits(128):032x}"


def call_sequence(
    session_id: str,
    outcome: str = "recorded",
    rng: random.Random | None = None,
    recording_url: str | None = None,
    seconds: int | None = None,
) -> list[dict[str, str]]:
    """Return the form posts AT makes for one call of ``outcome``, in the order it sends them.

    A recorded call's URL is ``recording_url``, or one shaped like AT's (which nothing here can fetch);
    its bridged leg lasts ``seconds``, the recording's length, when known.
    """
    rng = rng or random.Random()
    started = datetime.now(UTC).strftime("%Y-%m-%d+%H:%M:%S")
    common = {
        "sessionId": session_id,
        "direction": "Inbound",
        "callerNumber": "+254711082111",
        "destinationNumber": "+254203893400",
        "callerCountryCode": "254",
        "callerCarrierName": "Safaricom",
        "callStartTime": started,
    }
    ringing = {"isActive": "1", **common, "callSessionState": "Ringing"}
    final = {"isActive": "0", **common, "currencyCode": "KES"}
    if outcome in ("recorded", "no-url"):
        duration = seconds if seconds is not None else rng.randrange(20, 3600)
        final |= {
            "callSessionState": "Completed",
            "status": "Success",
            "hangupCause": "NORMAL_CLEARING",
            "durationInSeconds": str(duration + 4),
            "dialDestinationNumber": "+254722000111",
            "dialDurationInSeconds": str(duration),
            "amount": f"{duration * 0.0133:.4f}",
        }
        if outcome == "recorded":
            final["recordingUrl"] = (
                recording_url or f"https://voice.africastalking.com/recording/{rng.getrandbits(48):012x}"
            )
        return [ringing, {"isActive": "1", **common, "callSessionState": "Answered"}, final]
    cause, status = {"unanswered": ("SUBSCRIBER_ABSENT", "NotAnswered"), "busy": ("USER_BUSY", "Failed")}[
        outcome
    ]
    ringing["callStartTime"] = final["callStartTime"] = "None"
    final |= {
        "callSessionState": "NotAnswered",
        "status": status,
        "hangupCause": cause,
        "durationInSeconds": "0",
        "amount": "0",
        "recordingUrl": "",
    }
    return [ringing, final]


def _request(url: str, body: bytes | None = None, headers: dict | None = None, with_etag: bool = False):
    """(status, text), or with ``with_etag`` (status, text, ETag); HTTP errors are answers too."""
    request = urllib.request.Request(url, data=body, method="POST" if body else "GET", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = response.status, response.read().decode(), response.headers.get("ETag")
    except urllib.error.HTTPError as error:
        answer = error.code, error.read().decode(), error.headers.get("ETag")
    return answer if with_etag else answer[:2]


# A real recording (7.3 s of speech, MP3): what simulate-call serves as the call's recordingUrl.
RECORDED_CALL = Path(__file__).with_name("recorded-call.mp3")
# A telephone call as telephony recorders write it (30.3 s of speech, 8 kHz MP3, no ID3 tag).
PHONE_CALL = Path(__file__).with_name("phone-call-8k.mp3")


class _Recording(BaseHTTPRequestHandler):
    """Serves the server's ``recording`` file at any path, as AT serves a recording."""

    server: "_RecordingServer"

    def do_GET(self):  # noqa: N802 (http.server's name)
        body = self.server.recording.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", mimetypes.guess_type(self.server.recording.name)[0] or "audio/mpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # the CLI prints what matters
        pass


class _RecordingServer(ThreadingHTTPServer):
    def __init__(self, recording: Path):
        self.recording = recording
        super().__init__(("127.0.0.1", 0), _Recording)


@contextmanager
def serving_a_recording(recording: Path = RECORDED_CALL) -> Iterator[str]:
    """Serve ``recording`` on a loopback port for as long as the block runs; yield its URL."""
    server = _RecordingServer(recording)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/recording/{uuid.uuid4().hex}{recording.suffix}"
    finally:
        server.shutdown()
        server.server_close()


def _length(recording: Path) -> int | None:
    """The recording's whole seconds, for the call to say it lasted; None for a file that is not audio."""
    try:
        with recording.open("rb") as file:
            return round(inspect(file).seconds)
    except InvalidAudio:
        return None


def simulate_call(
    base_url: str,
    recording_id: str,
    outcome: str,
    token: str | None,
    api_key: str | None = None,
    wait: float = 30,
    recording: Path = RECORDED_CALL,
) -> Iterator[str]:
    """Register ``recording_id`` with a new session at ``base_url``, post the call's callbacks to it,
    and yield a line for each exchange; then follow the recording (``Prefer: wait``) until it is
    completed or failed, or ``wait`` seconds pass, yielding each state it shows.

    A recorded call's URL serves ``recording`` from this process meanwhile, for the worker to fetch.
    """
    base_url = base_url.rstrip("/")
    session_id = new_session_id()
    authorization = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    body = json.dumps({"recording_id": recording_id, "session_ids": [session_id]}).encode()
    headers = {"Content-Type": "application/json", **authorization}
    with serving_a_recording(recording) as recording_url:
        status, text = _request(f"{base_url}/api/v1/voice/recordings", body, headers)
        yield f"register {recording_id} with session {session_id}: {status}"
        if status >= 300:
            raise RuntimeError(f"registration refused: {text}")
        callback_url = f"{base_url}/api/v1/voice/callback" + (
            f"?{urllib.parse.urlencode({'token': token})}" if token else ""
        )
        for fields in call_sequence(
            session_id, outcome, recording_url=recording_url, seconds=_length(recording)
        ):
            form = urllib.parse.urlencode(fields).encode()
            status, text = _request(callback_url, form, {"Content-Type": "application/x-www-form-urlencoded"})
            state = fields.get("callSessionState")
            yield f"callback isActive={fields['isActive']} {state}: {status} {text}".rstrip()
            if status >= 300:
                raise RuntimeError(f"callback refused: {text}")
        lookup = f"{base_url}/api/v1/voice/recordings/{recording_id}"
        if outcome == "recorded":  # the worker fetches the recording from this process meanwhile
            yield from _follow(lookup, authorization, wait)
        else:
            yield _request(lookup, headers=authorization)[1].strip()


def _follow(url: str, headers: dict, seconds: float) -> Iterator[str]:
    """Yield the recording's body each time it changes, until it is completed or failed or time is up."""
    deadline = time.monotonic() + seconds
    etag = None
    while True:
        left = int(deadline - time.monotonic())
        wait = {"If-None-Match": etag, "Prefer": f"wait={min(left, 10)}"} if etag and left > 0 else {}
        status, text, etag_now = _request(f"{url}", headers={**headers, **wait}, with_etag=True)
        if status == 200:
            yield text.strip()
            etag = etag_now
            if json.loads(text)["status"] in (Status.COMPLETED, Status.FAILED):
                return
        elif status != 304:
            raise RuntimeError(f"lookup answered {status}: {text}")
        if time.monotonic() >= deadline:
            yield f"(still not completed after {seconds:.0f} s: is the worker running? flask --app wsgi recordings worker)"
            return


@click.command("simulate-call")
@with_appcontext
@click.argument("recording_id")
@click.option("--url", "base_url", help="The running service (default: its address, http://localhost:PORT).")
@click.option("--outcome", type=click.Choice(list(OUTCOMES)), default="recorded", show_default=True)
@click.option("--token", help="The callback token (default: VOICE_CALLBACK_TOKEN).")
@click.option("--api-key", envvar="RECORDINGS_API_KEY", help="An API key, when the service requires one.")
@click.option(
    "--audio",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=RECORDED_CALL,
    help="The recording to serve (default: devtools/recorded-call.mp3; devtools/phone-call-8k.mp3 is 8 kHz).",
)
def simulate_call_command(
    recording_id: str, base_url: str, outcome: str, token: str | None, api_key: str | None, audio: Path
) -> None:
    """Post a realistic Africa's Talking call for RECORDING_ID to a running service.

    Registers the recording with a new AT session, posts the call's callbacks as AT would (a
    recorded call's URL is the --audio file this command serves meanwhile), prints each answer, then the
    recording each time it changes until it is completed or failed (the worker fetches the audio).
    """
    try:
        token = token or current_app.config["VOICE_CALLBACK_TOKEN"]
        for line in simulate_call(
            base_url or public.base_url(), recording_id, outcome, token, api_key, recording=audio
        ):
            click.echo(line)
    except (OSError, RuntimeError) as error:
        raise click.ClickException(str(error)) from error
