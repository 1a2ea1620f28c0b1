"""The recordings API under ``/api/v1/voice`` (the ``voice`` blueprint): lookup, listing, registration."""

import logging
import random
import re
from collections.abc import Callable

import marshmallow as ma
from flask import Response, current_app, request, url_for
from flask_smorest import abort
from werkzeug.datastructures import ContentRange
from werkzeug.http import parse_dict_header

from ..domain.rules import Status, is_valid_recording_id
from ..exceptions import (
    NoRoomToWait,
    ObjectNotFound,
    RangeUnsatisfiable,
    RecordingDeleted,
    SessionConflict,
    StorageError,
    UnusableEndpoint,
    WaitedOnGone,
)
from ..integrations.audio_format import CONTENT_TYPES
from ..recordings import deletion, events, public
from ..recordings.public import AudioFile
from ..recordings.registration import register_recording
from ..schemas import (
    DeliveriesSchema,
    ErrorSchema,
    LegsSchema,
    ListQuerySchema,
    RecordingPageSchema,
    RecordingSchema,
    RegistrationSchema,
)
from .blueprints import Blueprint, on_database_error
from .ranges import range_applies, requested_span

log = logging.getLogger(__name__)

blp = Blueprint("voice", __name__, url_prefix="/api/v1/voice", description="Recordings of calls")

NOT_FOUND = "Recording not found"
QUERY_FAILED = "Failed to query recording status"


@blp.before_request
def refuse_ids_that_name_nothing():
    """Answer 404 for a recording id no recording can have, before any view takes it to the database
    (PostgreSQL refuses text holding NUL outright)."""
    if request.method == "OPTIONS":
        return  # a browser's preflight (Flask answers it): a 404 would fail it, and the request with it
    recording_id = (request.view_args or {}).get("recording_id")
    if recording_id is not None and not is_valid_recording_id(recording_id):
        abort(404, message=NOT_FOUND)


LOOKUP_HEADERS = {
    "ETag": {
        "description": "Strong tag of this body; send it back in If-None-Match",
        "schema": {"type": "string"},
    },
    "Cache-Control": {"description": "no-cache: revalidate with If-None-Match", "schema": {"type": "string"}},
    "Retry-After": {
        "description": "While recording or processing: seconds before polling again (longer when a"
        " Prefer: wait could not be held)",
        "schema": {"type": "integer"},
    },
    "Preference-Applied": {"description": "wait=N when the request was held", "schema": {"type": "string"}},
}
LOOKUP_PARAMETERS = [
    {
        "in": "header",
        "name": "If-None-Match",
        "schema": {"type": "string"},
        "description": "The ETag you have",
    },
    {
        "in": "header",
        "name": "Prefer",
        "schema": {"type": "string", "example": "wait=30"},
        "description": "wait=N (RFC 7240) with If-None-Match: hold the request until the recording changes "
        "or N seconds (at most 30) pass",
    },
]


@blp.route("/recordings", methods=["GET"])
# Unknown parameters are refused: a misspelt filter must not quietly list everything.
@blp.arguments(ListQuerySchema, location="query", error_status_code=400, unknown=ma.RAISE)
@blp.response(200, RecordingPageSchema)
@blp.alt_response(
    400,
    schema=ErrorSchema,
    description="A bad parameter, named; a cursor not from next_cursor, an empty one too",
)
@on_database_error("Failed to list recordings")
def list_recordings(query: dict):
    """List recordings, newest first, a page at a time."""
    items, next_position = public.page(
        query.get("status"),
        query.get("created_after"),
        query.get("created_before"),
        query["limit"],
        query.get("cursor"),
    )
    return {"items": items, "next_cursor": next_position}


