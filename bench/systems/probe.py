"""Readiness checks: has the daemon's control endpoint answered a real request?

`Asker` does it in this process, for protocols the standard library speaks (AIOS's JSON
lines, supervisord's XML-RPC over HTTP). `Probe` does it in another process, for those it
does not (circus's ZeroMQ, pm2's axon RPC): the probe is started and waits, armed, before
the daemon is launched (so its own start-up is never timed); it then tries the daemon's
own request every millisecond and prints "ready" once answered, which the harness sees
on its next 1 ms poll. Both are polled with `answered()` and never block.
"""
from __future__ import annotations

import os
import select
import socket
import subprocess
from typing import Callable

from .. import measure

ARM_TIMEOUT = 30.0


class Probe:
    def __init__(self, argv: list[str], env: dict[str, str]):
        self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        self.out = b""
        self.ready = False
        if not self._wait_for(b"armed", ARM_TIMEOUT):
            self.close()
            raise measure.MeasureError(f"readiness probe {argv[1]} did not start")

    def _wait_for(self, word: bytes, timeout: float) -> bool:
        t0 = measure.now()
        while word not in self.out and measure.now() - t0 < timeout:
            if not self._read(timeout):
                return word in self.out
        return word in self.out

    def _read(self, timeout: float) -> bool:
        if not select.select([self.proc.stdout], [], [], timeout)[0]:
            return False
        chunk = os.read(self.proc.stdout.fileno(), 4096)
        self.out += chunk
        return bool(chunk)

    def answered(self) -> bool:
        """True once the probe has printed "ready" (never blocks)."""
        if not self.ready:
            self._read(0)
            self.ready = b"ready" in self.out
        return self.ready

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()


class Asker:
    """One request on a unix socket, advanced one step per poll and never blocking (so a
    daemon that is busy spawning does not hold up the other polls): connect, send, read
    what has arrived. `answered()` is True once `complete(reply)` holds; a refused or
    closed connection is retried on the next poll."""

    def __init__(self, path: str, request: bytes, complete: Callable[[bytes], bool]):
        self.path, self.request, self.complete = path, request, complete
        self.sock: socket.socket | None = None
        self.reply = b""
        self.done = False

    def answered(self) -> bool:
        if not self.done:
            try:
                if self.sock is None:
                    self._connect()
                self._read()
            except OSError:
                self.close()
        return self.done

    def _connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock, self.reply = sock, b""
        sock.setblocking(False)
        sock.connect(self.path)                      # unix sockets connect at once, or fail
        if sock.send(self.request) != len(self.request):
            raise BlockingIOError("request not sent whole")

    def _read(self) -> None:
        while select.select([self.sock], [], [], 0)[0]:
            chunk = self.sock.recv(65536)
            if not chunk:
                self.done = self.complete(self.reply)
                raise ConnectionResetError("closed")  # done, or try again on a fresh connection
            self.reply += chunk
        self.done = self.complete(self.reply)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
