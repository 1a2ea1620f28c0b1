"""The exceptions that cross modules, in one place: what each floor raises and another catches.

Grouped by the module that raises them. Each says in its docstring what went wrong; those raised by
outbound work say with ``retryable`` whether trying later may succeed.
"""

from .logs import redact

# --- Outbound requests (integrations/egress.py) ------------------------------------------------------


class EgressError(Exception):
    """An outbound request failed; ``retryable`` says whether trying later may succeed."""

    retryable = True


class UnsafeURL(EgressError):
    """The URL, or an address its host resolves to, is not one the policy lets the service reach."""

    retryable = False


class NetworkError(EgressError):
    """No answer could be had: the host does not resolve, refused or cut the connection."""


class TimedOut(NetworkError):
    """Connecting, sending or waiting for the next bytes took longer than allowed."""


class BadStatus(EgressError):
    """The server answered with a status other than 2xx (``status``)."""

    def __init__(self, status: int):
        super().__init__(f"the server answered HTTP {status}")
        self.status = status
        # A fresh recording URL may answer 404 for a few seconds (docs/africastalking.md).
        self.retryable = status in (404, 408, 425, 429) or status >= 500


class TooManyRedirects(EgressError):
    """The server redirected more than ``MAX_REDIRECTS`` times."""

    retryable = False


class TooLarge(EgressError):
    """The body is larger than the caller allows (``max_bytes``); reading stopped there."""

    retryable = False

    def __init__(self, max_bytes: int, declared: int | None = None):
        said = f" (Content-Length {declared})" if declared is not None else ""
        super().__init__(f"the body is larger than {max_bytes} bytes{said}")
        self.max_bytes = max_bytes
        self.declared = declared


class LengthMismatch(NetworkError):
    """The body's length differs from the Content-Length the server announced: a cut connection."""

    def __init__(self, expected: int, received: int):
        super().__init__(f"the server announced {expected} bytes and sent {received}")
        self.expected = expected
        self.received = received


# --- Audio storage (integrations/storage.py) ---------------------------------------------------------


class StorageError(Exception):
    """Storing or reading audio failed; ``retryable`` says whether trying later may succeed."""

    retryable = False


class StorageUnavailable(StorageError):
    """The store failed (unreachable, refused, timed out, out of space): try again later."""

    retryable = True


class ObjectNotFound(StorageError, LookupError):
    """No object is stored under the key."""


class RangeNotSatisfiable(StorageError):
    """The byte range asked for starts at or past the object's end."""


class VerificationFailed(StorageError):
    """What the store holds after a write is not what was given (size or SHA-256); nothing is kept."""

    retryable = True


class InvalidKey(StorageError, ValueError):
    """The key is not one this storage accepts (empty parts, ``..``, a leading dot, a backslash)."""


# --- Audio recognised (integrations/audio_format.py) -------------------------------------------------


class InvalidAudio(Exception):
    """The bytes are not a recording: not audio, or less than a second of it."""


# --- Africa's Talking's Voice API (integrations/africastalking/voice_api.py) -------------------------


class VoiceApiError(Exception):
    """AT did not take the request; ``reason`` is short, for a recording's failure_reason. Both texts
    are cleared of secrets (AT's may quote the key): they reach answers, recordings and events."""

    status = 502  # what the service answers its own client

    def __init__(self, reason: str, detail: str):
        super().__init__(redact(detail))
        self.reason = redact(reason)


class Refused(VoiceApiError):
    """AT answered, and placed no call: an HTTP error, or an ``errorMessage``."""


class NoAnswer(VoiceApiError):
    """AT's answer never came (or could not be read): the call may or may not have been placed."""


class VoiceApiTimedOut(NoAnswer):
    """AT did not answer within the client's timeout."""

    status = 504


# --- Registration (recordings/registration.py) -------------------------------------------------------


class RecordingDeleted(Exception):
    """The recording asked for was deleted: its id is not given out again."""


class SessionConflict(Exception):
    """Sessions asked for are bound to another recording already."""

    def __init__(self, session_ids: list[str]):
        super().__init__(
            "already bound to another recording (a named one, a deleted one, or one that completed or"
            f" that webhooks were told of under its own id, which keeps them): {', '.join(session_ids)}"
        )
        self.session_ids = session_ids


# --- Starting calls (recordings/call_starts.py) ------------------------------------------------------


class KeyReused(Exception):
    """The Idempotency-Key came with another request before."""


class StartInProgress(Exception):
    """The request first made with this Idempotency-Key has not been answered yet."""


# --- Webhook events (recordings/events.py) -----------------------------------------------------------


class UnusableEndpoint(ValueError):
    """A status_callback_url the service will not post to."""


class OfDeletedRecording(Exception):
    """The delivery is of an event of a deleted recording: it is not sent again."""


# --- Waiting lookups (web/waiting.py) ----------------------------------------------------------------


class NoRoomToWait(Exception):
    """The worker holds as many waiting requests as it may: answer this one at once."""


class WaitedOnGone(Exception):
    """The recording waited on is no more (deleted, say): answer as a lookup of it would."""


# --- Byte ranges (web/ranges.py) ---------------------------------------------------------------------


class RangeUnsatisfiable(Exception):
    """No range of the set is within the representation."""


# --- API keys (web/auth.py) --------------------------------------------------------------------------


class ApiKeyError(Exception):
    """A key cannot be made or revoked as asked."""
