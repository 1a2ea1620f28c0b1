"""A storm of Africa's Talking callbacks, delivered as AT may deliver them: shuffled and duplicated."""

import random

from recordings_service.devtools.simulation import OUTCOMES, call_sequence, new_session_id
from recordings_service.domain.rules import Status


def storm(
    calls: int, rng: random.Random, twice_one_in: int, media=None
) -> tuple[list[dict[str, str]], dict[str, tuple]]:
    """Deliveries of ``calls`` AT calls (the outcomes in turn) as AT may make them: shuffled, one in
    ``twice_one_in`` posted twice. Also what each call's recording (named after its session, as the
    first callback creates it) must end as: ``(status, recording_url, failure_reason)``.

    With ``media`` (a testkit.media.MediaServer), recorded calls' URLs are real MP3s it serves, and
    their recordings end completed once a worker has stored them; without, URLs shaped like AT's that
    nothing fetches, and recorded calls end processing (their audio awaited).
    """
    posts, expected = [], {}
    for n in range(calls):
        outcome = list(OUTCOMES)[n % len(OUTCOMES)]
        session_id = new_session_id(rng)
        url = media.serve_file(f"/recordings/{session_id}.mp3") if media and outcome == "recorded" else None
        sequence = call_sequence(session_id, outcome, rng, recording_url=url)
        status, reason = OUTCOMES[outcome]
        if outcome == "recorded" and media is None:
            status = Status.PROCESSING
        expected[session_id] = (status.value, sequence[-1].get("recordingUrl") or None, reason)
        posts += sequence
    deliveries = posts + rng.sample(posts, len(posts) // twice_one_in)
    rng.shuffle(deliveries)
    return deliveries, expected
