"""The lifecycle rules on their own: plain Python, no app, no database."""

import itertools
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recordings_service.devtools.simulation import OUTCOMES, call_sequence, new_session_id
from recordings_service.domain.rules import (
    RECORDING_INVALID,
    RECORDING_UNAVAILABLE,
    URL_TIMEOUT,
    AudioStatus,
    CallReport,
    LegAudio,
    LegFacts,
    LegState,
    RecordingState,
    Status,
    advance,
    derive,
    is_valid_recording_id,
    retry_delay,
    time_out,
)
from recordings_service.integrations.africastalking.callback_form import parse_callback
from tests.support import fixture_call

T0 = datetime(2024, 1, 15, 10, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=10)  # when the worker stored the audio
RANK = {Status.RECORDING: 0, Status.PROCESSING: 1, Status.FAILED: 2, Status.COMPLETED: 3}


def parse(fields: dict[str, str]) -> CallReport:
    return parse_callback(fields)


class Recording:
    """A recording folded in memory the way the service folds it in the database: callbacks
    (lifecycle.ingest_callback) and the outcome of each leg's audio (recordings.leg_audio)."""

    def __init__(self, session_ids):
        self.calls = {session_id: LegFacts() for session_id in session_ids}
        self.audio: dict[str, LegAudio] = {}
        self.state = RecordingState()
        self.history = [self.state]

    @property
    def legs(self) -> list[LegState]:
        return [
            LegState(session_id, facts, self.audio.get(session_id))
            for session_id, facts in self.calls.items()
        ]

    def take(self, callback: CallReport) -> None:
        facts = self.calls[callback.session_id].learn(callback)
        self.calls[callback.session_id] = facts
        if facts.recording_url and callback.session_id not in self.audio:
            self.audio[callback.session_id] = LegAudio()  # pending: the worker's job is written
        self._advance()

    def store(self, session_id: str, seconds: int, at: datetime) -> None:
        self.audio[session_id] = LegAudio(AudioStatus.STORED, seconds, at)
        self._advance()

    def lose(self, session_id: str, failure: str = RECORDING_UNAVAILABLE) -> None:
        self.audio[session_id] = LegAudio(AudioStatus.FAILED, failure=failure)
        self._advance()

    def _advance(self) -> None:
        self.state = advance(self.state, self.legs)
        self.history.append(self.state)


def fold(callbacks, session_ids) -> Recording:
    recording = Recording(session_ids)
    for callback in callbacks:
        recording.take(callback)
    return recording


def stored(recording: Recording, seconds: int = 7) -> Recording:
    """``recording`` once the worker has stored the audio of every leg waiting for it."""
    for session_id, audio in list(recording.audio.items()):
        if audio.status is AudioStatus.PENDING:
            recording.store(session_id, seconds, T1)
    return recording


def test_the_shared_recorded_call_is_processing_until_its_audio_is_stored():
    calls = [parse(f) for f in fixture_call("recorded-call")]
    session_id = calls[0].session_id

    recording = fold(calls, {session_id})
    processing = recording.state
    recording.store(session_id, 337, T1)

    # AT's URL and AT's figure (dialDurationInSeconds: the bridged leg, not the 342 s with ringing)
    assert processing == RecordingState(
        Status.PROCESSING, 338, "https://voice.africastalking.com/recording/abc123def456"
    )
    # Stored: the stored audio's own length, the time it was stored, AT's URL kept.
    assert recording.state == RecordingState(
        Status.COMPLETED,
        337,
        "https://voice.africastalking.com/recording/abc123def456",
        processed_at=T1,
        audio_session_id=session_id,
    )


def test_a_recording_whose_audio_cannot_be_had_fails_and_still_shows_the_url():
    calls = [parse(f) for f in fixture_call("recorded-call")]
    recording = fold(calls, {calls[0].session_id})

    recording.lose(calls[0].session_id, RECORDING_INVALID)

    assert (recording.state.status, recording.state.failure_reason, recording.state.recording_url) == (
        Status.FAILED,
        RECORDING_INVALID,
        "https://voice.africastalking.com/recording/abc123def456",
    )


def test_the_shared_unanswered_call_fails_with_the_hangup_cause():
    calls = [parse(f) for f in fixture_call("unanswered-call")]

    state = fold(calls, {calls[0].session_id}).state

    assert (state.status, state.failure_reason, state.recording_url) == (
        Status.FAILED,
        "SUBSCRIBER_ABSENT",
        None,
    )


