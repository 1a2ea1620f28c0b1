"""Realistic Africa's Talking call sequences, shaped like shared/fixtures/africastalking, and a client
that posts them to a running service: for local development (``flask recordings simulate-call``)."""

import json
import random
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime

import click
from flask import current_app
from flask.cli import with_appcontext

from ..domain.recordings import Status

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
    session_id: str, outcome: str = "recorded", rng: random.Random | None = None
) -> list[dict[str, str]]:
    """Return the form posts AT makes for one call of ``outcome``, in the order it sends them."""
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
        duration = rng.randrange(20, 3600)
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
            final["recordingUrl"] = f"https://voice.africastalking.com/recording/{rng.getrandbits(48):012x}"
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


def _request(url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, method="POST" if body else "GET", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def simulate_call(
    base_url: str, recording_id: str, outcome: str, token: str | None, api_key: str | None = None
) -> Iterator[str]:
    """Register ``recording_id`` with a new session at ``base_url``, post the call's callbacks to it,
    and yield a line for each exchange, ending with the recording as the service then shows it."""
    base_url = base_url.rstrip("/")
    session_id = new_session_id()
    authorization = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    body = json.dumps({"recording_id": recording_id, "session_ids": [session_id]}).encode()
    headers = {"Content-Type": "application/json", **authorization}
    status, text = _request(f"{base_url}/api/v1/voice/recordings", body, headers)
    yield f"register {recording_id} with session {session_id}: {status}"
    if status >= 300:
        raise RuntimeError(f"registration refused: {text}")
    callback_url = f"{base_url}/api/v1/voice/callback" + (
        f"?{urllib.parse.urlencode({'token': token})}" if token else ""
    )
    for fields in call_sequence(session_id, outcome):
        form = urllib.parse.urlencode(fields).encode()
        status, text = _request(callback_url, form, {"Content-Type": "application/x-www-form-urlencoded"})
        state = fields.get("callSessionState")
        yield f"callback isActive={fields['isActive']} {state}: {status} {text}".rstrip()
        if status >= 300:
            raise RuntimeError(f"callback refused: {text}")
    yield _request(f"{base_url}/api/v1/voice/recordings/{recording_id}", headers=authorization)[1].strip()


@click.command("simulate-call")
@with_appcontext
@click.argument("recording_id")
@click.option(
    "--url", "base_url", default="http://localhost:8000", show_default=True, help="The running service."
)
@click.option("--outcome", type=click.Choice(list(OUTCOMES)), default="recorded", show_default=True)
@click.option("--token", help="The callback token (default: VOICE_CALLBACK_TOKEN).")
@click.option("--api-key", envvar="RECORDINGS_API_KEY", help="An API key, when the service requires one.")
def simulate_call_command(
    recording_id: str, base_url: str, outcome: str, token: str | None, api_key: str | None
) -> None:
    """Post a realistic Africa's Talking call for RECORDING_ID to a running service.

    Registers the recording with a new AT session, posts the call's callbacks as AT would, and
    prints each answer and the recording at the end.
    """
    try:
        token = token or current_app.config["VOICE_CALLBACK_TOKEN"]
        for line in simulate_call(base_url, recording_id, outcome, token, api_key):
            click.echo(line)
    except (OSError, RuntimeError) as error:
        raise click.ClickException(str(error)) from error
