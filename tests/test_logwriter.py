"""The log writer (aios/logwriter.py) and the daemon's side of it (aios/engine/logpipes.py),
with real processes, pipes, sockets and files: a child writing numbered lines keeps
writing, every line once, through a daemon's death, a writer's death, a writer dropping
its daemon and a new daemon taking over; and it never dies of SIGPIPE."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from aios import logformat
from aios.engine.logpipes import SOCKET_NAME, LogPipes
from aios.engine.loop import Loop
from tests.processes import REPO

LIVENESS = 30.0

# Numbered lines on stdout as fast as a pipe takes them, every tenth also on stderr;
# SIGPIPE at its default, as for any program (Python ignores it otherwise).
COUNTER = """
import os, signal, sys, time
signal.signal(signal.SIGPIPE, signal.SIG_DFL)
n = 0
while True:
    os.write(1, b"%d\\n" % n)
    if n % 10 == 0:
        os.write(2, b"e%d\\n" % n)
    n += 1
    time.sleep(0.001)
"""


def turn_until(loop: Loop, predicate, what: str, timeout: float = LIVENESS):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        loop.turn(0.02)
    return predicate()


def records(path) -> list[logformat.Line]:
    try:
        with open(path, "rb") as f:
            return [logformat.parse(line) for line in f.read().split(b"\n")[:-1]]
    except FileNotFoundError:
        return []


def numbers(path, stream="stdout") -> list[int]:
    prefix = b"e" if stream == "stderr" else b""
    return [int(r.text[len(prefix):]) for r in records(path) if r.stream == stream]


def writer_pids(home) -> list[int]:
    """Live log writers of this home: processes whose command line names its socket's home."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
                with open(f"/proc/{entry}/stat") as f:
                    zombie = f.read().rsplit(")", 1)[1].split()[0] == "Z"
            except OSError:
                continue
            if b"aios.logwriter" in b" ".join(argv) and not zombie and _listens_in(int(entry), home):
                found.append(int(entry))
    return found


def _listens_in(pid: int, home) -> bool:
    """Whether pid holds the listening socket of home's writer (by its inode in /proc/net/unix)."""
    path = str(home / SOCKET_NAME).encode()
    with open("/proc/net/unix", "rb") as f:
        inodes = {line.split()[6] for line in f.read().split(b"\n")[1:] if line.endswith(path)}
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1].encode() in inodes:
            return True
    return False


class Daemon:
    """What a daemon has of the writer: a LogPipes on a loop of its own. `crash()` drops it
    as a kill -9 would: sockets and pipe ends closed, nothing said."""

    def __init__(self, home):
        self.loop, self.reports, self.orphan = Loop(), [], None
        self.pipes = LogPipes(home, self.loop, lambda name, text: self.reports.append((name, text)))
        self.pipes.wanted = True

    def crash(self) -> None:
        pipes = self.pipes
        if pipes.link is not None:
            pipes.link.close()
        for held in pipes.held.values():
            os.close(held.fd)
        if pipes.child is not None:      # still our child (as after a re-exec): reaped at the end
            os.close(pipes.child.pidfd)
            self.orphan = pipes.child.pid
        pipes.finishing, pipes.link, pipes.held, pipes.child = True, None, {}, None
        self.loop.close()


@pytest.fixture
def started():
    """Every child and daemon a test starts; children killed and daemons finished after."""
    children, daemons = [], []
    yield children, daemons
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait()
    for daemon in daemons:
        if not daemon.pipes.finishing:
            daemon.pipes.finish(timeout=LIVENESS)
    for daemon in daemons:
        if daemon.orphan is not None:     # the writer of a crashed daemon ends with its pipes
            deadline = time.monotonic() + LIVENESS
            while os.waitpid(daemon.orphan, os.WNOHANG) == (0, 0):
                assert time.monotonic() < deadline, "the writer of a crashed daemon never exited"
                time.sleep(0.01)


