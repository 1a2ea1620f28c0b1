"""Africa's Talking's Voice API, called over HTTP: placing calls (``POST /call``).

AT's HTTP API is used directly rather than its Python SDK: the SDK returns a string instead of the JSON
answer whenever the content type carries a charset (``application/json; charset=utf-8``), and it makes
a new connection per call. Here one httpx client per app keeps its connections, every connection goes
through the egress policy (integrations/egress.py), and every wait is bounded.

A start is never retried here: a request whose answer was lost may have rung the numbers already.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from ...exceptions import EgressError, NoAnswer, Refused, VoiceApiTimedOut
from ...logs import redact
from .. import egress

PRODUCTION_URL = "https://voice.africastalking.com/call"
SANDBOX_URL = "https://voice.sandbox.africastalking.com/call"
SANDBOX_USERNAME = "sandbox"
# AT's text of "no error" in a successful answer.
NO_ERROR = "None"
# How much of an answer that is not AT's JSON is kept, to say what came instead.
QUOTED_CHARS = 200


def default_url(username: str | None) -> str:
    """AT's own endpoint for ``username``: the sandbox's for ``sandbox``."""
    return SANDBOX_URL if username == SANDBOX_USERNAME else PRODUCTION_URL


@dataclass(frozen=True)
class Entry:
    """AT's answer for one number called: its status (``Queued`` when placed; cleared of secrets, as
    AT's error texts are) and the call's session."""

    phone_number: str
    status: str
    session_id: str | None


class VoiceApi:
    """AT's Voice API for one account, on one kept HTTP client (closed with ``close``)."""

    def __init__(self, url: str, username: str, api_key: str, client: httpx.Client):
        self.url = url
        self.username = username
        self._api_key = api_key
        self._client = client

    def __repr__(self) -> str:  # never the key
        return f"<VoiceApi {self.username} at {self.url}>"

    def close(self) -> None:
        self._client.close()

    def call(self, from_number: str, numbers: list[str]) -> list[Entry]:
        """Ask AT to call ``numbers`` from the AT number ``from_number``; AT's entry for each.

        Raises ``Refused`` (an HTTP error status, an ``errorMessage``, an answer that is not AT's),
        ``VoiceApiTimedOut`` and ``NoAnswer`` (AT unreachable, or the answer cut).
        """
        form = {"username": self.username, "from": from_number, "to": ",".join(numbers)}
        headers = {"apiKey": self._api_key, "Accept": "application/json"}
        try:
            response = self._client.post(self.url, data=form, headers=headers)
        except httpx.TimeoutException:
            raise VoiceApiTimedOut("at_timeout", "Africa's Talking did not answer in time") from None
        except (httpx.HTTPError, EgressError) as error:
            raise NoAnswer("at_unreachable", f"Africa's Talking could not be reached: {error}") from None
        if response.is_error:
            raise Refused(
                f"HTTP {response.status_code}",
                f"Africa's Talking answered HTTP {response.status_code}: {_quoted(response)}",
            )
        return _entries(response)


def _entries(response: httpx.Response) -> list[Entry]:
    try:
        answer = response.json()
        message = str(answer.get("errorMessage") or NO_ERROR)
        entries = [
            Entry(str(entry["phoneNumber"]), redact(str(entry["status"])), _session(entry.get("sessionId")))
            for entry in answer.get("entries") or []
        ]
    except (ValueError, AttributeError, KeyError, TypeError):
        raise Refused(
            "at_bad_answer", f"Africa's Talking's answer is not its JSON: {_quoted(response)!r}"
        ) from None
    if message != NO_ERROR:
        raise Refused(message, f"Africa's Talking refused the call: {message}")
    if not entries:
        raise Refused("at_no_entries", "Africa's Talking's answer names no call")
    return entries


def _quoted(response: httpx.Response) -> str:
    # Redacted before it is cut: a secret cut in two would be matched by neither half.
    return redact(response.text)[:QUOTED_CHARS].strip()


def _session(value) -> str | None:
    # A number AT did not call has the session "None" (a string).
    return None if value in (None, "", NO_ERROR) else str(value)


def from_config(config) -> VoiceApi | None:
    """The app's Voice API (``AT_USERNAME``, ``AT_API_KEY``, ``AT_VOICE_API_URL``), or None when the
    service is not set up to start calls."""
    if not (config["AT_USERNAME"] and config["AT_API_KEY"]):
        return None
    timeout = httpx.Timeout(
        config["AT_VOICE_TIMEOUT_SECONDS"], connect=min(5.0, config["AT_VOICE_TIMEOUT_SECONDS"])
    )
    client = egress.make_client(
        egress.EgressPolicy.from_config(config),
        timeout=timeout,
        deadline=config["AT_VOICE_TIMEOUT_SECONDS"],
        follow_redirects=False,
    )
    url = config["AT_VOICE_API_URL"] or default_url(config["AT_USERNAME"])
    return VoiceApi(url, config["AT_USERNAME"], config["AT_API_KEY"], client)