# ``path`` so an id holding an (encoded) slash is still this route's 404, not a routing 404.
@blp.route("/recordings/<path:recording_id>", methods=["GET"])
@blp.response(200, RecordingSchema, headers=LOOKUP_HEADERS)
@blp.alt_response(304, description="Not modified: the If-None-Match tag is current")
@blp.alt_response(404, schema=ErrorSchema, description=NOT_FOUND)
@blp.alt_response(500, schema=ErrorSchema, description=QUERY_FAILED)
@blp.doc(parameters=LOOKUP_PARAMETERS)
@on_database_error(QUERY_FAILED)
def get_recording(recording_id: str):
    """Retrieve the status and details of a voice recording."""
    wait = requested_wait(request.headers.get("Prefer"), current_app.config["WAIT_MAX_SECONDS"])
    # A request that may be held: its read takes the waits' share of the database (single_read).
    may_wait = wait is not None and bool(request.if_none_match)
    rendered = public.read(recording_id, waiting=may_wait)
    if rendered is None:
        abort(404, message=NOT_FOUND)
    # A completed recording will not change while a client waits: answer at once. The tag is compared
    # weakly, as below: a front that compresses (deploy/nginx.conf's gzip) hands clients W/"...".
    waited = (
        may_wait
        and rendered.status is not Status.COMPLETED
        and request.if_none_match.contains_weak(rendered.etag)
    )
    refused = False
    if waited:
        try:
            rendered = (
                current_app.extensions["recording_watcher"].wait_for_change(recording_id, rendered.etag, wait)
                or rendered
            )
        except NoRoomToWait:
            waited, refused = False, True
        except WaitedOnGone:
            abort(404, message=NOT_FOUND)
    # If-None-Match is the one precondition a lookup honours (RFC 9110 13.1.2: weak comparison).
    # Checked here rather than with Response.make_conditional, which also parses dates and ranges
    # the lookup never sends: a tenth of the lookup's time.
    not_modified = request.if_none_match.contains_weak(rendered.etag)
    response = Response(
        None if not_modified else rendered.body,
        status=304 if not_modified else 200,
        mimetype="application/json",
    )
    response.set_etag(rendered.etag)
    response.headers["Cache-Control"] = "no-cache"  # revalidate: send the ETag back
    if not rendered.status.is_terminal:
        config = current_app.config
        after = (
            _back_off(config["WAIT_FULL_RETRY_AFTER_SECONDS"]) if refused else config["RETRY_AFTER_SECONDS"]
        )
        response.headers["Retry-After"] = str(after)
    if waited:
        response.headers["Preference-Applied"] = f"wait={wait}"
    return response


def _back_off(seconds: int) -> int:
    """Return the Retry-After of a wait the worker could not hold, between ``seconds`` and twice that.

    It is longer than a poller's, since clients over the budget asking again every RETRY_AFTER_SECONDS
    would take the worker's time from callbacks and lookups. It is random, since the clients turned
    away together (a wave) must not all come back together.
    """
    return random.randint(seconds, 2 * seconds)


_SECONDS = re.compile(r"[0-9]{1,10}")


def requested_wait(prefer: str | None, most: int) -> int | None:
    """Return the seconds a ``Prefer: wait=N`` header (RFC 7240) asks to wait, at most ``most``."""
    value = parse_dict_header(prefer or "").get("wait")
    if value is None or not _SECONDS.fullmatch(value):
        return None  # not a wait preference this server understands: ignored, as RFC 7240 says
    return min(int(value), most)


