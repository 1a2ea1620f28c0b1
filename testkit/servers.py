"""The service as operators run it (gunicorn with gunicorn.conf.py, on a free local port), and plain
HTTP helpers to talk to it."""

import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def free_port() -> int:
    """A port nothing is bound to, for a server to listen on, taken below the kernel's ephemeral range.

    A port from that range (what binding port 0 gives) can be handed to an outgoing connection, a
    database's or a client's, between this check and the server's own bind, which then fails with
    "Address already in use"."""
    first_ephemeral = _first_ephemeral_port()
    if first_ephemeral - _LOWEST < 1000:  # a kernel handing out nearly every port: no safe range
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]
    while True:
        port = _random.randrange(_LOWEST, first_ephemeral)
        with socket.socket() as sock:
            try:
                sock.bind(("0.0.0.0", port))  # as gunicorn binds: free on every address
            except OSError:
                continue
            return port


_LOWEST = 10_000
_random = random.SystemRandom()


def _first_ephemeral_port() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def http(method: str, url: str, data: bytes | None = None, headers: dict | None = None, timeout: float = 10):
    """Return (status, headers, body bytes) for one request; HTTP errors are answers, not exceptions."""
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def post_callback(base: str, fields: dict, query: str = "", headers: dict | None = None) -> int:
    """POST one AT callback, form-encoded as AT sends it; its status (OSError when no answer came)."""
    body = urllib.parse.urlencode(fields).encode()
    return http("POST", f"{base}/api/v1/voice/callback{query}", body, {**FORM, **(headers or {})})[0]


def lookup(base: str, recording_id: str) -> dict:
    """The lookup's body of a recording that must exist."""
    status, _, body = http("GET", f"{base}/api/v1/voice/recordings/{recording_id}")
    assert status == 200, body
    return json.loads(body)


def worker_pids(pid_file: Path) -> list[int]:
    """The workers of the gunicorn master whose pid is in ``pid_file`` (``--pid``)."""
    master = pid_file.read_text().strip()
    workers = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            parent = next(line for line in status.read_text().splitlines() if line.startswith("PPid:"))
        except (OSError, StopIteration):
            continue
        if parent.split()[1] == master:
            workers.append(int(status.parent.name))
    return workers


@contextmanager
def gunicorn(database_url: str, workers: int | None = 2, app: str = "wsgi:app", log_to=None, **env):
    """Serve ``app`` with gunicorn.conf.py on ``database_url``; yield the base URL.

    ``workers=None`` leaves gunicorn.conf.py's own count, as `make run` does. The server's output goes
    to the file ``log_to`` when given (a path), else to a scratch file.
    """
    port = free_port()
    environment = {**os.environ, "DATABASE_URL": database_url, "PORT": str(port), **env}
    if workers is not None:
        environment["WEB_CONCURRENCY"] = str(workers)
    command = [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", app]
    # A file, not a pipe: nobody reads a pipe while the test runs, and a full one blocks the workers.
    log = open(log_to, "w+b") if log_to else tempfile.TemporaryFile()
    process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"gunicorn exited: {log.read().decode()}")
            try:
                http("GET", base + "/healthz", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield base
        process.poll()  # still running: the caller may read its pid
    finally:
        _stop(process, seconds=30)
        log.close()


@contextmanager
def worker(database_url: str, log_to=None, **env):
    """Run ``flask recordings worker`` on ``database_url`` for as long as the block runs; yield the process.

    Stopped with SIGTERM at the end, as an operator stops it.
    """
    environment = {**os.environ, "DATABASE_URL": database_url, "LOG_FORMAT": "text", **env}
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "recordings", "worker"]
    log = open(log_to, "w+b") if log_to else tempfile.TemporaryFile()
    process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        _stop(process, seconds=60)
        log.close()


def _stop(process: subprocess.Popen, seconds: float) -> None:
    """SIGTERM, as an operator stops a server; SIGKILL if it has not exited within ``seconds``."""
    process.terminate()
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
