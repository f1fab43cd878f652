"""A TCP proxy between one daemon and PostgreSQL's Unix socket, that a test can pause (the
bytes wait: a partition the daemon cannot see) and drop (every connection reset, new ones
refused): what a network does to a device. One thread, one selector."""
from __future__ import annotations

import selectors
import socket
import threading


class Proxy:
    def __init__(self, unix_path: str):
        self.unix_path = unix_path
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.pairs: dict[socket.socket, socket.socket] = {}
        self.paused = self.dropping = False
        self._lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.listener, selectors.EVENT_READ)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def url(self, user: str, database: str, options: str = "") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}{options}"

    def pause(self) -> None:
        with self._lock:
            self.paused = True

    def drop(self) -> None:
        """Reset every connection and refuse new ones until resume()."""
        with self._lock:
            self.dropping = True
            for sock in list(self.pairs):
                self._close(sock)

    def resume(self) -> None:
        with self._lock:
            self.paused = self.dropping = False

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        with self._lock:
            for sock in list(self.pairs):
                self._close(sock)
        self.listener.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.paused:   # the bytes wait where they are (new connections in the backlog)
                self._stop.wait(0.01)
                continue
            for key, _ in self._selector.select(0.01):
                with self._lock:
                    if key.fileobj is self.listener:
                        self._accept()
                    elif not self.paused and key.fileobj in self.pairs:
                        self._forward(key.fileobj)

    def _accept(self) -> None:
        try:
            client, _ = self.listener.accept()
        except BlockingIOError:
            return
        if self.dropping:
            client.close()
            return
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.connect(self.unix_path)
        for sock in (client, server):
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ)
        self.pairs[client], self.pairs[server] = server, client

    def _forward(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            return self._close(sock)
        try:
            self.pairs[sock].setblocking(True)
            self.pairs[sock].sendall(data)
            self.pairs[sock].setblocking(False)
        except OSError:
            self._close(sock)

    def _close(self, sock: socket.socket) -> None:
        other = self.pairs.pop(sock, None)
        for one in (sock, other):
            if one is None:
                continue
            self.pairs.pop(one, None)
            try:
                self._selector.unregister(one)
            except (KeyError, ValueError):
                pass
            one.close()
