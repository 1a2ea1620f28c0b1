"""A webhook receiver on loopback: takes POSTs, answers each with the next status of its script (or
200), after an optional delay, and keeps every request it got (headers and body) for the test to read."""

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def do_POST(self):  # noqa: N802 (http.server's name)
        receiver = self.server.receiver
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with receiver.lock:
            receiver.received.append(Received(self.path, dict(self.headers), body))
            status, location = receiver.next_answer()
        if receiver.delay:
            time.sleep(receiver.delay)
        self.send_response(status)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, receiver: "Receiver"):
        self.receiver = receiver
        super().__init__(("127.0.0.1", 0), _Handler)


class Receiver:
    """``with Receiver(statuses=[500, 500, 500]) as hooks: ... hooks.url``: answers 500 three times, then 200."""

    def __init__(self, statuses: list[int] | None = None, delay: float = 0, redirect_to: str | None = None):
        self.statuses = list(statuses or [])
        self.delay = delay
        self.redirect_to = redirect_to
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self._server = _Server(self)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def next_answer(self) -> tuple[int, str | None]:
        if self.redirect_to:
            return 302, self.redirect_to
        return (self.statuses.pop(0) if self.statuses else 200), None

    def __enter__(self) -> "Receiver":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()
