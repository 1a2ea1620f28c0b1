"""A TCP proxy on loopback whose open connections can be made to die, as after the server's host rebooted.

That is what a failover behind the same address or a NAT that forgot the flow looks like. Idle, the
connections see nothing, and the first bytes a client then sends are answered with a reset.
Connections made afterwards reach the server."""

import socket
import struct
import threading


class RebootingProxy:
    def __init__(self, host: str, port: int):
        self._target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._pairs: list[dict] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def reboot(self) -> None:
        """The connections open now are dead to the server; their clients learn it when they next send."""
        with self._lock:
            for pair in self._pairs:
                pair["dead"] = True

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for pair in self._pairs:
                for end in (pair["client"], pair["server"]):
                    end.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            server = socket.create_connection(self._target)
            pair = {"client": client, "server": server, "dead": False}
            with self._lock:
                self._pairs.append(pair)
            threading.Thread(target=self._pump, args=(pair, client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(pair, server, client, False), daemon=True).start()

    def _pump(self, pair: dict, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        try:
            while data := source.recv(65536):
                if pair["dead"]:
                    if from_client:  # answer with a reset, as a host that no longer knows the connection
                        pair["client"].setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                        pair["client"].close()
                    return
                sink.sendall(data)
        except OSError:
            pass
