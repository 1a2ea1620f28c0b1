"""``POST /api/v1/voice/calls`` (the ``calls`` blueprint): starting recorded calls through Africa's Talking."""

import json

from flask import Response, current_app, request, url_for
from flask_smorest import abort

from ..exceptions import KeyReused, RecordingDeleted, StartInProgress, UnusableEndpoint
from ..recordings import call_starts, events
from ..schemas import CallStartedSchema, CallStartSchema, ErrorSchema
from .auth import api_key_digest
from .blueprints import Blueprint, on_database_error

blp = Blueprint(
    "calls", __name__, url_prefix="/api/v1/voice", description="Calls started through Africa's Talking"
)

IDEMPOTENCY_KEY = {
    "in": "header",
    "name": "Idempotency-Key",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": "Any unique string (a UUID): a retry with the same key and body gets the first answer "
    "and places no second call; with another body, or from another API key, 422",
}
KEY_MAX_LENGTH = 255


def start_call_from(body: dict, config) -> call_starts.CallStart:
    """The start a loaded ``CallStartSchema`` body asks for; ValueError says what is missing."""
    from_number = body.get("from_number") or config["AT_VOICE_NUMBER"]
    if not from_number:
        raise ValueError("from: no AT number to call from (give one, or set AT_VOICE_NUMBER)")
    return call_starts.CallStart(
        to=body["to"],
        from_number=from_number,
        dial=body.get("dial"),
        sequential=body.get("sequential"),
        recording_id=body.get("recording_id"),
        status_callback_url=body.get("status_callback_url"),
    )


@blp.route("/calls", methods=["POST"])
@blp.arguments(CallStartSchema)
@blp.response(201, CallStartedSchema, description="AT placed the calls (each leg says what AT answered)")
@blp.alt_response(409, schema=ErrorSchema, description="The Idempotency-Key's first request is under way")
@blp.alt_response(
    422, schema=ErrorSchema, description="Invalid fields, each named; an Idempotency-Key reused"
)
@blp.alt_response(502, schema=ErrorSchema, description="AT refused: the recording is failed with AT's reason")
@blp.alt_response(503, schema=ErrorSchema, description="The service is not set up to start calls")
@blp.alt_response(504, schema=ErrorSchema, description="AT did not answer in time: the recording is failed")
@blp.doc(parameters=[IDEMPOTENCY_KEY])
@on_database_error("Failed to start the call")
def start_call(body: dict):
    """Start recorded calls: AT calls each number; each answered call dials `dial`, recorded.

    The recording and its legs exist before AT is asked, so a call's first callback, even one that
    comes before AT's answer, already dials the recording's numbers.
    """
    api = current_app.extensions["at_voice"]
    if api is None:
        abort(503, message="This service cannot start calls: AT_USERNAME and AT_API_KEY are not set")
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (0 < len(key) <= KEY_MAX_LENGTH and key.isprintable() and key.isascii()):
        abort(
            422, message=f"Invalid request: Idempotency-Key: 1 to {KEY_MAX_LENGTH} printable ASCII characters"
        )
    try:
        start = start_call_from(body, current_app.config)
    except ValueError as problem:
        abort(422, message=f"Invalid request: {problem}")
    if start.status_callback_url is not None:
        try:
            events.check_endpoint(start.status_callback_url)
        except UnusableEndpoint as refusal:
            abort(422, message=f"Invalid request: status_callback_url: {refusal}")
    try:
        answer = call_starts.start_call(
            start, api, key, call_starts.request_hash(request.get_json(), api_key_digest())
        )
    except KeyReused:
        abort(422, message="This Idempotency-Key came with another request: use a new key for a new start")
    except StartInProgress:
        abort(
            409,
            message="The first request with this Idempotency-Key is under way",
            headers={"Retry-After": "1"},
        )
    except RecordingDeleted:
        abort(409, message="That recording was deleted: its id is not given out again")
    response = Response(json.dumps(answer.body), status=answer.status, mimetype="application/json")
    if answer.recording_id:
        response.headers["Location"] = url_for("voice.get_recording", recording_id=answer.recording_id)
    return response
