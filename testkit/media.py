"""A scripted HTTP server on loopback: the far end of the service's outbound requests.

Each path is given an answer: a body (whole, or from a generator), a status, a redirect, a body cut
short of its Content-Length, a status line and headers sent a byte at a time without end, or no
answer at all. POSTs are answered as GETs. The server counts the connections it accepted, so a
test can say that a refused URL was refused before anything was sent.
"""

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# The recording the tests fetch: a real MP3 of a recorded call (29,153 bytes), the one simulate-call serves.
from recordings_service.devtools.simulation import RECORDED_CALL


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    # A function giving the body's chunks, so a large body is made as it is sent.
    chunks: Callable[[], Iterable[bytes]] = lambda: ()
    # Close the connection after the body (a body shorter than its Content-Length is cut this way).
    close: bool = False
    # Accept the request and never answer (until the server stops).
    hang: bool = False
    # Send the status line and then headers without end, a byte every this many seconds.
    trickle: float | None = None


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"
    # No handler thread outlives a client that stopped reading by more than this.
    timeout = 10

    def do_GET(self):
        media = self.server.media
        media.requests.append((self.path, dict(self.headers)))
        answer = media.answer(self.path.split("?", 1)[0])
        if answer.hang:
            media.released.wait()
            self.close_connection = True
            return
        if answer.trickle is not None:
            self._trickle(answer.trickle)
            return
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        if answer.close:
            self.send_header("Connection", "close")
        self.end_headers()
        try:
            for chunk in answer.chunks():
                self.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the client went away: that is what some tests are about
        if answer.close:
            self.close_connection = True

    def do_POST(self):  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.do_GET()

    def _trickle(self, every: float) -> None:
        self.close_connection = True
        head = b"HTTP/1.1 200 OK\r\nContent-Type: audio/mpeg\r\nX-Padding: "
        sent = 0
        started = time.monotonic()
        while not self.server.media.released.is_set():
            try:
                self.wfile.write(head[sent : sent + 1] if sent < len(head) else b"x")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                # The client gave up: how long it held on (told within a byte or two of it).
                self.server.media.trickled.append(time.monotonic() - started)
                return
            sent += 1
            time.sleep(every)

    def log_message(self, *args):
        pass  # the tests read what was asked from MediaServer.requests


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True

    def __init__(self, address, media: "MediaServer"):
        self.media = media
        super().__init__(address, _Handler)

    def get_request(self):
        connection = super().get_request()
        self.media.connections += 1
        return connection


class MediaServer:
    """A loopback HTTP server answering each path as a test scripts it (404 for others)."""

    def __init__(self, host: str = "127.0.0.1"):
        self.answers: dict[str, Answer | list[Answer]] = {}
        self._lock = threading.Lock()
        self.requests: list[tuple[str, dict]] = []
        self.connections = 0
        # How long each client of a trickled answer held on before it closed the connection, in seconds.
        self.trickled: list[float] = []
        self.released = threading.Event()
        self._server = _Server((host, 0), self)
        self.host, self.port = self._server.server_address[:2]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="media-server")

    def __enter__(self) -> "MediaServer":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.released.set()
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()

    def answer(self, path: str) -> Answer:
        """The answer to the next request for ``path``: scripted ones in turn, the last one from then on."""
        with self._lock:
            script = self.answers.get(path, Answer(status=404))
            if isinstance(script, list):
                return script.pop(0) if len(script) > 1 else script[0]
            return script

    def fetches(self, path: str) -> int:
        """How many requests asked for ``path``."""
        return sum(1 for asked, _ in self.requests if asked.split("?", 1)[0] == path)

    def serve_after(
        self, path: str, failures: list[int], body: bytes, content_type: str = "audio/mpeg"
    ) -> str:
        """Answer ``path`` with the statuses ``failures`` in turn, then with ``body`` from then on."""
        self.serve(path, body, content_type)
        served = self.answers[path]
        self.answers[path] = [*(self._status_answer(status) for status in failures), served]
        return self.url(path)

    def url(self, path: str, host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}{path}"

    def serve(self, path: str, body: bytes, content_type: str = "audio/mpeg", status: int = 200) -> str:
        """Answer ``path`` with ``body`` whole; return its URL."""
        headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
        self.answers[path] = Answer(status, headers, lambda: [body])
        return self.url(path)

    def serve_file(self, path: str, file: Path = RECORDED_CALL, content_type: str = "audio/mpeg") -> str:
        return self.serve(path, file.read_bytes(), content_type)

    def serve_generated(self, path: str, size: int, chunk: int = 64 * 1024) -> str:
        """Answer ``path`` with ``size`` bytes made as they are sent (never held whole)."""

        def chunks():
            block = bytes(range(256)) * (chunk // 256)
            sent = 0
            while sent < size:
                piece = block[: min(chunk, size - sent)]
                sent += len(piece)
                yield piece

        headers = {"Content-Type": "audio/mpeg", "Content-Length": str(size)}
        self.answers[path] = Answer(200, headers, chunks)
        return self.url(path)

    def serve_unannounced(self, path: str, size: int, chunk: int = 64 * 1024) -> str:
        """Answer ``path`` with ``size`` bytes and no Content-Length: the body ends when the connection does."""
        self.serve_generated(path, size, chunk)
        answer = self.answers[path]
        del answer.headers["Content-Length"]
        answer.close = True
        return self.url(path)

    def status(self, path: str, status: int) -> str:
        self.answers[path] = self._status_answer(status)
        return self.url(path)

    @staticmethod
    def _status_answer(status: int) -> Answer:
        body = b"no such recording"
        headers = {"Content-Type": "text/plain", "Content-Length": str(len(body))}
        return Answer(status, headers, lambda: [body])

    def redirect(self, path: str, location: str, status: int = 302, body: bytes = b"") -> str:
        headers = {"Location": location, "Content-Length": str(len(body))}
        self.answers[path] = Answer(status, headers, lambda: [body])
        return self.url(path)

    def cut_short(self, path: str, body: bytes, announced: int) -> str:
        """Announce ``announced`` bytes, send ``body`` (fewer) and close the connection."""
        headers = {"Content-Type": "audio/mpeg", "Content-Length": str(announced)}
        self.answers[path] = Answer(200, headers, lambda: [body], close=True)
        return self.url(path)

    def trickle(self, path: str, every: float = 0.05) -> str:
        """Answer ``path`` with a status line and headers that never end, a byte every ``every`` s."""
        self.answers[path] = Answer(trickle=every)
        return self.url(path)

    def hang(self, path: str) -> str:
        """Accept requests for ``path`` and never answer them."""
        self.answers[path] = Answer(hang=True)
        return self.url(path)
