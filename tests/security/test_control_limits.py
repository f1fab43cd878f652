"""The control socket's limits, on a real socket and the daemon's own loop, with a small
hand-written engine (the ops these tests use: ping, status, wait, watch): a client that
never reads, a watcher that falls behind, connections past the cap, a connection that
sends nothing, a wait whose client left, and accept() out of descriptors."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading

import pytest

from aios import control
from aios.engine.loop import Loop

from ..integration.conftest import LIVENESS, ROOT


class Event:
    def __init__(self, n: int):
        self.id, self.ts, self.name, self.job, self.message, self.data = n, 0.0, "status", "svc", "x" * 200, None


class Engine:
    """What the socket server needs of an engine, and a `status` reply of ~10 KB."""

    def __init__(self):
        self.loop = Loop()
        self.watchers: list = []
        self.waiters: dict[int, list] = {}

    def ping(self) -> dict:
        return {"pid": os.getpid()}

    def status(self, name=None) -> list:
        return [{"name": f"job{i}", "why": "w" * 100} for i in range(80)]

    def wait_trigger(self, trigger: int, reply) -> None:
        self.waiters.setdefault(trigger, []).append(reply)

    def announce(self, n: int) -> None:
        for watcher in list(self.watchers):
            watcher(Event(n))


@pytest.fixture
def served(tmp_path):
    """A ControlServer in a thread of its own, driven through `served.do(fn)`."""
    engine = Engine()
    reports: list[str] = []
    server = control.ControlServer(engine, str(tmp_path / "aios.sock"), report=reports.append)
    stop = threading.Event()
    thread = threading.Thread(target=engine.loop.run, args=(stop.is_set,), daemon=True)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    jobs: list = []

    def run_jobs():
        os.read(wake_r, 4096)
        while jobs:
            fn, done, box = jobs.pop(0)
            box.append(fn())
            done.set()

    engine.loop.add_reader(wake_r, run_jobs)

    def do(fn):
        done, box = threading.Event(), []
        jobs.append((fn, done, box))
        os.write(wake_w, b"x")
        assert done.wait(LIVENESS), "the loop did not run the call"
        return box[0]

    thread.start()
    served = type("Served", (), {})()
    served.engine, served.server, served.do, served.reports = engine, server, do, reports
    served.path = str(tmp_path / "aios.sock")
    yield served
    do(server.close)
    stop.set()
    os.write(wake_w, b"x")
    thread.join(LIVENESS)
    os.close(wake_r)
    os.close(wake_w)


def connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(LIVENESS)
    sock.connect(path)
    return sock


def lines(sock: socket.socket):
    buffer = b""
    while True:
        while b"\n" not in buffer:
            data = sock.recv(1 << 16)
            if not data:
                return
            buffer += data
        line, buffer = buffer.split(b"\n", 1)
        yield json.loads(line)


def connections(served) -> list:
    return served.do(lambda: list(served.server.connections))


def test_a_client_that_never_reads_holds_a_bounded_outbox_and_loses_nothing(served):
    sock = connect(served.path)
    sock.setblocking(False)
    sent = 0
    request = b'{"op": "status"}\n' * 100
    try:
        while sent < 10_000:
            sent += sock.send(request) // len(b'{"op": "status"}\n')   # until the socket is full
    except BlockingIOError:
        pass
    (conn,) = connections(served)
    outbox, paused = served.do(lambda: (len(conn.outbox), conn.reading_paused))
    reply = len(json.dumps({"ok": True, "result": served.engine.status()}, separators=(",", ":"))) + 1
    assert paused and outbox <= control.OUTBOX_PAUSE + reply, outbox
    print(f"\n[control figures] a client that never reads: {sent} requests sent, {outbox} bytes held")
    sock.setblocking(True)
    answered = 0
    for message in lines(sock):
        assert message["ok"] and len(message["result"]) == 80
        answered += 1
        if answered == sent:
            break
    assert answered == sent, "every request is answered once the client reads"


def test_a_client_that_stops_reading_is_closed_after_stalled(served, monkeypatch):
    monkeypatch.setattr(control, "STALLED", 0.5)
    sock = connect(served.path)
    sock.setblocking(False)
    try:
        while True:
            sock.send(b'{"op": "status"}\n' * 100)
    except BlockingIOError:
        pass
    sock.setblocking(True)
    sock.shutdown(socket.SHUT_WR)
    assert wait_closed(served), "the stalled client is closed"


def wait_closed(served, count: int = 0) -> bool:
    import time

    deadline = time.monotonic() + LIVENESS
    while time.monotonic() < deadline:
        if len(connections(served)) == count:
            return True
        time.sleep(0.01)
    return False


def test_a_watcher_that_falls_behind_is_told_and_closed(served):
    sock = connect(served.path)
    sock.sendall(b'{"op": "watch"}\n')
    replies = lines(sock)
    assert next(replies)["result"] == "watching"
    n = 0
    while served.do(lambda: bool(served.engine.watchers)):
        served.do(lambda: [served.engine.announce(i) for i in range(n, n + 500)])
        n += 500
    (conn_count, watchers) = served.do(lambda: (len(served.server.connections), served.engine.watchers))
    assert conn_count == 0 and watchers == []
    events, ending = 0, None
    for message in replies:
        if "event" not in message:
            ending = message
            break
        events += 1
    print(f"\n[control figures] a watcher that never reads: closed after {n} events, {events} of them delivered")
    assert ending is None or ending["error"].startswith("closed: this watcher fell"), ending
    assert n * 300 > control.WATCH_BEHIND


def test_past_the_cap_the_longest_idle_goes_and_busy_ones_stay(served):
    served.do(lambda: setattr(served.server, "limit", 8))
    watchers = []
    for _ in range(6):
        sock = connect(served.path)
        sock.sendall(b'{"op": "watch"}\n')
        assert next(lines(sock))["result"] == "watching"
        watchers.append(sock)
    idle = []
    for _ in range(2):
        sock = connect(served.path)
        sock.sendall(b'{"op": "ping"}\n')
        assert next(lines(sock))["ok"]
        idle.append(sock)
    newcomer = connect(served.path)
    newcomer.sendall(b'{"op": "ping"}\n')
    assert next(lines(newcomer))["ok"], "a new client gets in"
    message = next(lines(idle[0]))
    assert message == {"ok": False, "error": "closed: the daemon has 8 connections and this one was the longest idle"}
    assert idle[0].recv(1) == b""
    idle[1].sendall(b'{"op": "watch"}\n')
    newcomer.sendall(b'{"op": "watch"}\n')
    for sock in (idle[1], newcomer):
        assert next(lines(sock))["result"] == "watching"
    refused = connect(served.path)
    assert next(lines(refused))["error"].startswith("too many connections (8), none of them idle")
    assert len(connections(served)) == 8 and served.do(lambda: len(served.engine.watchers)) == 8


def test_a_connection_that_sends_nothing_is_closed(served, monkeypatch):
    monkeypatch.setattr(control, "FIRST_REQUEST", 0.3)
    silent = connect(served.path)
    silent.sendall(b'{"op": "pi')          # never a whole line
    message = next(lines(silent))
    assert message == {"ok": False, "error": "closed: no request within 0.3 s of connecting"}
    assert wait_closed(served)


def test_a_wait_whose_client_left_leaves_the_engine(served):
    sock = connect(served.path)
    sock.sendall(b'{"op": "wait", "trigger": 7}\n{"op": "wait", "trigger": 7}\n{"op": "ping"}\n')
    assert next(lines(sock))["ok"]          # the ping: both waits are registered before it
    assert served.do(lambda: len(served.engine.waiters[7])) == 2
    sock.close()
    assert wait_closed(served)
    assert served.do(lambda: served.engine.waiters) == {}


def test_waits_per_connection_are_bounded(served, monkeypatch):
    monkeypatch.setattr(control, "WAITS_PER_CONNECTION", 3)
    sock = connect(served.path)
    sock.sendall(b'{"op": "wait", "trigger": 1}\n' * 4)
    assert next(lines(sock))["error"] == "op 'wait': 3 waits are pending on this connection already; wait on another"
    served.do(lambda: [reply({"trigger": 1, "outcome": "ok"}) for reply in served.engine.waiters.pop(1)])
    replies = lines(sock)
    assert [next(replies)["result"]["outcome"] for _ in range(3)] == ["ok"] * 3
    sock.sendall(b'{"op": "wait", "trigger": 2}\n{"op": "ping"}\n')
    assert next(replies)["ok"]
    assert served.do(lambda: {t: len(w) for t, w in served.engine.waiters.items()}) == {2: 1}


STARVED = r"""
import os, resource, socket, sys
sys.path.insert(0, sys.argv[2])
from aios import control
from aios.engine.loop import Loop

