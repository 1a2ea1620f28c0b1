"""The lifecycle rules on their own: plain Python, no app, no database."""

import itertools
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recordings_service.devtools.simulation import OUTCOMES, call_sequence, new_session_id
from recordings_service.domain.recordings import (
    URL_TIMEOUT,
    CallFacts,
    CallReport,
    RecordingState,
    Status,
    advance,
    derive,
    is_valid_recording_id,
    time_out,
)
from recordings_service.integrations.africastalking.callbacks import parse_callback
from tests.support import fixture_call

T0 = datetime(2024, 1, 15, 10, 0, tzinfo=UTC)
RANK = {Status.RECORDING: 0, Status.PROCESSING: 1, Status.FAILED: 2, Status.COMPLETED: 3}


def parse(fields: dict[str, str]) -> CallReport:
    return parse_callback(fields)


class Recording:
    """A recording folded in memory the way lifecycle.ingest_callback folds it in the database."""

    def __init__(self, session_ids):
        self.calls = {session_id: CallFacts() for session_id in session_ids}
        self.state = RecordingState()
        self.history = [self.state]

    def take(self, callback: CallReport, now: datetime) -> None:
        self.calls[callback.session_id] = self.calls[callback.session_id].learn(callback)
        self.state = advance(self.state, self.calls.values(), now)
        self.history.append(self.state)


def fold(callbacks, session_ids) -> Recording:
    recording = Recording(session_ids)
    for step, callback in enumerate(callbacks):
        recording.take(callback, T0 + timedelta(seconds=step))
    return recording


def test_the_shared_recorded_call_completes_with_url_and_the_recorded_legs_duration():
    calls = [parse(f) for f in fixture_call("recorded-call")]

    state = fold(calls, {calls[0].session_id}).state

    assert state.status is Status.COMPLETED
    assert state.recording_url == "https://voice.africastalking.com/recording/abc123def456"
    assert state.duration == 338  # dialDurationInSeconds: the bridged leg, not the 342 s with ringing


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
    recording.take(parse(late), T0 + timedelta(minutes=5))

    assert recording.state.status is Status.COMPLETED
    assert recording.state.recording_url.endswith("/late")
    assert recording.state.processed_at == T0 + timedelta(minutes=5)


def test_call_session_state_on_a_live_request_does_not_end_the_call():
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


def test_a_url_completes_a_failed_recording_but_nothing_changes_a_completed_one():
    failed = RecordingState(Status.FAILED, failure_reason="USER_BUSY")
    with_url = [CallFacts(heard=True, ended=True, duration=30, recording_url="https://x/1")]
    completed = advance(failed, with_url, T0)
    assert (completed.status, completed.recording_url, completed.processed_at) == (
        Status.COMPLETED,
        "https://x/1",
        T0,
    )

    later = [CallFacts(heard=True, ended=True, duration=99, recording_url="https://x/2")]
    assert advance(completed, later, T0 + timedelta(hours=1)) == completed


def test_status_never_moves_back():
    processing = RecordingState(Status.PROCESSING, duration=10)
    live_leg = [CallFacts(heard=True)]

    assert advance(processing, live_leg, T0) == processing
    assert (
        advance(RecordingState(Status.FAILED, failure_reason="NO_ANSWER"), live_leg, T0).status
        is Status.FAILED
    )


def test_sessions_registered_but_never_heard_from_do_not_hold_a_recording():
    ended = CallFacts(heard=True, ended=True, ended_well=True, duration=40)

    assert derive([ended, CallFacts()]).status is Status.PROCESSING
    assert derive([]).status is Status.RECORDING


def test_the_sweep_fails_only_processing():
    assert time_out(RecordingState(Status.PROCESSING, duration=5)) == RecordingState(
        Status.FAILED, duration=5, failure_reason=URL_TIMEOUT
    )
    for status in (Status.RECORDING, Status.COMPLETED, Status.FAILED):
        assert time_out(RecordingState(status)) == RecordingState(status)


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
    duration = (
        int(final["dialDurationInSeconds"]) if status in (Status.COMPLETED, Status.PROCESSING) else None
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
    for step, callback in enumerate(delivered):
        recordings[callback.session_id].take(callback, T0 + timedelta(seconds=step))

    for session_id, (callbacks, expected) in calls.items():
        recording = recordings[session_id]
        state = recording.state
        assert (state.status, state.recording_url, state.duration, state.failure_reason) == expected
        # The same as delivering the call once, in order (but for the clock: processed_at is "now").
        in_order = fold(callbacks, {session_id})
        assert replace(state, processed_at=None) == replace(in_order.state, processed_at=None)
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
    for step, callback in enumerate(
        _deliveries(data, [cb for callbacks in legs.values() for cb in callbacks])
    ):
        recording.take(callback, T0 + timedelta(seconds=step))

    assert (recording.state.status, recording.state.recording_url, recording.state.duration) == (
        Status.COMPLETED,
        url,
        duration,
    )
    _assert_forward_only(recording.history)
