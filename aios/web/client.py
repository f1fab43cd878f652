"""The control protocol from the dashboard's event loop: aios.control.Client's requests and
replies over asyncio streams, so a long wait or a watch costs no thread, and cancelling
the task that waits closes its connection to the daemon at once.

At most CONNECTIONS_MAX connections to the daemon are open at a time (the hub's two
count); a request waits for a free one for at most CALL_TIMEOUT. Imports only control
and errors from aios.
"""
from __future__ import annotations

import asyncio
import json
import os

from ..control import SOCKET_NAME, DaemonNotRunning
from ..errors import AiosError

CALL_TIMEOUT = 30.0
CONNECTIONS_MAX = 64           # well below the daemon's own cap per uid
REPLY_MAX = 64 << 20           # the longest reply line accepted (history of 10,000 runs is ~3 MB)


class Daemon:
    """The daemon of one home, as this dashboard reaches it: connections are opened here,
    at most CONNECTIONS_MAX at a time."""

    def __init__(self, home):
        self.home = str(home)
        self.path = os.path.join(self.home, SOCKET_NAME)
        self._slots: asyncio.Semaphore | None = None    # made in the loop that uses it

    async def connect(self, timeout: float = CALL_TIMEOUT) -> Connection:
        """A new connection (close it, or use `async with`); DaemonNotRunning if none."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(CONNECTIONS_MAX)
        await asyncio.wait_for(self._slots.acquire(), timeout)
        try:
            reader, writer = await asyncio.open_unix_connection(self.path, limit=REPLY_MAX)
        except BaseException as exc:
            self._slots.release()
            if isinstance(exc, (FileNotFoundError, ConnectionRefusedError)):
                raise DaemonNotRunning(f"no AIOS daemon is running for {self.home} (start one with: aios up -d)") \
                    from None
            raise
        return Connection(reader, writer, self._slots.release)

    async def call(self, op: str, timeout: float | None = CALL_TIMEOUT, **fields):
        """One request on a fresh connection, within `timeout` seconds (None: no limit)."""
        async def exchange():
            async with await self.connect() as conn:
                return await conn.call(op, **fields)

        return await asyncio.wait_for(exchange(), timeout)


class Connection:
    """One connection to the daemon."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, on_close):
        self.reader, self.writer, self.on_close = reader, writer, on_close

    async def call(self, op: str, **fields):
        """Send {"op": op, **fields}; the result, or AiosError with the daemon's error."""
        await self.send(op, **fields)
        reply = await self.receive()
        if not reply.get("ok"):
            raise AiosError(reply.get("error", "the daemon gave no reason"))
        return reply.get("result")

    async def send(self, op: str, **fields) -> None:
        self.writer.write(json.dumps({"op": op, **fields}, separators=(",", ":")).encode() + b"\n")
        await self.writer.drain()

    async def receive(self) -> dict:
        """The next line from the daemon, decoded; DaemonNotRunning if it hung up."""
        try:
            line = await self.reader.readline()
        except (ConnectionError, ValueError):   # ValueError: a line over REPLY_MAX
            line = b""
        if not line.endswith(b"\n"):
            raise DaemonNotRunning("the daemon closed the connection (it is stopping, stopped or re-executing)")
        return json.loads(line)

    def close(self) -> None:
        if self.on_close is not None:
            self.writer.close()
            self.on_close()
            self.on_close = None

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, *exc) -> None:
        self.close()
