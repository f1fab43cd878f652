"""The HTTP/1.1 the dashboard speaks, on one asyncio event loop, with every resource a
client can hold bounded:

- at most CONNECTIONS_MAX connections; when they are all taken, the one that has waited
  longest for its request head is dropped to make room (a slowloris crowd cannot keep
  the owner out), and when none is waiting the newcomer gets 503;
- the request head (HEAD_MAX bytes) must arrive within HEAD_TIMEOUT of connecting, a
  body (at most BODY_MAX bytes) within BODY_TIMEOUT;
- a reply the client does not read for WRITE_TIMEOUT ends its connection;
- every request runs only while its client is connected: when the client hangs up,
  the task serving it (a stream, a long wait) is cancelled.

One request per connection (`Connection: close`), so no connection idles between
requests. Imports nothing from aios.
"""
from __future__ import annotations

import asyncio
import json
from urllib.parse import unquote, urlsplit

CONNECTIONS_MAX = 512
BACKLOG = 1024                  # the listen backlog (the stdlib's http.server has 5)
HEAD_MAX = 16 * 1024
HEAD_TIMEOUT = 10.0
BODY_MAX = 1 << 20              # the control protocol's own line limit
BODY_TIMEOUT = 30.0
WRITE_TIMEOUT = 30.0
WRITE_BUFFER = 256 * 1024       # bytes queued for a client before a writer waits for it

REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
           404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout", 413: "Content Too Large",
           415: "Unsupported Media Type", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 503: "Service Unavailable", 504: "Gateway Timeout"}


class BadRequest(Exception):
    """The request cannot be read; `code` and a one-line reason go back to the client."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class Headers(dict):
    """Request headers by lower-case name; `get` takes any case."""

    def get(self, name: str, default=None):
        return super().get(name.lower(), default)


class Request:
    __slots__ = ("method", "path", "query", "headers", "body", "client")

    def __init__(self, method: str, target: str, headers: Headers, client: str):
        url = urlsplit(target)
        self.method, self.path, self.query = method, unquote(url.path), url.query
        self.headers, self.body, self.client = headers, b"", client


def parse_head(head: bytes, client: str) -> Request:
    """A request line and its headers (without the blank line that ends them)."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:      # latin-1 decodes every byte; kept for clarity of intent
        raise BadRequest(400, "the request head is not text") from None
    line, *lines = text.split("\r\n")
    parts = line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[1].startswith("/"):
        raise BadRequest(400, f"malformed request line {line[:80]!r}")
    headers = Headers()
    for entry in lines:
        name, colon, value = entry.partition(":")
        if not colon or not name or name != name.strip() or "\0" in entry:
            raise BadRequest(400, f"malformed header line {entry[:80]!r}")
        key, value = name.lower(), value.strip()
        headers[key] = f"{headers[key]}; {value}" if key == "cookie" and key in headers else value
    return Request(parts[0], parts[1], headers, client)


