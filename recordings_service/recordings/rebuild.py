"""A recording rebuilt from what is stored of it: its callbacks, in the order they came, and each leg's
audio as the workers left it. Replay does this to every recording; live ingestion reaches the same state.
"""

from sqlalchemy import select

from ..domain.clock import utcnow
from ..domain.rules import (
    URL_TIMEOUT,
    LegFacts,
    LegState,
    RecordingState,
    advance,
    start_refused,
    time_out,
)
from ..extensions import db
from ..integrations.africastalking.callback_form import parse_callback
from ..persistence.models import Recording, StoredCallback
from . import events, leg_audio
from .locks import legs_of


def rebuild(recording: Recording) -> bool:
    """Rebuild ``recording`` (locked) and its legs from its stored callbacks, in the order received,
    and from what was stored of each leg's audio; whether anything differs from before."""
    # Calls the recording started that AT has not named have no callbacks: they add nothing.
    by_session_id = {leg.session_id: leg for leg in legs_of(recording) if leg.session_id is not None}
    was = (recording.state, {session_id: leg.state for session_id, leg in by_session_id.items()})
    kept_audio = {session_id: leg.audio for session_id, leg in by_session_id.items()}
    facts = {session_id: LegFacts() for session_id in by_session_id}

    def legs() -> list[LegState]:
        # Each leg's audio as the workers left it, from the moment its URL came, as live saw it.
        return [
            LegState(session_id, known, kept_audio[session_id] if known.recording_url else None)
            for session_id, known in facts.items()
        ]

    # As live: a start AT refused failed the recording before any callback came.
    state = RecordingState()
    if recording.start_failure:
        state = start_refused(state, [], recording.start_failure)
    seen: set[tuple[str, str]] = set()
    stored = select(StoredCallback).filter_by(recording_pk=recording.pk).order_by(StoredCallback.pk)
    for callback in db.session.execute(stored).scalars():
        key = (callback.session_id, callback.digest)
        callback.duplicate = key in seen
        seen.add(key)
        if not callback.duplicate:
            report = parse_callback(callback.fields)
            facts[report.session_id] = facts[report.session_id].learn(report)
            state = advance(state, legs())
    now = utcnow()
    for session_id, leg in by_session_id.items():
        leg.facts = facts[session_id]
        leg_audio.await_audio(leg, now)  # a URL with no audio nor job (a restored database, say) gets them
    current = [leg.state for leg in by_session_id.values()]
    state = advance(state, current)
    if recording.failure_reason == URL_TIMEOUT:
        state = time_out(state, current)
    events.set_state(recording, state)
    return was != (state, {session_id: leg.state for session_id, leg in by_session_id.items()})
