"""The ``voice`` blueprint: the recordings API under ``/api/v1/voice``."""

import logging

from flask_smorest import Blueprint, abort
from sqlalchemy.exc import SQLAlchemyError

from .errors import ErrorSchema
from .recordings import find_recording
from .schemas import RecordingSchema

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