def test_a_call_that_ended_well_without_url_is_processing_until_the_url_comes():
    calls = [parse(f) for f in fixture_call("ended-without-recording-url")]
    recording = fold(calls, {calls[0].session_id})
    assert (recording.state.status, recording.state.duration) == (Status.PROCESSING, 95)

    late = {
        **fixture_call("ended-without-recording-url")[-1],
        "recordingUrl": "https://voice.africastalking.com/recording/late",
    }
    recording.take(parse(late))
    assert (recording.state.status, recording.state.recording_url) == (
        Status.PROCESSING,
        late["recordingUrl"],
    )

    stored(recording)
    assert (recording.state.status, recording.state.processed_at) == (Status.COMPLETED, T1)


def test_leg_state_on_a_live_request_does_not_end_the_call():
    # Since 2021 AT sends callSessionState on every request; only isActive=0 ends a call.
    live = parse({"isActive": "1", "sessionId": "ATVId_a", "callSessionState": "Completed"})

    assert fold([live], {"ATVId_a"}).state.status is Status.RECORDING


def test_a_successful_call_of_zero_seconds_is_a_failure():
    final = parse(
        {
            "isActive": "0",
            "sessionId": "ATVId_a",
            "status": "Success",
            "hangupCause": "NORMAL_CLEARING",
            "durationInSeconds": "0",
        }
    )

    state = fold([final], {"ATVId_a"}).state

    assert (state.status, state.failure_reason) == (Status.FAILED, "zero_duration")


def test_stored_audio_completes_a_failed_recording_but_nothing_changes_a_completed_one():
    failed = RecordingState(Status.FAILED, failure_reason=URL_TIMEOUT)
    leg = LegState("ATVId_a", LegFacts(heard=True, ended=True, duration=30, recording_url="https://x/1"))
    assert advance(failed, [replace(leg, audio=LegAudio())]) == failed  # fetching: failed stays
    completed = advance(failed, [replace(leg, audio=LegAudio(AudioStatus.STORED, 29, T1))])
    assert (completed.status, completed.recording_url, completed.processed_at) == (
        Status.COMPLETED,
        "https://x/1",
        T1,
    )

    longer = LegState("ATVId_b", LegFacts(heard=True, ended=True, duration=99, recording_url="https://x/2"))
    stored_longer = replace(longer, audio=LegAudio(AudioStatus.STORED, 99, T1))
    assert (
        advance(completed, [replace(leg, audio=LegAudio(AudioStatus.STORED, 29, T1)), stored_longer])
        == completed
    )


def test_the_longest_leg_is_the_recordings_and_waits_for_its_own_audio():
    short = LegState("ATVId_a", LegFacts(heard=True, ended=True, duration=30, recording_url="https://x/a"))
    long = LegState("ATVId_b", LegFacts(heard=True, ended=True, duration=90, recording_url="https://x/b"))
    stored_short = replace(short, audio=LegAudio(AudioStatus.STORED, 30, T0))

    assert derive([stored_short, replace(long, audio=LegAudio())]).status is Status.PROCESSING
    assert derive(
        [stored_short, replace(long, audio=LegAudio(AudioStatus.STORED, 90, T1))]
    ).audio_session_id == ("ATVId_b")
    # The longest one lost: the shorter one is the recording's.
    lost = derive(
        [stored_short, replace(long, audio=LegAudio(AudioStatus.FAILED, failure=RECORDING_UNAVAILABLE))]
    )
    assert (lost.status, lost.audio_session_id, lost.recording_url) == (
        Status.COMPLETED,
        "ATVId_a",
        "https://x/a",
    )


def test_status_never_moves_back():
    processing = RecordingState(Status.PROCESSING, duration=10)
    live_leg = [LegState("ATVId_a", LegFacts(heard=True))]

    assert advance(processing, live_leg) == processing
    assert (
        advance(RecordingState(Status.FAILED, failure_reason="NO_ANSWER"), live_leg).status is Status.FAILED
    )


def test_sessions_registered_but_never_heard_from_do_not_hold_a_recording():
    ended = LegState("ATVId_a", LegFacts(heard=True, ended=True, ended_well=True, duration=40))

    assert derive([ended, LegState("ATVId_b")]).status is Status.PROCESSING
    assert derive([]).status is Status.RECORDING


def test_the_sweep_fails_only_a_recording_still_waiting_for_its_url():
    ended = [LegState("ATVId_a", LegFacts(heard=True, ended=True, ended_well=True, duration=5))]
    fetching = [
        LegState(
            "ATVId_a", LegFacts(heard=True, ended=True, duration=5, recording_url="https://x/1"), LegAudio()
        )
    ]

    assert time_out(RecordingState(Status.PROCESSING, duration=5), ended) == RecordingState(
        Status.FAILED, duration=5, failure_reason=URL_TIMEOUT
    )
    assert time_out(RecordingState(Status.PROCESSING, 5, "https://x/1"), fetching).status is Status.PROCESSING
    for status in (Status.RECORDING, Status.COMPLETED, Status.FAILED):
        assert time_out(RecordingState(status), ended) == RecordingState(status)


