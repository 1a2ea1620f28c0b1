"""The ``fetch_audio`` job: fetch a leg's recording from the URL AT gave, verify it is audio, store it,
and record the outcome (recordings/audio.py).

A failed attempt (404, 5xx, a timeout, a cut body, bytes that are not audio) is tried again, with
exponential backoff and jitter, until AUDIO_FETCH_GIVE_UP has passed since the URL came; then the leg's
audio is ``recording_unavailable`` (or ``recording_invalid`` when the last attempt got bytes that were not
audio). A URL the service may never fetch (not http(s), a private address in production) or a file over
AUDIO_MAX_BYTES fails at once. The store failing is retried and never gives up: it is ours, not AT's.
"""

import logging
import random
import tempfile
from datetime import datetime, timedelta

import httpx
from flask import current_app

from ..domain.clock import utcnow
from ..domain.recordings import RECORDING_INVALID, RECORDING_UNAVAILABLE, retry_delay
from ..integrations import egress, storage
from ..integrations.audio import InvalidAudio, inspect
from ..persistence import queue
from ..recordings import audio as recorded
from ..recordings.audio import AudioWork, StoredAudio

log = logging.getLogger(__name__)

_rng = random.Random()


def fetch_audio(claim: queue.Claim) -> None:
    """Run one attempt of a fetch job."""
    work = recorded.work_for(claim)
    if work is None:  # the leg no longer waits for audio (stored by an earlier attempt, or deleted)
        recorded.drop(claim)
        return
    config = current_app.config
    with tempfile.TemporaryFile() as file:
        try:
            fetched = egress.download(
                work.url,
                file,
                max_bytes=config["AUDIO_MAX_BYTES"],
                policy=egress.EgressPolicy.from_config(config),
                timeout=httpx.Timeout(
                    config["AUDIO_FETCH_READ_TIMEOUT"], connect=config["AUDIO_FETCH_CONNECT_TIMEOUT"]
                ),
                deadline=config["AUDIO_FETCH_DEADLINE"],
            )
            found = inspect(file)
        except (egress.UnsafeURL, egress.TooLarge) as error:
            # Neither changes by waiting: a URL the service may not fetch, or a file over AUDIO_MAX_BYTES.
            _failed(claim, work, str(error), RECORDING_UNAVAILABLE, final=True)
            return
        except egress.EgressError as error:
            _failed(claim, work, str(error), RECORDING_UNAVAILABLE)
            return
        except InvalidAudio as error:
            _failed(
                claim,
                work,
                f"{work.url} served {fetched.content_type or 'no type'}: {error}",
                RECORDING_INVALID,
            )
            return
        key = storage.audio_key(claim.recording_pk, claim.session_pk, found.extension)
        try:
            file.seek(0)
            stored = current_app.extensions["audio_storage"].put(
                key, file, content_type=found.content_type, size=fetched.size, sha256=fetched.sha256
            )
        except storage.StorageError as error:
            # Our store is down: try again later, however long it takes; AT's URL is not at fault.
            _retry(claim, work, f"storing {key}: {error}")
            return
    duration = round(found.seconds)
    outcome = recorded.audio_stored(
        claim, StoredAudio(key, stored.size, stored.sha256, found.content_type, duration)
    )
    if outcome == "unwanted":  # the recording was deleted while its audio was on its way
        current_app.extensions["audio_storage"].delete(key)
    elif outcome == "stored":
        log.info(
            "stored the audio of %s (recording %s): %s, %d bytes, %d s",
            work.session_id,
            work.recording_id,
            key,
            stored.size,
            duration,
        )


def _failed(claim: queue.Claim, work: AudioWork, error: str, failure: str, final: bool = False) -> None:
    now = utcnow()
    give_up = timedelta(seconds=current_app.config["AUDIO_FETCH_GIVE_UP"])
    if final or now >= work.url_received_at + give_up:
        log.warning("giving up the audio of %s (recording %s): %s", work.session_id, work.recording_id, error)
        recorded.attempt_failed(claim, error, None, failure)
        return
    _retry(claim, work, error, now)


def _retry(claim: queue.Claim, work: AudioWork, error: str, now: datetime | None = None) -> None:
    config = current_app.config
    delay = retry_delay(
        claim.attempts,
        config["AUDIO_FETCH_RETRY_BASE_SECONDS"],
        config["AUDIO_FETCH_RETRY_MAX_SECONDS"],
        _rng,
    )
    log.info(
        "audio of %s, attempt %d failed, again in %.0f s: %s", work.session_id, claim.attempts, delay, error
    )
    recorded.attempt_failed(claim, error, (now or utcnow()) + timedelta(seconds=delay), RECORDING_UNAVAILABLE)
