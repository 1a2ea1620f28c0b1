"""The ``fetch_audio`` job: fetch a leg's recording from the URL AT gave, verify it is audio, store it,
and record the outcome (recordings/leg_audio.py).

A failed attempt (404, 5xx, a timeout, a cut body) is tried again, with exponential backoff and jitter,
until AUDIO_FETCH_GIVE_UP has passed since the URL came; then the leg's audio is ``recording_unavailable``.
What waiting cannot change fails at once: a URL the service may never fetch (not http(s), a private
address in production), a 403 or other refusal, a redirect loop, a file over AUDIO_MAX_BYTES
(``recording_unavailable``), and bytes that are not a recording (``recording_invalid``). The store
failing is retried and never gives up: it is ours, not AT's.
"""

import functools
import logging
import random
import tempfile
from collections.abc import Callable
from datetime import timedelta

import httpx
from flask import current_app

from ..domain.clock import utcnow
from ..domain.rules import RECORDING_INVALID, RECORDING_UNAVAILABLE, longer_than_its_call, retry_delay
from ..exceptions import EgressError, InvalidAudio, StorageError
from ..integrations import egress, storage
from ..integrations.audio_format import inspect
from ..persistence import queue
from ..persistence.models import Job, JobKind
from ..recordings import deletion, leg_audio
from ..recordings.leg_audio import AudioWork, StoredAudio
from .jobs import Done, GiveUp, Kind, Outcome, Retry

log = logging.getLogger(__name__)

_rng = random.Random()


def fetch_audio(claim: queue.Claim) -> Outcome:
    """Run one attempt of a fetch job."""
    work = leg_audio.work_for(claim)
    if work is None:  # the leg no longer waits for audio (stored by an earlier attempt, or deleted)
        return Done()
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
        except EgressError as error:
            # A URL the service may not fetch, a file over AUDIO_MAX_BYTES, a 403 or a redirect loop does
            # not change by waiting; a 404, a 5xx, a timeout or a cut body may.
            if not error.retryable:
                return _gave_up(work, str(error), RECORDING_UNAVAILABLE)
            return failed(claim, str(error), RECORDING_UNAVAILABLE, work)
        except InvalidAudio as error:
            message = f"{work.url} served {fetched.content_type or 'no type'}: {error}"
            return _gave_up(work, message, RECORDING_INVALID)
        if longer_than_its_call(found.seconds, work.call_duration):
            message = f"{work.url} served {found.seconds:.0f} s of audio, longer than its {work.call_duration} s call"
            return _gave_up(work, message, RECORDING_INVALID)
        key = storage.audio_key(claim.recording_pk, claim.leg_pk, found.extension)
        try:
            file.seek(0)
            stored = current_app.extensions["audio_storage"].put(
                key, file, content_type=found.content_type, size=fetched.size, sha256=fetched.sha256
            )
        except StorageError as error:
            # Our store is down: try again later, however long it takes; AT's URL is not at fault.
            return _retry(claim, work, f"storing {key}: {error}")
    return Done(StoredAudio(key, stored.size, stored.sha256, found.content_type, round(found.seconds)))


def failed(
    claim: queue.Claim, error: str, failure: str = RECORDING_UNAVAILABLE, work: AudioWork | None = None
) -> Outcome:
    """The rule for a failed attempt: again, with backoff, until AUDIO_FETCH_GIVE_UP has passed since
    the URL came; then the leg's audio fails with ``failure``."""
    work = work or leg_audio.work_for(claim)
    if work is None:
        return Done()
    give_up = timedelta(seconds=current_app.config["AUDIO_FETCH_GIVE_UP"])
    if utcnow() >= work.url_received_at + give_up:
        return _gave_up(work, error, failure)
    return _retry(claim, work, error, failure)


def _gave_up(work: AudioWork, error: str, failure: str) -> GiveUp:
    log.warning("giving up the audio of %s (recording %s): %s", work.session_id, work.recording_id, error)
    return GiveUp(error, failure)


def _retry(claim: queue.Claim, work: AudioWork, error: str, failure: str = RECORDING_UNAVAILABLE) -> Retry:
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
    return Retry(utcnow() + timedelta(seconds=delay), error, failure)


def record(job: Job, outcome: Outcome) -> Callable[[], None] | None:
    """What a fetch job's outcome does to its leg and recording; once committed, audio stored for a
    recording deleted meanwhile is deleted."""
    match outcome:
        case Done(detail=None):  # nothing was fetched: the leg no longer waited
            return None
        case Done(detail=stored):
            if leg_audio.audio_stored(job, stored):
                log.info(
                    "stored the audio of leg %s: %s, %d bytes, %d s",
                    job.leg_pk,
                    stored.key,
                    stored.size,
                    stored.duration,
                )
                return None
            return functools.partial(_remove_unwanted, stored.key, job.recording_pk)
        case Retry(reason=reason):
            leg_audio.attempt_failed(job, reason, None)
        case GiveUp(reason=reason, detail=failure):
            leg_audio.attempt_failed(job, reason, failure)
    return None


def unheld(claim: queue.Claim, outcome: Outcome) -> Callable[[], None] | None:
    """What becomes of a fetch whose job is no longer held: audio it stored that nobody wants is deleted."""
    match outcome:
        case Done(detail=StoredAudio() as stored) if leg_audio.unwanted(claim, stored):
            return functools.partial(_remove_unwanted, stored.key, claim.recording_pk)
    return None


def _remove_unwanted(key: str, recording_pk: int | None) -> None:
    """Delete audio stored for a leg nobody wants any more; a deleted recording's leg lets go of its key."""
    audio_storage = current_app.extensions["audio_storage"]
    try:
        audio_storage.delete(key)
        deletion.remove_deleted_audio(audio_storage, recording_pk)
    except StorageError:
        # A deleted recording's leg keeps the key: the worker's periodic removal deletes it later.
        log.exception("deleting the unwanted audio %s of recording %s failed", key, recording_pk)


KIND = Kind(
    JobKind.FETCH_AUDIO,
    fetch_audio,
    failed,
    threads="WORKER_CONCURRENCY",
    lock=leg_audio.lock,
    record=record,
    unheld=unheld,
)