def test_retries_back_off_exponentially_with_jitter_up_to_a_cap():
    rng = random.Random(1)
    delays = [retry_delay(attempt, base=5, most=3600, rng=rng) for attempt in range(1, 16)]

    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(3600, 5 * 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert len({round(retry_delay(3, 5, 3600, rng), 6) for _ in range(20)}) > 1  # jittered
    assert retry_delay(10_000, 5, 3600, rng) <= 3600


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("conf_1234567890", True),
        ("ATVId_5f1c2e9a7b3d4c60a1e2f3b4c5d6e7f8", True),
        ("x" * 64, True),
        ("x" * 65, False),
        ("", False),
        ("_conf", False),
        ("conf/1", False),
        ("conf 1", False),
        ("conf_✓", False),
    ],
)
def test_which_recording_ids_can_exist(value, valid):
    assert is_valid_recording_id(value) is valid


# --- Order and duplication do not matter -------------------------------------------------------

# Ways a single AT call goes, beyond simulation.OUTCOMES: the URL may come in a request after the final.
KINDS = [*OUTCOMES, "late-url"]


def _call(kind: str, session_id: str, rng: random.Random) -> tuple[list[CallReport], tuple]:
    """The callbacks of one call of ``kind`` and what its recording must end as."""
    if kind == "late-url":
        posts = call_sequence(session_id, "no-url", rng)
        posts.append({**posts[-1], "recordingUrl": "https://voice.africastalking.com/recording/late"})
        final = posts[-1]
    else:
        posts = call_sequence(session_id, kind, rng)
        final = posts[-1]
    status, reason = OUTCOMES["recorded" if kind == "late-url" else kind]
    url = final.get("recordingUrl") or None
    # Recorded calls are completed once the worker has stored their audio (7 s long: see ``stored``).
    duration = (
        7
        if status is Status.COMPLETED
        else int(final["dialDurationInSeconds"])
        if url or status is Status.PROCESSING
        else None
    )
    return [parse(p) for p in posts], (status, url, duration, reason)


def _deliveries(data, callbacks: list) -> list:
    """Every callback at least once, some several times, in any order: as AT may deliver them."""
    extra = data.draw(st.lists(st.sampled_from(callbacks), max_size=len(callbacks) * 2))
    return data.draw(st.permutations(callbacks + extra))


def _assert_forward_only(history: list[RecordingState]) -> None:
    for before, after in itertools.pairwise(history):
        if before.status is Status.COMPLETED:
            assert after == before, "a completed recording changed"
        elif after.status is not Status.COMPLETED:
            assert RANK[after.status] >= RANK[before.status], f"{before.status} went back to {after.status}"


@settings(max_examples=300, deadline=None)
@given(
    kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=6), seed=st.integers(0, 2**32), data=st.data()
)
def test_any_order_and_any_duplication_end_in_the_same_state(kinds, seed, data):
    rng = random.Random(seed)
    calls = {}
    for kind in kinds:
        session_id = new_session_id(rng)
        calls[session_id] = _call(kind, session_id, rng)

    delivered = _deliveries(data, [cb for callbacks, _ in calls.values() for cb in callbacks])
    recordings = {session_id: Recording({session_id}) for session_id in calls}
    for callback in delivered:
        recordings[callback.session_id].take(callback)

    for session_id, (callbacks, expected) in calls.items():
        recording = stored(recordings[session_id])
        state = recording.state
        assert (state.status, state.recording_url, state.duration, state.failure_reason) == expected
        # The same as delivering the call once, in order.
        in_order = stored(fold(callbacks, {session_id}))
        assert state == in_order.state
        assert recording.calls == in_order.calls
        _assert_forward_only(recording.history)


@settings(max_examples=200, deadline=None)
@given(
    other_kinds=st.lists(st.sampled_from(["no-url", "unanswered", "busy"]), min_size=1, max_size=3),
    seed=st.integers(0, 2**32),
    data=st.data(),
)
def test_a_conference_with_one_recorded_leg_completes_with_that_leg_in_any_order(other_kinds, seed, data):
    rng = random.Random(seed)
    recorded_id = new_session_id(rng)
    recorded, (_, url, duration, _) = _call("recorded", recorded_id, rng)
    legs = {recorded_id: recorded}
    for kind in other_kinds:
        session_id = new_session_id(rng)
        legs[session_id] = _call(kind, session_id, rng)[0]

    recording = Recording(legs)
    for callback in _deliveries(data, [cb for callbacks in legs.values() for cb in callbacks]):
        recording.take(callback)
    stored(recording)

    assert (recording.state.status, recording.state.recording_url, recording.state.duration) == (
        Status.COMPLETED,
        url,
        duration,
    )
    _assert_forward_only(recording.history)
