"""A database that never answers: a loopback TCP server that accepts connections and stays silent.

Given as a PostgreSQL URL, it shows what the service does when its database hangs rather than refuses:
the TCP connection is made, and the server's first word never comes.
"""

import socket
import threading


class SilentServer:
    """Accepts every connection on a loopback port and never sends a byte; use as a context manager."""

    def __init__(self):
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = self._listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)

    @property
    def postgresql_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/never"

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:  # closed: the server stops
                return
            self.accepted.append(connection)

    def __enter__(self) -> "SilentServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        # shutdown wakes the accept() blocked in the thread; close alone may not.
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        self._thread.join(timeout=5)
        for connection in self.accepted:
            connection.close()
