"""An endpoint that can go down: a TCP relay on loopback in front of the emulator, for outages on demand.

Every part of the demo reaches the emulator through :attr:`EndpointRelay.endpoint` when an outage
is asked for. :meth:`down` closes the listening socket and every open connection (callers get
"connection refused" and resets, as from a stopped server); :meth:`up` listens on the same port
again. The emulator itself keeps running, so its streams and tables survive, as Kinesis's do in a
real outage, and the same works in front of an external emulator (LocalStack) that cannot be stopped.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from urllib.parse import urlsplit


class EndpointRelay:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.lock = threading.Lock()
        self.connections: set[socket.socket] = set()
        self.listener: socket.socket | None = None
        self.port = 0
        self.closed = False
        self.up()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def is_up(self) -> bool:
        return self.listener is not None

    def up(self) -> None:
        with self.lock:
            if self.listener is not None or self.closed:
                return
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
            listener.listen(128)
            self.port = listener.getsockname()[1]
            self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), name="relay-accept", daemon=True).start()

    def down(self) -> None:
        with self.lock:
            listener, self.listener = self.listener, None
            connections, self.connections = set(self.connections), set()
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                sock.close()  # linger 0: a reset, as from a server that went away

    def close(self) -> None:
        self.closed = True
        self.down()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by down()
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self.lock:
                if self.listener is not listener:  # went down meanwhile
                    client.close()
                    server.close()
                    return
                self.connections |= {client, server}
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), name="relay-pump", daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                target.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                target.shutdown(socket.SHUT_WR)
            with self.lock:
                done = source in self.connections and target not in self.connections
                self.connections.discard(source)
            if done:
                with contextlib.suppress(OSError):
                    source.close()
                    target.close()
