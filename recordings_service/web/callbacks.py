"""The ``callbacks`` blueprint: the URL Africa's Talking posts voice callbacks to.

AT cannot sign its requests, so the URL carries a secret (``?token=``) and, optionally, only some
networks may post. A callback that gets a 2xx is stored and applied; one that cannot be is refused
with an error, never acknowledged.
"""

import hmac
import ipaddress
import logging
from functools import lru_cache
from urllib.parse import parse_qsl

from flask import Response, current_app, g, request
from flask_smorest import abort

from ..domain.rules import CallReport
from ..integrations.africastalking.callback_form import CallbackSchema, actions_xml
from ..recordings.lifecycle import ingest_callback
from ..schemas import ErrorSchema
from .auth import public
from .blueprints import Blueprint, on_database_error
from .observability import CALLBACKS

log = logging.getLogger(__name__)

blp = Blueprint(
    "callbacks", __name__, url_prefix="/api/v1/voice", description="Africa's Talking voice callbacks"
)

FORM = "application/x-www-form-urlencoded"
TOKEN_PARAMETER = {
    "in": "query",
    "name": "token",
    "required": False,
    "schema": {"type": "string"},
    "description": "VOICE_CALLBACK_TOKEN: required whenever the service has one (always in production)",
}


@lru_cache(maxsize=8)
def _networks(cidrs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def _allowed(address: str | None, cidrs: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(ip in network for network in _networks(tuple(cidrs)))


@blp.before_request
def guard():
    """Refuse, before reading the body, what does not come from AT or is not a callback."""
    if request.method != "POST":
        return  # OPTIONS (Flask answers it): not a callback, nothing to guard or count
    config = current_app.config
    token = config["VOICE_CALLBACK_TOKEN"]
    if token and not hmac.compare_digest(request.args.get("token", "").encode(), token.encode()):
        abort(403, message="Invalid or missing callback token")
    networks = config["VOICE_CALLBACK_ALLOWED_NETWORKS"]
    if networks and not _allowed(request.remote_addr, networks):
        abort(403, message="Callbacks are not accepted from this address")
    if request.mimetype != FORM:
        abort(400, message=f"A callback must be a form ({FORM}), not {request.mimetype or 'empty'}")
    # Werkzeug does not refuse bytes that are not UTF-8: raw ones empty the whole form, percent-escaped
    # ones (%FF) reach the callback as the literal text "%FF". Refuse both, saying why.
    # (Reading the body here is bounded by MAX_CONTENT_LENGTH; the form is then parsed from the cache.)
    try:
        parse_qsl(request.get_data(cache=True).decode(), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        abort(400, message="A callback must be UTF-8")
    # Werkzeug caps the parts of multipart bodies only; AT's url-encoded ones are counted here.
    if len(request.form) > config["MAX_FORM_PARTS"]:
        abort(413, message=f"A callback has at most {config['MAX_FORM_PARTS']} fields")
    # No text a person or AT writes holds a NUL, and PostgreSQL cannot store one.
    with_nul = [repr(key) for key, value in request.form.items() if "\x00" in key or "\x00" in value]
    if with_nul:
        abort(400, message=f"Invalid request: {', '.join(with_nul)}: contains a NUL character")


@blp.after_request
def count_and_log(response: Response) -> Response:
    if request.method != "POST":
        return response
    if response.status_code >= 400:
        detail = (response.get_json(silent=True) or {}).get("detail")
        log.warning("callback refused: %s %s (from %s)", response.status_code, detail, request.remote_addr)
        CALLBACKS.labels("failed" if response.status_code >= 500 else "refused").inc()
    else:
        CALLBACKS.labels(g.callback_outcome).inc()
    return response


@blp.route("/callback", methods=["POST"])
@blp.arguments(CallbackSchema, location="form", error_status_code=400)
@blp.response(200, description="To a live call (isActive=1): AT XML actions; to the final request: empty")
@blp.alt_response(400, schema=ErrorSchema, description="Not a valid callback; nothing stored")
@blp.alt_response(403, schema=ErrorSchema, description="Wrong token or address; nothing stored")
@blp.alt_response(413, schema=ErrorSchema, description="Body too large; nothing stored")
@blp.alt_response(500, schema=ErrorSchema, description="Could not be stored; nothing acknowledged")
@blp.doc(parameters=[TOKEN_PARAMETER])
@public  # the ?token= guards it, not an API key
@on_database_error("Failed to store callback")
def receive_callback(report: CallReport):
    """Take a voice callback from Africa's Talking."""
    taken = ingest_callback(request.form.to_dict(), report, request.remote_addr)
    g.callback_outcome = "duplicate" if taken.duplicate else "applied"
    log.info(
        "callback session=%s recording=%s active=%s duplicate=%s status=%s",
        report.session_id,
        taken.recording_id,
        report.active,
        taken.duplicate,
        taken.status.value,
    )
    if not report.active:
        return Response(status=200, mimetype="text/plain")
    if taken.deleted:
        return Response(actions_xml([]), mimetype="application/xml")
    numbers = [] if taken.call_ended else taken.dial or current_app.config["VOICE_DIAL_NUMBERS"]
    if not numbers and not taken.call_ended:
        log.warning("no numbers to dial for recording %s: set VOICE_DIAL_NUMBERS", taken.recording_id)
    return Response(actions_xml(numbers, taken.sequential), mimetype="application/xml")
