"""A storm of Africa's Talking callbacks, delivered as AT may deliver them: shuffled and duplicated."""

import random

from recordings_service.devtools.simulation import OUTCOMES, call_sequence, new_session_id


def storm(calls: int, rng: random.Random, twice_one_in: int) -> tuple[list[dict[str, str]], dict[str, tuple]]:
    """Deliveries of ``calls`` AT calls (the outcomes in turn) as AT may make them: shuffled, one in
    ``twice_one_in`` posted twice. Also what each call's recording (named after its session, as the
    first callback creates it) must end as: ``(status, recording_url, failure_reason)``."""
    posts, expected = [], {}
    for n in range(calls):
        outcome = list(OUTCOMES)[n % len(OUTCOMES)]
        session_id = new_session_id(rng)
        sequence = call_sequence(session_id, outcome, rng)
        status, reason = OUTCOMES[outcome]
        expected[session_id] = (status.value, sequence[-1].get("recordingUrl") or None, reason)
        posts += sequence
    deliveries = posts + rng.sample(posts, len(posts) // twice_one_in)
    rng.shuffle(deliveries)
    return deliveries, expected