def counter(started, daemon: Daemon, log) -> subprocess.Popen:
    out, err = daemon.pipes.open(str(log), "utc")
    try:
        child = subprocess.Popen([sys.executable, "-c", COUNTER], stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    finally:
        os.close(out)
        os.close(err)
    started[0].append(child)
    return child


def new_daemon(started, home) -> Daemon:
    daemon = Daemon(home)
    started[1].append(daemon)
    return daemon


def counting(started, folder):
    """A daemon, and a child counting into folder/job.log through its writer (50 lines in)."""
    daemon = new_daemon(started, folder)
    log = folder / "job.log"
    child = counter(started, daemon, log)
    grows(daemon, log)
    return daemon, log, child


def grows(daemon: Daemon, log, by: int = 50):
    """Turn daemon's loop until `by` more stdout lines are in log."""
    before = len(numbers(log))
    turn_until(daemon.loop, lambda: len(numbers(log)) >= before + by, f"{by} more lines in {log}")


def every_line_once(log, child) -> None:
    seen = numbers(log)
    assert seen == list(range(len(seen))), "a line lost, repeated or out of order"
    errors = numbers(log, "stderr")
    assert errors == list(range(0, 10 * len(errors), 10))
    assert child.poll() is None, f"the job died: {child.returncode}"


# ---------------------------------------------------------------- stamping


def test_lines_are_stamped_with_their_stream(tmp_path, started):
    daemon = new_daemon(started, tmp_path)
    log = tmp_path / "logs" / "job.log"
    out, err = daemon.pipes.open(str(log), "utc")
    child = subprocess.Popen(["sh", "-c", "echo one; echo two >&2; printf 'no end'"], stdout=out, stderr=err)
    os.close(out)
    os.close(err)
    started[0].append(child)
    t0 = time.time()
    turn_until(daemon.loop, lambda: not daemon.pipes.held, "both pipes done")
    lines = records(log)
    assert sorted((ln.stream, ln.partial, ln.text) for ln in lines) == [
        ("stderr", False, b"two"), ("stdout", False, b"no end"), ("stdout", False, b"one")]
    assert all(t0 - 1 <= ln.ts <= time.time() + 1 for ln in lines)
    assert log.read_bytes().endswith(b"Z stdout F no end\n") or b"Z stdout F no end\n" in log.read_bytes()


def test_an_unfinished_line_is_written_after_a_while(tmp_path, started):
    """A prompt without a newline shows up (as a P piece) before the job goes on."""
    daemon = new_daemon(started, tmp_path)
    log = tmp_path / "job.log"
    out, err = daemon.pipes.open(str(log), "local")
    os.close(err)
    os.write(out, b"Password: ")
    turn_until(daemon.loop, lambda: log.exists() and log.read_bytes(), "the unfinished line written")
    assert [(r.stream, r.partial, r.text) for r in records(log)] == [("stdout", True, b"Password: ")]
    os.write(out, b"ok\n")
    os.close(out)
    turn_until(daemon.loop, lambda: not daemon.pipes.held, "the pipes done")
    assert [(r.partial, r.text) for r in records(log)] == [(True, b"Password: "), (False, b"ok")]


def test_several_jobs_one_writer_and_it_exits_when_idle(tmp_path, started):
    daemon = new_daemon(started, tmp_path)
    children = [counter(started, daemon, tmp_path / f"job{i}.log") for i in range(3)]
    for i in range(3):
        grows(daemon, tmp_path / f"job{i}.log")
    assert len(writer_pids(tmp_path)) == 1
    for child in children:
        child.kill()
        child.wait()
    turn_until(daemon.loop, lambda: not daemon.pipes.held, "every pipe done")
    for i in range(3):
        seen = numbers(tmp_path / f"job{i}.log")
        assert seen == list(range(len(seen)))
    writer = daemon.pipes.child
    daemon.pipes.wanted = False
    daemon.pipes.finish(timeout=LIVENESS)
    assert writer.pid not in writer_pids(tmp_path)
    assert not os.path.exists(f"/proc/{writer.pid}"), "the writer was not reaped"


# ---------------------------------------------------------------- deaths


def test_the_job_outlives_its_daemon_and_a_new_daemon_takes_over(tmp_path, started):
    first = new_daemon(started, tmp_path)
    log = tmp_path / "job.log"
    child = counter(started, first, log)
    grows(first, log)
    writer = first.pipes.child.pid
    first.crash()                       # the daemon is killed: the writer goes on alone
    before = len(numbers(log))
    deadline = time.monotonic() + LIVENESS
    while len(numbers(log)) < before + 100:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    second = new_daemon(started, tmp_path)
    assert second.pipes.find()
    turn_until(second.loop, lambda: len(second.pipes.held) == 2, "the new daemon holding both pipes")
    assert writer_pids(tmp_path) == [writer]
    grows(second, log)
    every_line_once(log, child)


def test_a_killed_writer_is_replaced_and_the_job_never_sees_it(tmp_path, started):
    daemon, log, child = counting(started, tmp_path)
    old = daemon.pipes.child.pid
    os.kill(old, signal.SIGKILL)
    turn_until(daemon.loop, lambda: daemon.pipes.child is not None and daemon.pipes.child.pid != old,
               "a new writer")
    grows(daemon, log, 200)
    assert child.poll() is None, "the job died with its writer"
    assert writer_pids(tmp_path) == [daemon.pipes.child.pid]
    assert [name for name, _ in daemon.reports] == ["log_writer_lost"]
    seen = numbers(log)
    assert seen == sorted(set(seen)), "a line written twice or out of order"
    gap = set(range(len(seen))) - set(seen)
    assert len(gap) < 64 * 1024 // 2, "more lost than the one chunk the killed writer had read"


def test_a_writer_that_dropped_its_daemon_is_reached_again_not_doubled(tmp_path, started):
    """Another connection takes the writer's link (as when the writer gives up on a daemon
    slow to read): the daemon reaches the same writer again, never starts a second reader."""
    daemon, log, child = counting(started, tmp_path)
    writer = daemon.pipes.child.pid
    intruder = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    intruder.connect(str(tmp_path / SOCKET_NAME))
    link = daemon.pipes.link
    turn_until(daemon.loop, lambda: daemon.pipes.link not in (None, link), "a new link")
    intruder.close()
    grows(daemon, log, 200)
    assert writer_pids(tmp_path) == [writer]
    turn_until(daemon.loop, lambda: daemon.pipes.listing is None, "the pipes listed again")
    assert len(daemon.pipes.held) == 2
    every_line_once(log, child)


def test_a_restarted_writer_takes_pipes_whose_adds_it_never_got(tmp_path, started):
    """Pipes handed to a writer that dies before it reads its messages are handed again."""
    daemon, log, first = counting(started, tmp_path)
    os.kill(daemon.pipes.child.pid, signal.SIGSTOP)       # messages now wait in its socket
    second = counter(started, daemon, tmp_path / "second.log")
    os.kill(daemon.pipes.child.pid, signal.SIGKILL)
    grows(daemon, tmp_path / "second.log")
    grows(daemon, log)
    assert first.poll() is None and second.poll() is None


# ---------------------------------------------------------------- what others may send


def test_the_writer_refuses_what_is_not_a_pipe_for_a_log(tmp_path, started):
    daemon, log, child = counting(started, tmp_path)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    conn.connect(str(tmp_path / SOCKET_NAME))       # takes the link, as a confused process could
    readable, unused = os.pipe()
    regular = os.open(tmp_path / "file", os.O_RDWR | os.O_CREAT)
    bad = [({"op": "add", "path": "relative.log", "stream": "stdout", "format": "utc"}, [readable]),
           ({"op": "add", "path": str(tmp_path / "x.log"), "stream": "stdin", "format": "utc"}, [readable]),
           ({"op": "add", "path": str(tmp_path / "x.log"), "stream": "stdout", "format": "utc"}, [regular]),
           ({"op": "add", "path": str(tmp_path / "x\0.log"), "stream": "stdout", "format": "utc"}, [readable]),
           ({"op": "nonsense"}, []), ("not a dict", []), ({"op": "add"}, [])]
    for message, fds in bad:
        socket.send_fds(conn, [json.dumps(message).encode()], fds) if fds else conn.send(json.dumps(message).encode())
    conn.send(b"\xff\x00 not json")
    conn.send(json.dumps({"op": "list"}).encode())
    replies = []
    conn.settimeout(LIVENESS)
    while not replies or replies[-1].get("op") != "listed":
        data, fds, _, _ = socket.recv_fds(conn, 8192, 1)
        replies.append(json.loads(data))
        for fd in fds:
            os.close(fd)
    assert sorted(r["stream"] for r in replies[:-1]) == ["stderr", "stdout"]
    assert not (tmp_path / "x.log").exists()
    conn.close()
    for fd in (readable, unused, regular):
        os.close(fd)
    grows(daemon, log)
    every_line_once(log, child)
    assert "refused a message" in (tmp_path / "orchestrator.log").read_text()


# The writer out of descriptors with a daemon's connection waiting: it stops watching its
# listener for ACCEPT_PAUSE (its loop no longer wakes at once, again and again), then
# takes the connection once descriptors are free.
OUT_OF_FDS = r"""
import errno, os, resource, socket, sys, time
sys.path.insert(0, sys.argv[1])
from aios import logwriter
path = sys.argv[2]
listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
listener.bind(path)
listener.listen(8)
writer = logwriter.Writer(listener)
client = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
client.connect(path)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
fillers = []
while True:
    try:
        fillers.append(os.open(os.devnull, os.O_RDONLY))
    except OSError as exc:
        assert exc.errno == errno.EMFILE
        break
for key, _ in writer.selector.select(0):
    key.data()
assert writer.link is None and writer.accept_after is not None
assert writer.selector.select(0) == [], "the listener is not watched while it cannot be taken"
assert 0 < writer._timeout(time.monotonic()) <= logwriter.ACCEPT_PAUSE
for fd in fillers:
    os.close(fd)
writer._resume_accepting(writer.accept_after)
for key, _ in writer.selector.select(5):
    key.data()
assert writer.link is not None and writer.accept_after is None
print("taken")
"""


def test_out_of_descriptors_the_writer_waits_for_the_connection_instead_of_spinning(tmp_path):
    result = subprocess.run([sys.executable, "-c", OUT_OF_FDS, str(REPO), str(tmp_path / "w.sock")],
                            capture_output=True, text=True, timeout=LIVENESS)
    assert (result.returncode, result.stdout) == (0, "taken\n"), result.stderr
    assert "out of descriptors: a connection waits 0.5 s" in result.stderr
