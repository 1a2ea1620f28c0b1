"""The connections a gunicorn worker serves at once, against the files it may open (gunicorn.conf.py).

Every connection is an open file. A worker that reaches its open-file limit fails whatever opens one
next: an accept, a database connection, the audio being stored. So the limit is raised to what the
system allows (the hard limit, as nginx's worker_rlimit_nofile does), and then:

- GUNICORN_CONNECTIONS set above what the limit leaves: gunicorn refuses to start (``ConfigError``);
- unset: the default (``DEFAULT_CONNECTIONS``), lowered to what the limit leaves, with a warning.
"""

import resource

from config import ConfigError

# Connections each worker serves at once, held waits (at most WAIT_MAX_HELD) and slow clients included.
# A connection costs only a greenlet and a socket, so there is room for crowds of both on one worker
# (bench/README.md, "Why the code is as it is").
DEFAULT_CONNECTIONS = 4096

# Files a worker has open besides its clients: the listening socket, the database pool, logs, the
# metrics files, audio being stored, the interpreter's own.
RESERVED_FILES = 128


def raise_open_file_limit() -> int:
    """Raise this process's soft open-file limit to its hard limit (children inherit it); return the
    soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):  # an unlimited hard limit the kernel will not grant: keep soft
            pass
    return soft


def worker_connections(requested: int | None) -> tuple[int, str | None]:
    """The connections a worker may serve (GUNICORN_CONNECTIONS as ``requested``, or the default), and
    a warning to log when the default had to be lowered. Raises ``ConfigError`` when ``requested`` is
    more than the open-file limit allows."""
    limit = raise_open_file_limit()
    most = limit - RESERVED_FILES
    if requested is not None:
        if requested > most:
            raise ConfigError(
                f"GUNICORN_CONNECTIONS={requested}: expected at most {most}: a worker may open {limit} files"
                f" (RLIMIT_NOFILE), of which {RESERVED_FILES} are kept for other than connections; or raise"
                " the limit (systemd LimitNOFILE=, docker --ulimit nofile=)"
            )
        return requested, None
    if DEFAULT_CONNECTIONS <= most:
        return DEFAULT_CONNECTIONS, None
    return max(most, 1), (
        f"a worker may open {limit} files (RLIMIT_NOFILE): it serves {max(most, 1)} connections at once,"
        f" not {DEFAULT_CONNECTIONS}; raise the limit (systemd LimitNOFILE=, docker --ulimit nofile=)"
    )