@blp.route("/recordings", methods=["POST"])
@blp.arguments(RegistrationSchema)
@blp.response(201, RecordingSchema, description="Created")
@blp.alt_response(200, schema=RecordingSchema, description="Known already; new sessions added")
@blp.alt_response(
    409, schema=ErrorSchema, description="A session belongs to another named recording, or to a deleted one"
)
@blp.alt_response(415, schema=ErrorSchema, description="The body is not JSON")
@blp.alt_response(
    422,
    schema=ErrorSchema,
    description="Invalid fields, each named; also a status_callback_url the service cannot post to "
    "(it has no WEBHOOK_SECRET, or the host does not resolve or is not allowed)",
)
@on_database_error("Failed to register recording")
def register(registration: dict):
    """Register a recording and the AT calls (sessions) that make it up.

    A session that AT called back about before it was registered is taken, with its callbacks, from the
    provisional recording its first callback made (which then goes away).
    """
    if not request.is_json:
        # Without this, a form or an empty body would register a recording with a made-up id.
        abort(415, message="The body must be JSON (Content-Type: application/json)")
    url = registration.get("status_callback_url")
    if url is not None:
        try:
            events.check_endpoint(url)
        except UnusableEndpoint as refusal:
            abort(422, message=f"Invalid request: status_callback_url: {refusal}")
    try:
        rendered, created = register_recording(
            registration.get("recording_id"),
            registration["session_ids"],
            registration.get("dial"),
            url,
            registration.get("sequential"),
        )
    except SessionConflict as conflict:
        abort(409, message=f"Sessions {str(conflict)}")
    except RecordingDeleted:
        abort(409, message="That recording was deleted: its id is not given out again")
    response = Response(rendered.body, status=201 if created else 200, mimetype="application/json")
    response.headers["Location"] = url_for("voice.get_recording", recording_id=rendered.recording_id)
    return response


AUDIO_NOT_FOUND = "Audio not found"
UNSATISFIABLE = "The Range is outside the audio"
# Binary, in every type the audio is stored as (audio/* for audio stored under an earlier type).
AUDIO_CONTENT = {
    content_type: {"schema": {"type": "string", "format": "binary"}}
    for content_type in [*CONTENT_TYPES, "audio/*"]
}
AUDIO_HEADERS = {
    "ETag": {"description": "The audio's SHA-256", "schema": {"type": "string"}},
    "Last-Modified": {"description": "When the audio was stored", "schema": {"type": "string"}},
    "Accept-Ranges": {"description": "bytes", "schema": {"type": "string"}},
}
CONTENT_RANGE = {"description": "bytes */<size>: the audio's size", "schema": {"type": "string"}}
AUDIO_RESPONSES = {
    "200": {
        "description": "The whole audio (also for a Range of several ranges, or a stale If-Range)",
        "content": AUDIO_CONTENT,
        "headers": AUDIO_HEADERS,
    },
    "206": {
        "description": "The one range asked for",
        "content": AUDIO_CONTENT,
        "headers": {
            **AUDIO_HEADERS,
            "Content-Range": {"description": "bytes <first>-<last>/<size>", "schema": {"type": "string"}},
        },
    },
}
AUDIO_PARAMETERS = [
    {
        "in": "header",
        "name": "Range",
        "schema": {"type": "string", "example": "bytes=0-1023"},
        "description": "One byte range (bytes=F-L, bytes=F-, bytes=-N) answers 206; several, 200 with "
        "the whole audio; none within the audio, 416; another unit is ignored",
    },
    {
        "in": "header",
        "name": "If-Range",
        "schema": {"type": "string"},
        "description": "The ETag or Last-Modified you have: the Range applies only to that audio",
    },
    {"in": "header", "name": "If-None-Match", "schema": {"type": "string"}},
]


@blp.route("/recordings/<path:recording_id>/legs", methods=["GET"])
@blp.response(200, LegsSchema)
@blp.alt_response(404, schema=ErrorSchema, description=NOT_FOUND)
@on_database_error(QUERY_FAILED)
def list_legs(recording_id: str):
    """List a recording's legs (its AT calls) and what became of each one's recording."""
    return _items_of_recording(public.legs(recording_id))


def _audio_view(view: Callable) -> Callable:
    """What both audio views answer, documented: the bytes, a range of them, 304, 404, 416."""
    view = on_database_error(QUERY_FAILED)(view)
    view = blp.alt_response(
        416, schema=ErrorSchema, description=UNSATISFIABLE, headers={"Content-Range": CONTENT_RANGE}
    )(view)
    view = blp.alt_response(404, schema=ErrorSchema, description=AUDIO_NOT_FOUND)(view)
    view = blp.alt_response(304, description="Not modified: the If-None-Match tag is current")(view)
    return blp.doc(responses=AUDIO_RESPONSES, parameters=AUDIO_PARAMETERS)(view)


