"""The ``voice`` blueprint: the recordings API under ``/api/v1/voice``."""

import logging

from flask import request, url_for
from flask_smorest import Blueprint, abort
from sqlalchemy.exc import SQLAlchemyError

from .errors import ErrorSchema
from .recordings import SessionConflict, find_recording, register_recording
from .schemas import RecordingSchema, RegistrationSchema

log = logging.getLogger(__name__)

blp = Blueprint("voice", __name__, url_prefix="/api/v1/voice", description="Recordings of conference calls")

NOT_FOUND = "Recording not found"
QUERY_FAILED = "Failed to query recording status"


# ``path`` so an id holding an (encoded) slash is still this route's 404, not a routing 404.
@blp.route("/recordings/<path:recording_id>", methods=["GET"])
@blp.response(200, RecordingSchema)
@blp.alt_response(404, schema=ErrorSchema, description=NOT_FOUND)
@blp.alt_response(500, schema=ErrorSchema, description=QUERY_FAILED)
def get_recording(recording_id: str):
    """Retrieve the status and details of a voice recording."""
    try:
        recording = find_recording(recording_id)
    except SQLAlchemyError:
        log.exception("looking up recording %r failed", recording_id)
        abort(500, message=QUERY_FAILED)
    if recording is None:
        abort(404, message=NOT_FOUND)
    return recording


@blp.route("/recordings", methods=["POST"])
@blp.arguments(RegistrationSchema)
@blp.response(201, RecordingSchema, description="Created")
@blp.alt_response(200, schema=RecordingSchema, description="Known already; new sessions added")
@blp.alt_response(409, schema=ErrorSchema, description="A session belongs to another recording")
@blp.alt_response(415, schema=ErrorSchema, description="The body is not JSON")
@blp.alt_response(422, schema=ErrorSchema, description="Invalid fields, each named")
def register(registration: dict):
    """Register a recording and the AT calls (sessions) that make it up."""
    if not request.is_json:
        # Without this, a form or an empty body would register a recording with a made-up id.
        abort(415, message="The body must be JSON (Content-Type: application/json)")
    try:
        recording, created = register_recording(
            registration.get("recording_id"), registration["session_ids"], registration.get("dial")
        )
    except SessionConflict as conflict:
        abort(409, message=f"Sessions {str(conflict)}")
    location = url_for("voice.get_recording", recording_id=recording.recording_id)
    return recording, 201 if created else 200, {"Location": location}