class Engine:
    watchers, waiters = [], {}
    def __init__(self):
        self.loop = Loop()
    def ping(self):
        return {"pid": os.getpid()}

engine = Engine()
server = control.ControlServer(engine, sys.argv[1], report=lambda line: print("report:", line, flush=True))
eaten = []
try:
    while True:
        eaten.append(os.open("/dev/null", os.O_RDONLY))
except OSError:
    pass
os.close(eaten.pop())          # one left: stdin's reader is registered, accept() has none
print("ready", flush=True)

def command():
    word = sys.stdin.readline().strip()
    if word == "state":
        listening = server.sock.fileno() in engine.loop.selector.get_map()
        print("listening" if listening else "not listening", server.starved, flush=True)
    elif word == "free":
        for fd in eaten:
            os.close(fd)
        eaten.clear()
        print("freed", flush=True)
    elif word == "quit":
        raise SystemExit(0)

engine.loop.add_reader(sys.stdin.fileno(), command)
engine.loop.run(lambda: False)
"""


def test_out_of_descriptors_the_server_pauses_says_so_once_and_recovers(tmp_path):
    path = str(tmp_path / "aios.sock")
    proc = subprocess.Popen([sys.executable, "-c", STARVED, path, str(ROOT)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True,
                            preexec_fn=lambda: __import__("resource").setrlimit(
                                __import__("resource").RLIMIT_NOFILE, (64, 64)))
    try:
        assert proc.stdout.readline() == "ready\n"
        waiting = [connect(path) for _ in range(5)]       # queue in the backlog; accept() fails
        for sock in waiting:
            sock.sendall(b'{"op": "ping"}\n')
        report = proc.stdout.readline()
        assert report.startswith("report: control socket: cannot accept (Too many open files); trying again every 1 s")
        proc.stdin.write("state\n")
        proc.stdin.flush()
        assert proc.stdout.readline() in ("not listening True\n", "listening True\n")
        proc.stdin.write("free\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "freed\n"
        for sock in waiting:
            assert next(lines(sock))["result"]["pid"] == proc.pid
        assert proc.stdout.readline() == "report: control socket: descriptors free again; accepting connections\n"
        proc.stdin.write("quit\n")
        proc.stdin.flush()
        assert proc.wait(LIVENESS) == 0
        assert proc.stdout.read() == "", "said once, not once per attempt"
    finally:
        if proc.poll() is None:
            proc.kill()