async def read_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client: str) -> Request:
    """The next request (head and body), within the time and size limits."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
    except asyncio.LimitOverrunError:
        raise BadRequest(431, f"request head over {HEAD_MAX} bytes") from None
    except asyncio.TimeoutError:
        raise BadRequest(408, f"no complete request head within {HEAD_TIMEOUT:g} s") from None
    except asyncio.IncompleteReadError:
        raise ConnectionResetError("the client left before its request was complete") from None
    request = parse_head(head[:-4], client)
    if (request.headers.get("Expect") or "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")      # curl waits for it before a large body
    request.body = await _read_body(reader, request.headers)
    return request


async def _read_body(reader: asyncio.StreamReader, headers: Headers) -> bytes:
    if headers.get("Transfer-Encoding"):
        raise BadRequest(400, "send the body with a Content-Length, not chunked")
    text = headers.get("Content-Length") or "0"
    if not text.isdigit() or len(text) > 12:
        raise BadRequest(400, f"bad Content-Length {text[:20]!r}")
    length = int(text)
    if length > BODY_MAX:
        raise BadRequest(413, f"request too large: over {BODY_MAX} bytes")
    try:
        return await asyncio.wait_for(reader.readexactly(length), BODY_TIMEOUT) if length else b""
    except asyncio.TimeoutError:
        raise BadRequest(408, f"the body did not arrive within {BODY_TIMEOUT:g} s") from None
    except asyncio.IncompleteReadError:
        raise ConnectionResetError("the client left before its body was complete") from None


class Reply:
    """What a handler sends back on one connection, with the same headers on everything."""

    def __init__(self, writer: asyncio.StreamWriter, headers: tuple):
        self.writer, self.common, self.started = writer, headers, False

    async def send(self, code: int, kind: str, data: bytes, headers=()) -> None:
        cache = "no-store" if kind.startswith("application/json") or code >= 400 else "no-cache"
        await self.write(self._head(code, (("Content-Type", kind), ("Content-Length", str(len(data))),
                                           ("Cache-Control", cache), *headers)) + data)

    async def json(self, code: int, body: dict, headers=()) -> None:
        data = json.dumps(body, separators=(",", ":"), default=str).encode()
        await self.send(code, "application/json", data, headers)

    async def start_stream(self, kind: str) -> None:
        """Begin an open-ended reply (Server-Sent Events); then write() its parts."""
        await self.write(self._head(200, (("Content-Type", kind), ("Cache-Control", "no-store"))))

    async def write(self, data: bytes) -> None:
        """Queue data; wait while the client is WRITE_BUFFER behind, at most WRITE_TIMEOUT."""
        self.writer.write(data)
        try:
            await asyncio.wait_for(self.writer.drain(), WRITE_TIMEOUT)
        except asyncio.TimeoutError:
            raise ConnectionResetError(f"the client read nothing for {WRITE_TIMEOUT:g} s") from None

    def _head(self, code: int, headers) -> bytes:
        self.started = True
        lines = [f"HTTP/1.1 {code} {REASONS.get(code, 'Error')}", "Connection: close",
                 *(f"{name}: {value}" for name, value in (*headers, *self.common))]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", errors="replace")


class Listener:
    """Accepts connections within the limits above and passes each request to
    `handle(request, reply)`, an async function, which runs while its client stays."""

    def __init__(self, handle, headers: tuple = ()):
        self.handle, self.headers = handle, headers
        self.open: dict[asyncio.StreamWriter, asyncio.Task] = {}
        self.waiting: dict[asyncio.StreamWriter, None] = {}    # still sending their head, oldest first
        self.dropped = 0        # connections dropped to make room (a figure for tests)

    async def start(self, host: str, port: int) -> asyncio.AbstractServer:
        self.server = await asyncio.start_server(self._connection, host, port, backlog=BACKLOG, limit=HEAD_MAX,
                                                 reuse_address=True)
        return self.server

    async def close(self) -> None:
        """Stop listening and end every connection."""
        self.server.close()
        tasks = list(self.open.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.transport.set_write_buffer_limits(high=WRITE_BUFFER)
        if not self._admit(writer):
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        try:
            await self._serve(reader, writer, Reply(writer, self.headers))
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), WRITE_TIMEOUT)    # the rest of the reply goes out
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            pass        # the client left, or stopped reading
        except asyncio.CancelledError:
            pass        # the server is closing: this connection ends here, quietly
        finally:
            self.open.pop(writer, None)
            self.waiting.pop(writer, None)
            writer.transport.abort()

    async def _serve(self, reader, writer, reply: Reply) -> None:
        peer = writer.get_extra_info("peername")
        client = peer[0] if isinstance(peer, tuple) else "local"
        try:
            request = await read_request(reader, writer, client)
        except BadRequest as exc:
            return await reply.json(exc.code, {"ok": False, "error": exc.message})
        finally:
            self.waiting.pop(writer, None)
        await while_connected(reader, self.handle(request, reply))

    def _admit(self, writer) -> bool:
        if len(self.open) >= CONNECTIONS_MAX:
            if not self.waiting:
                return False
            oldest = next(iter(self.waiting))
            del self.waiting[oldest]
            oldest.transport.abort()
            self.dropped += 1
        self.open[writer] = asyncio.current_task()
        self.waiting[writer] = None
        return True


async def while_connected(reader: asyncio.StreamReader, work) -> None:
    """Run `work` (a coroutine) until it ends or the client hangs up (or sends anything
    more: one request per connection), whichever comes first."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(reader.read(1))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, gone):
            pending.cancel()
    if task.done() and not task.cancelled():
        task.result()       # its exception, if any
