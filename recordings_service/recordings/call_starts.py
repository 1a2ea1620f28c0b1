"""Starting recorded calls through Africa's Talking.

The recording and one leg per number called (no session yet) are committed first, then AT is asked to
call. A call's first callback may reach the service before AT's answer does: it finds its leg by the
number called (``lifecycle``), so the live call already dials the recording's numbers. AT's answer then
names each leg's session; a session that a callback had already given a provisional recording (a leg
the match missed) is adopted, as a registration adopts it.

With an ``Idempotency-Key`` the answer is kept (in the database, so any process sees it): a retry with
the same key and body gets it again, and AT is not asked twice.
"""

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select

from ..domain.clock import utcnow
from ..domain.rules import AT_QUEUED, OUTBOUND, start_refused
from ..exceptions import KeyReused, NoAnswer, RecordingDeleted, StartInProgress, VoiceApiError
from ..extensions import db
from ..integrations.africastalking.voice_api import Entry, VoiceApi
from ..persistence.database import insert_ignoring_conflicts, write_transaction
from ..persistence.models import IdempotencyKey, Leg, Recording
from . import events, public
from .locks import create_or_lock_recording, legs_of, lock_recording, new_recording_id
from .registration import adopt, name_leg, owners_of

log = logging.getLogger(__name__)

# A leg's AT status when AT's answer had no entry for its number.
NOT_IN_ANSWER = "NotInAnswer"
AT_STATUS_MAX_LENGTH = 64


@dataclass(frozen=True)
class CallStart:
    """What a client asks for: whom AT calls, from which AT number, and what each answered call dials."""

    to: list[str]
    from_number: str
    dial: list[str] | None = None
    sequential: bool | None = None
    recording_id: str | None = None
    status_callback_url: str | None = None


@dataclass(frozen=True)
class Answer:
    """What the client is answered (kept for its Idempotency-Key): a status and a JSON body."""

    status: int
    body: dict
    recording_id: str | None


def request_hash(body: dict, api_key_digest: str = "") -> str:
    """Return the hash an Idempotency-Key is kept with, of the request's JSON and of who sent it.

    The JSON is put in one canonical form, so the same request hashes the same however its keys are
    ordered or spaced. The sender is ``web.auth.api_key_digest`` ("" with keys off and from the CLI). A client
    using another's key is making another request, which is refused, never answered with the other
    client's call.
    """
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{api_key_digest}\n{canonical}".encode()).hexdigest()


def start_call(start: CallStart, api: VoiceApi, key: str | None = None, request_hash: str = "") -> Answer:
    """Create the recording and its legs, ask AT to call, and record what AT answered; the answer.

    201 with the recording and its legs when AT placed a call; when it placed none (it refused, or did
    not answer), the recording is failed with AT's reason and the answer is AT's error (502, 504).
    Raises ``KeyReused``, ``StartInProgress`` and ``RecordingDeleted``, having changed nothing.
    """
    prepared = _prepare(start, key, request_hash, utcnow())
    if isinstance(prepared, Answer):
        return prepared
    recording_pk, leg_pks = prepared
    try:
        entries, refusal = api.call(start.from_number, start.to), None
    except VoiceApiError as error:
        entries, refusal = [], error
        log.warning("starting calls of recording pk=%s: %s", recording_pk, error)
    return _record(recording_pk, leg_pks, entries, refusal, key)


def _prepare(
    start: CallStart, key: str | None, request_hash: str, now: datetime
) -> Answer | tuple[int, list[int]]:
    with write_transaction() as session:
        kept = None
        if key is not None:
            kept, created = _claim(key, request_hash, now)
            if not created:
                return _kept_answer(kept, request_hash, now)
        recording, _ = create_or_lock_recording(start.recording_id or new_recording_id(), now, start.dial)
        if recording.deleted_at is not None:
            raise RecordingDeleted(recording.recording_id)
        recording.provisional = False
        if start.dial is not None:
            recording.dial = start.dial
        if start.sequential is not None:
            recording.dial_sequential = start.sequential
        if start.status_callback_url is not None:
            recording.status_callback_url = start.status_callback_url
        legs = [
            Leg(recording_pk=recording.pk, number=number, direction=OUTBOUND, created_at=now, updated_at=now)
            for number in start.to
        ]
        session.add_all(legs)
        session.flush()
        if kept is not None:
            kept.recording_pk = recording.pk
        return recording.pk, [leg.pk for leg in legs]


def _claim(key: str, request_hash: str, now: datetime) -> tuple[IdempotencyKey, bool]:
    """The key's row, locked, and whether this request made it. A second request with the key waits
    here until the first one's recording and legs are committed."""
    row = {"key": key, "request_hash": request_hash, "created_at": now}
    created = insert_ignoring_conflicts(db.session, IdempotencyKey.__table__, [row], unique=["key"]) == 1
    query = (
        select(IdempotencyKey).filter_by(key=key).with_for_update().execution_options(populate_existing=True)
    )
    return db.session.execute(query).scalar_one(), created


def _kept_answer(kept: IdempotencyKey, request_hash: str, now: datetime) -> Answer:
    if kept.request_hash != request_hash:
        raise KeyReused(kept.key)
    if kept.response_status is None:
        if now - kept.created_at < _given_up_after():
            raise StartInProgress(kept.key)
        return _interrupted(kept, now)
    recording = db.session.get(Recording, kept.recording_pk) if kept.recording_pk else None
    return Answer(kept.response_status, kept.response_body, recording.recording_id if recording else None)


