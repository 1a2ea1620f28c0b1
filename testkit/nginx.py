"""nginx in front of the service, as production runs it: deploy/nginx.conf itself, with only its lines
marked ``site:`` changed, so that it runs as the current user under a scratch prefix (pid, logs and
temporary files there, not in /run or /var) on a free port, in front of a given gunicorn.

Needs Debian's nginx (`make test` installs it). ``nginx -c FILE -p PREFIX -g 'daemon off;'``, a child
of the test, stopped (SIGTERM: nginx's fast shutdown) when the block ends.
"""

import os
import pwd
import resource
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from testkit.servers import ROOT, free_port

CONF = ROOT / "deploy" / "nginx.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


@dataclass
class Front:
    """A running nginx: its base URL, and where its files are."""

    base: str
    port: int
    prefix: Path

    @property
    def access_log(self) -> Path:
        return self.prefix / "access.log"

    @property
    def error_log(self) -> Path:
        return self.prefix / "error.log"


def render(upstream: str, port: int, prefix: Path) -> str:
    """deploy/nginx.conf for a front on 127.0.0.1:``port`` before gunicorn at ``upstream`` (host:port),
    everything it writes under ``prefix``."""
    text = CONF.read_text()
    # As root, the workers would otherwise drop to www-data, which may not enter the scratch prefix.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
    temporary = "".join(
        f"\n    {kind}_temp_path {prefix}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    changes = [
        ("user www-data;", user),
        (
            "worker_rlimit_nofile 65536;",
            f"worker_rlimit_nofile {resource.getrlimit(resource.RLIMIT_NOFILE)[1]};",
        ),
        ("pid /run/nginx.pid;", f"pid {prefix}/nginx.pid;"),
        ("error_log /var/log/nginx/error.log warn;", f"error_log {prefix}/error.log warn;"),
        ("error_log /var/log/nginx/error.log crit;", f"error_log {prefix}/error.log crit;"),
        ("access_log /var/log/nginx/recordings.access.log", f"access_log {prefix}/access.log"),
        ("server 127.0.0.1:8000 ", f"server {upstream} "),
        ("listen 80 ", f"listen 127.0.0.1:{port} "),
        ("\nhttp {", "\nhttp {" + temporary),
    ]
    for old, new in changes:
        # deploy/nginx.conf changed under the tests' feet: say so rather than run something else.
        assert text.count(old) == 1, f"deploy/nginx.conf: expected {old!r} exactly once"
        text = text.replace(old, new)
    return text


@contextmanager
def nginx(upstream_base: str):
    """Run deploy/nginx.conf in front of the service at ``upstream_base`` (``http://127.0.0.1:PORT``);
    yield the ``Front``."""
    prefix = Path(tempfile.mkdtemp(prefix="recordings-nginx-"))
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(render(upstream_base.removeprefix("http://"), port, prefix))
    command = [
        NGINX,
        "-c",
        str(conf),
        "-p",
        str(prefix),
        "-e",
        str(prefix / "error.log"),
        "-g",
        "daemon off;",
    ]
    log = open(prefix / "stderr.log", "w+b")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"nginx exited: {(prefix / 'error.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield Front(f"http://127.0.0.1:{port}", port, prefix)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(prefix, ignore_errors=True)
