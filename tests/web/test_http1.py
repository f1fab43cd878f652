"""The dashboard's HTTP limits on a real server and real sockets: a request head or body
that comes too slowly, too large a head or body, the connection cap and who is dropped
for it, a client that stops reading, the listen backlog; and the request parser's
refusals as a table."""
from __future__ import annotations

import shutil
import socket
import subprocess

import pytest

from aios.web import http1
from aios.web.http1 import BadRequest, parse_head

from ..integration.conftest import LIVENESS, wait_until
from .conftest import TOKEN, Served


@pytest.fixture
def served(tmp_path):
    served = Served(tmp_path / "home")      # no daemon: the limits are the server's own
    yield served
    served.close()


def raw(served, data: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", served.port), timeout=LIVENESS)
    if data:
        sock.sendall(data)
    return sock


def reply(sock: socket.socket) -> bytes:
    seen = b""
    while True:
        data = sock.recv(65536)
        if not data:
            return seen
        seen += data


def status_of(data: bytes) -> int:
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0


def open_connections(served) -> int:
    return served.call(lambda: len(served.app.listener.open))


def test_a_head_that_comes_too_slowly_gets_408(served, monkeypatch):
    monkeypatch.setattr(http1, "HEAD_TIMEOUT", 0.3)
    sock = raw(served, b"GET /api/ping HTTP/1.1\r\nHost: x\r\n")     # and never the blank line
    answer = reply(sock)
    assert status_of(answer) == 408 and b"no complete request head within 0.3 s" in answer
    assert wait_until(lambda: open_connections(served) == 0)


def test_a_body_that_comes_too_slowly_gets_408(served, monkeypatch):
    monkeypatch.setattr(http1, "BODY_TIMEOUT", 0.3)
    sock = raw(served, b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    assert status_of(reply(sock)) == 408


@pytest.mark.parametrize("request_bytes, code", [
    (b"GET / HTTP/1.1\r\nX: " + b"a" * (http1.HEAD_MAX + 10) + b"\r\n\r\n", 431),
    (b"POST /api/login HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (http1.BODY_MAX + 1), 413),
    (b"POST /api/login HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
    (b"GARBAGE\r\n\r\n", 400),
])
def test_too_large_or_malformed_requests_are_refused(served, request_bytes, code):
    assert status_of(reply(raw(served, request_bytes))) == code


def test_at_the_cap_the_longest_waiting_connection_makes_room(served, monkeypatch):
    monkeypatch.setattr(http1, "CONNECTIONS_MAX", 4)
    silent = [raw(served) for _ in range(4)]
    wait_until(lambda: open_connections(served) == 4, what="four connections")
    answer = reply(raw(served, b"GET /api/ping HTTP/1.1\r\nHost: x\r\n" + auth() + b"\r\n"))
    assert status_of(answer) == 503 and b"no AIOS daemon" in answer, "the newcomer is served"
    assert silent[0].recv(1) == b"", "the oldest silent one was dropped for it"
    assert served.call(lambda: served.app.listener.dropped) == 1


def test_at_the_cap_with_every_connection_busy_a_newcomer_gets_503(served, monkeypatch):
    monkeypatch.setattr(http1, "CONNECTIONS_MAX", 2)
    streams = [raw(served, b"GET /api/stream HTTP/1.1\r\nHost: x\r\n" + auth() + b"\r\n") for _ in range(2)]
    for sock in streams:
        seen = b""
        while b"event: snapshot" not in seen:
            seen += sock.recv(65536)
    try:        # a 503, or a reset when the close beats it (the request is left unread)
        refused = reply(raw(served, b"GET /healthz HTTP/1.1\r\n\r\n"))
        assert refused.startswith(b"HTTP/1.1 503 Service Unavailable") or refused == b""
    except ConnectionResetError:
        pass
    assert open_connections(served) == 2
    streams[0].close()
    wait_until(lambda: open_connections(served) == 1, what="the closed stream to end")
    assert status_of(reply(raw(served, b"GET /healthz HTTP/1.1\r\n\r\n"))) == 200


def test_a_client_that_stops_reading_a_stream_is_dropped(served, monkeypatch):
    """An event stream whose browser reads nothing: once the socket and WRITE_BUFFER are
    full, WRITE_TIMEOUT later its connection ends (and its subscription with it)."""
    monkeypatch.setattr(http1, "WRITE_TIMEOUT", 0.5)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)     # before connecting: a small window
    sock.connect(("127.0.0.1", served.port))
    sock.sendall(b"GET /api/stream HTTP/1.1\r\nHost: x\r\n" + auth() + b"\r\n")
    sock.recv(100)
    wait_until(lambda: served.call(lambda: len(served.app.hub.subscribers)) == 1, what="the subscription")
    big = "x" * 65536
    for n in range(2000):       # at most 128 MB, which no socket buffers
        served.call(served.app.hub.publish, "event", {"name": big, "n": n})
        if open_connections(served) == 0:
            break
    wait_until(lambda: open_connections(served) == 0, what="the stalled stream dropped")
    assert served.call(lambda: len(served.app.hub.subscribers)) == 0
    sock.close()


def test_the_listen_backlog_is_not_five(served):
    if shutil.which("ss") is None:
        pytest.skip("needs ss (iproute2) to read a listening socket's backlog")
    listing = subprocess.run(["ss", "-ltnH", f"sport = :{served.port}"], capture_output=True, text=True).stdout
    backlog = int(listing.split()[2])
    with open("/proc/sys/net/core/somaxconn") as f:
        assert backlog == min(http1.BACKLOG, int(f.read()))


def auth() -> bytes:
    return f"Authorization: Bearer {TOKEN}\r\n".encode()


@pytest.mark.parametrize("head, error", [
    (b"GET /x HTTP/1.1\r\nNo colon here", "malformed header line 'No colon here'"),
    (b"GET /x HTTP/1.1\r\n Folded: x", "malformed header line ' Folded: x'"),
    (b"GET /x HTTP/1.1\r\nBad\0Name: x", "malformed header line 'Bad\\x00Name: x'"),
    (b"GET x HTTP/1.1", "malformed request line 'GET x HTTP/1.1'"),
    (b"GET /x SPDY/3", "malformed request line 'GET /x SPDY/3'"),
    (b"GET /x", "malformed request line 'GET /x'"),
])
def test_the_parser_refuses_what_it_cannot_read(head, error):
    with pytest.raises(BadRequest) as err:
        parse_head(head, "c")
    assert (err.value.code, err.value.message) == (400, error)


def test_the_parser_reads_headers_by_any_case_and_joins_cookies():
    request = parse_head(b"GET /api/log%20x?job=a&lines=2 HTTP/1.1\r\nHost: h\r\nCookie: a=1\r\ncookie: b=2\r\n"
                         b"AUTHORIZATION: Bearer t", "10.0.0.1")
    assert (request.method, request.path, request.query, request.client) == ("GET", "/api/log x", "job=a&lines=2",
                                                                               "10.0.0.1")
    assert request.headers.get("cookie") == "a=1; b=2" and request.headers.get("Authorization") == "Bearer t"


def test_a_client_that_expects_100_continue_gets_it_before_sending_the_body(served):
    """curl sends `Expect: 100-continue` with a large body and waits for the go-ahead."""
    sock = raw(served, b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Expect: 100-continue\r\nContent-Length: 13\r\n\r\n")
    assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
    sock.sendall(b'{"token": ""}')
    assert status_of(reply(sock)) == 403, "then the request is answered (login from no page: refused)"