def _given_up_after() -> timedelta:
    """How long a start may wait for AT's answer before the process asking is taken to have died."""
    return timedelta(seconds=4 * current_app.config["AT_VOICE_TIMEOUT_SECONDS"] + 60)


def _interrupted(kept: IdempotencyKey, now: datetime) -> Answer:
    """The answer, kept from now on, for a key whose first request never recorded AT's answer (its
    process died while AT was asked): whether AT placed the calls cannot be known, and asking again
    could ring everyone twice, so nobody is called and the client is told so."""
    recording = db.session.get(Recording, kept.recording_pk) if kept.recording_pk else None
    named = f" (recording {recording.recording_id})" if recording else ""
    detail = (
        "The first request with this Idempotency-Key stopped before Africa's Talking's answer was recorded:"
        f" whether the calls were placed is not known{named}; a call that was placed still shows in the"
        " recording when it is heard from. Nobody was called again; use a new key to start anew."
    )
    kept.response_status, kept.response_body, kept.completed_at = 502, {"detail": detail}, now
    log.warning("Idempotency-Key %s: its first start never recorded AT's answer%s", kept.key, named)
    return Answer(502, kept.response_body, recording.recording_id if recording else None)


def _record(
    recording_pk: int,
    leg_pks: list[int],
    entries: list[Entry],
    refusal: VoiceApiError | None,
    key: str | None,
) -> Answer:
    with write_transaction() as session:
        recording = lock_recording(pk=recording_pk)
        legs = {_digits(leg.number): leg for leg in legs_of(recording) if leg.pk in leg_pks}
        shown = {
            digits: {"number": leg.number, "status": None, "session_id": None} for digits, leg in legs.items()
        }
        for entry in sorted(
            entries, key=lambda entry: entry.session_id or ""
        ):  # the order locks are taken in
            leg = legs.get(_digits(entry.phone_number))
            if leg is None:
                log.warning(
                    "AT answered for %s, which recording %s did not call",
                    entry.phone_number,
                    recording.recording_id,
                )
                continue
            leg.at_status = entry.status[:AT_STATUS_MAX_LENGTH]
            shown[_digits(leg.number)]["status"] = leg.at_status
            if entry.session_id:
                shown[_digits(leg.number)]["session_id"] = _name(recording, leg, entry.session_id)
        if not isinstance(refusal, NoAnswer):  # AT answered: a number it said nothing of was not called
            for leg in legs.values():
                if leg.at_status is None:
                    leg.at_status = shown[_digits(leg.number)]["status"] = NOT_IN_ANSWER
        if refusal is None and any(item["status"] == AT_QUEUED for item in shown.values()):
            session.flush()
            body = json.loads(public.render(recording).body) | {"legs": list(shown.values())}
            answer = Answer(201, body, recording.recording_id)
        else:
            answer = _refused(recording, refusal, sorted({item["status"] for item in shown.values()}))
        if key is not None:
            kept = session.execute(select(IdempotencyKey).filter_by(key=key)).scalar_one()
            kept.response_status, kept.response_body, kept.completed_at = answer.status, answer.body, utcnow()
    return answer


def _digits(number: str) -> str:
    # AT may write a number it answers for otherwise than it was asked (without its +, say).
    return "".join(character for character in number if character.isdigit())


def _refused(recording: Recording, refusal: VoiceApiError | None, statuses: list[str]) -> Answer:
    """Answer AT's refusal to place any of the calls with AT's error.

    The recording fails with AT's reason, unless a call of it was heard from already.
    """
    reason = refusal.reason if refusal else ", ".join(statuses)
    state = start_refused(recording.state, [leg.state for leg in legs_of(recording)], reason)
    if state != recording.state:
        recording.start_failure = state.failure_reason
        events.set_state(recording, state)
    said = str(refusal) if refusal else f"Africa's Talking placed none of the calls: {reason}"
    status = refusal.status if refusal else 502
    return Answer(status, {"detail": f"{said} (recording {recording.recording_id})"}, recording.recording_id)


def _name(recording: Recording, leg: Leg, session_id: str) -> str | None:
    """Give the started ``leg`` the session AT named for it; the session it ends up with."""
    while leg.session_id is None:
        if name_leg(leg, session_id):
            break
        owners = owners_of([session_id], recording)
        if not owners:  # another leg of this recording has it: two calls to one number at once
            log.warning(
                "session %s of recording %s was matched to another of its legs",
                session_id,
                recording.recording_id,
            )
            return None
        ((owner_pk, adoptable),) = owners.values()
        if not adoptable:
            log.warning(
                "AT named %s for recording %s, but another recording holds it"
                " (named, deleted, or completed or announced under its own id)",
                session_id,
                recording.recording_id,
            )
            return None
        if adopt(recording, [owner_pk]):  # its callbacks came first, and the match missed it
            moved = db.session.execute(select(Leg).filter_by(session_id=session_id)).scalar_one()
            moved.number, moved.direction, moved.at_status = leg.number, leg.direction, leg.at_status
            db.session.delete(leg)
            return session_id
    if leg.session_id != session_id:
        log.warning(
            "AT named %s for the call to %s, whose first callback came as %s",
            session_id,
            leg.number,
            leg.session_id,
        )
    return leg.session_id
