"""A TCP proxy on 127.0.0.1 that a test can cut and block: connections killed for real.

    proxy = TcpProxy(server.port)          # browsers use http://127.0.0.1:{proxy.port}
    proxy.block()                          # new connections are refused (closed at once)
    proxy.cut()                            # every open connection is dropped
    proxy.freeze()                         # open connections stay open but carry nothing
    proxy.unblock(); proxy.thaw()
    proxy.close()

Threads pump the bytes; nothing here sleeps.
"""

from __future__ import annotations

import contextlib
import socket
import threading

HOST = "127.0.0.1"


class TcpProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.blocked = False
        self.frozen = False
        self.connections_made = 0
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener = socket.create_server((HOST, 0))
        self.port = int(self._listener.getsockname()[1])
        self._closed = False
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}"

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            if self.blocked:
                self._drop(client)
                continue
            try:
                upstream = socket.create_connection((HOST, self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                self._drop(client)
                continue
            with self._lock:
                if self._closed:
                    self._drop(client)
                    self._drop(upstream)
                    return
                self._sockets.update((client, upstream))
                self.connections_made += 1
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if not self.frozen:
                    target.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(source)
            self._drop(target)

    def _drop(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()
        with self._lock:
            self._sockets.discard(sock)

    def block(self) -> None:
        """Refuse new connections (accepted, then closed at once)."""
        self.blocked = True

    def unblock(self) -> None:
        self.blocked = False

    def freeze(self) -> None:
        """Drop every byte both ways, leaving the connections open (a dead line)."""
        self.frozen = True

    def thaw(self) -> None:
        self.frozen = False

    def cut(self) -> None:
        """Drop every open connection, both ways."""
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            self._drop(sock)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.cut()
        self._thread.join(timeout=5)
