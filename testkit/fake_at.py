"""Africa's Talking's Voice API on loopback, as the service meets it: ``POST /call`` checks the
``apiKey`` header, places each call and answers AT's JSON. Like AT, it posts each placed call's first
callback to the service (``service``, its base URL) before it answers the start, and keeps the XML the
service answered. What each number gets, or how the whole answer fails, is scripted.

    with FakeAT() as at:
        ... AT_VOICE_API_URL=at.url, AT_API_KEY=at.api_key ...
        at.service = base
"""

import json
import threading
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from testkit.servers import FORM, http

QUEUED = "Queued"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def do_POST(self):  # noqa: N802 (http.server's name)
        at = self.server.at
        form = dict(
            urllib.parse.parse_qsl(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode())
        )
        with at.lock:
            at.requests.append((self.path, form, dict(self.headers)))
        if at.hang:
            at.released.wait()
            self.close_connection = True
            return
        if self.headers.get("apiKey") != at.api_key:
            return self._send(401, "text/plain", b"The supplied authentication is invalid")
        if at.http_status:
            return self._send(at.http_status, "text/plain", at.error_body.encode())
        if at.error_message:
            return self._json({"entries": [], "errorMessage": at.error_message})
        with at.lock:
            at.calls += 1
        entries = [at.place(form.get("from", ""), number) for number in form.get("to", "").split(",")]
        self._json({"entries": entries, "errorMessage": "None"})

    def _json(self, answer: dict):
        # AT's own content type, whose charset is what trips its SDK.
        self._send(200, "application/json; charset=utf-8", json.dumps(answer).encode())

    def _send(self, status: int, content_type: str, body: bytes):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, at: "FakeAT"):
        self.at = at
        super().__init__(("127.0.0.1", 0), _Handler)


class FakeAT:
    """The Voice API's stand-in: counts the starts it took (``calls``) and keeps every request."""

    def __init__(self, api_key: str = "atsk_fake_0123456789abcdef"):
        self.api_key = api_key
        self.service: str | None = None  # where callbacks go; None: no callbacks
        self.statuses: dict[str, str] = {}  # a number's status other than Queued (InvalidPhoneNumber...)
        self.error_message: str | None = None
        self.http_status: int | None = None
        self.error_body = "Internal Server Error"  # the text of an answer with http_status
        self.hang = False
        self.calls = 0
        self.requests: list[tuple[str, dict, dict]] = []
        self.placed: list[dict] = []  # each call placed: number, from, sessionId
        self.answers: dict[str, tuple[int, str]] = {}  # sessionId: the service's answer to its first callback
        self.lock = threading.Lock()
        self.released = threading.Event()
        self._server = _Server(self)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/call"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> "FakeAT":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.released.set()
        self._server.shutdown()
        self._server.server_close()

    def place(self, caller: str, number: str) -> dict:
        """AT's entry for ``number``; a placed call's first callback is posted to the service first."""
        status = self.statuses.get(number, QUEUED)
        session_id = f"ATVId_{uuid.uuid4().hex}" if status == QUEUED else None
        if session_id:
            call = {"number": number, "from": caller, "sessionId": session_id}
            with self.lock:
                self.placed.append(call)
            if self.service:
                self.answers[session_id] = self.callback(
                    call, {"isActive": "1", "callSessionState": "Answered"}
                )
        return {"phoneNumber": number, "status": status, "sessionId": session_id or "None"}

    def callback(self, call: dict, fields: dict) -> tuple[int, str]:
        """Post one callback of ``call`` (an item of ``placed``) as AT does; the service's answer."""
        form = {
            "sessionId": call["sessionId"],
            "direction": "Outbound",
            "callerNumber": call["number"],
            "destinationNumber": call["from"],
            **fields,
        }
        status, _, body = http(
            "POST", f"{self.service}/api/v1/voice/callback", urllib.parse.urlencode(form).encode(), FORM
        )
        return status, body.decode()

    def finish(self, call: dict, recording_url: str, seconds: int = 7) -> tuple[int, str]:
        """Post the final callback of a recorded ``call`` that ended well."""
        return self.callback(
            call,
            {
                "isActive": "0",
                "callSessionState": "Completed",
                "status": "Success",
                "hangupCause": "NORMAL_CLEARING",
                "durationInSeconds": str(seconds + 3),
                "dialDurationInSeconds": str(seconds),
                "recordingUrl": recording_url,
            },
        )