@blp.route("/recordings/<path:recording_id>/audio", methods=["GET"])
@_audio_view
def get_audio(recording_id: str):
    """Download a recording's stored audio (its primary leg's)."""
    return _serve(public.audio_file(recording_id))


@blp.route("/recordings/<path:recording_id>/legs/<session_id>/audio", methods=["GET"])
@_audio_view
def get_leg_audio(recording_id: str, session_id: str):
    """Download the stored audio of one leg of a recording."""
    return _serve(public.audio_file(recording_id, session_id))


def _serve(audio: AudioFile | None) -> Response:
    """The audio's bytes from storage, streamed, with its type, a strong ETag (its SHA-256), its
    Last-Modified (when it was stored) and Range."""
    if audio is None:
        abort(404, message=AUDIO_NOT_FOUND)
    etag = audio.sha256
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, max-age=3600"}
    if request.if_none_match.contains_weak(etag):
        response = Response(status=304, headers=headers)
        response.set_etag(etag)
        response.last_modified = audio.stored_at
        return response
    span = None
    # If-Range first (RFC 9110 13.2.2): a stale validator asks for the whole audio, not a 416.
    if range_applies(request.headers.get("If-Range"), etag, audio.stored_at):
        try:
            span = requested_span(request.headers.get("Range"), audio.size)
        except RangeUnsatisfiable:
            abort(416, message=UNSATISFIABLE, headers={"Content-Range": f"bytes */{audio.size}"})
    start, stop = span or (0, audio.size)
    try:
        chunks = current_app.extensions["audio_storage"].read(audio.key, start, stop - start)
    except ObjectNotFound:  # removed (retention, a deletion) since the row was read
        abort(404, message=AUDIO_NOT_FOUND)
    except StorageError:
        log.exception("reading %s from the audio store failed", audio.key)
        abort(503, message="The audio store is unavailable; try again")
    response = Response(
        chunks,
        status=206 if span else 200,
        content_type=audio.content_type,
        headers=headers,
        direct_passthrough=True,
    )
    response.content_length = stop - start
    if span:
        response.content_range = ContentRange("bytes", start, stop, audio.size)
    response.set_etag(etag)
    response.last_modified = audio.stored_at  # If-Range may name it
    return response


# Not ``path``: that would match /recordings/<id>/audio and the like too, and so offer DELETE on them
# (Allow). An id cannot hold a slash; DELETE on one is answered like DELETE on a lookup: 405.
@blp.route("/recordings/<recording_id>", methods=["DELETE"])
@blp.response(204, description="Deleted: its audio, its personal data, the recording as clients see it")
@blp.alt_response(404, schema=ErrorSchema, description=NOT_FOUND)
@blp.alt_response(500, schema=ErrorSchema, description="The database failed; nothing was deleted")
@on_database_error("Failed to delete recording")
def delete_recording(recording_id: str):
    """Delete a recording: every leg's stored audio, the phone numbers and URLs it kept, and the recording.

    Its webhooks are told (recording.deleted). Lookups answer 404 from then on: in every process within
    COMPLETED_CACHE_SECONDS. Audio the store cannot delete at once is removed when it can.
    """
    deleted = deletion.delete_recording(recording_id, current_app.extensions["audio_storage"])
    if not deleted:
        abort(404, message=NOT_FOUND)
    return Response(status=204)


@blp.route("/recordings/<path:recording_id>/deliveries", methods=["GET"])
@blp.response(200, DeliveriesSchema)
@blp.alt_response(404, schema=ErrorSchema, description=NOT_FOUND)
@on_database_error(QUERY_FAILED)
def list_deliveries(recording_id: str):
    """List the webhook deliveries of a recording's events: attempts, the last answer, the next attempt."""
    return _items_of_recording(events.deliveries(recording_id))


def _items_of_recording(items: list | None) -> dict:
    """A recording's list (None: there is no such recording, a 404)."""
    if items is None:
        abort(404, message=NOT_FOUND)
    return {"items": items}
