"""What a client can make the daemon or the dashboard hold, against real processes (the
list of issue 11): 2,000 control connections, a client that never reads its replies, a
suspended `aios events -f`, 1,000 idle HTTP connections, 500 aborted long-polls, 200
log tails, a 300 MB newline-free log, and a daemon whose RLIMIT_NOFILE is 64.

Throughout each: the daemon stays up, an always job killed meanwhile is restarted,
`aios status` answers, and the resident memory of the daemon (and of the dashboard)
stays under RSS_BOUND_KIB, read from /proc. Figures are printed, never asserted as
speed. Marked chaos (minutes)."""
from __future__ import annotations

import http.client
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from functools import partial

import pytest

from aios import control
from aios.home import dashboard_token
from aios.web.http1 import CONNECTIONS_MAX
from tests.integration.conftest import LIVENESS, ROOT, DaemonProcess, processes_with_home, wait_until, write_home

pytestmark = pytest.mark.chaos

RSS_BOUND_KIB = 100 * 1024      # the daemon and the dashboard each; both start near 25 MiB
WEB_SERVER = (ROOT / "aios" / "programs" / "web_server.py").read_text()


# ---------------------------------------------------------------- looking at processes

def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def control_sockets(pid: int, home) -> int:
    """pid's sockets bound to home's control socket: the listener and the connections it
    accepted (not the daemon's own to its log writer and zygotes)."""
    path = str(home / control.SOCKET_NAME)
    with open("/proc/net/unix") as f:
        bound = {fields[6] for fields in (line.split() for line in list(f)[1:]) if fields[-1] == path}
    held = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            held.add(os.readlink(f"/proc/{pid}/fd/{fd}").removeprefix("socket:[").rstrip("]"))
        except OSError:
            pass
    return len(bound & held)


def fds(pid: int, kind: str = "") -> int:
    """Open descriptors of pid whose target starts with `kind` ("socket:", "anon_inode:inotify")."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith(kind)
        except OSError:
            pass
    return count


class Watch:
    """The peak RSS of some processes, looked at whenever look() is called."""

    def __init__(self, **pids: int):
        self.pids, self.peak = pids, dict.fromkeys(pids, 0)

    def look(self) -> None:
        for name, pid in self.pids.items():
            self.peak[name] = max(self.peak[name], rss_kib(pid))

    def check(self, title: str, **figures) -> None:
        self.look()
        print(f"\n[exhaustion figures] {title}: peak RSS " +
              ", ".join(f"{name} {kib / 1024:.1f} MiB" for name, kib in self.peak.items()) +
              "".join(f"; {key} {value}" for key, value in figures.items()))
        for name, kib in self.peak.items():
            assert kib < RSS_BOUND_KIB, f"{name} grew to {kib} KiB"


def status(home, job: str) -> dict:
    return control.call(home, "status", job=job)[0]


def kill_and_see_it_back(home) -> None:
    """The daemon still supervises: an always job killed now comes back with a new pid."""
    pid = wait_until(lambda: status(home, "svc")["pid"], what="svc running")
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: status(home, "svc")["pid"] not in (None, pid), what="svc restarted")


def aios_status(home) -> None:
    done = subprocess.run([sys.executable, "-m", "aios", "--home", str(home), "status"], cwd=ROOT,
                          capture_output=True, text=True, timeout=LIVENESS)
    assert done.returncode == 0 and "svc" in done.stdout, done.stderr


JOBS = """
[logs]
max_size = "2GB"

[jobs.svc]
type = "always"
command = ["sleep", "100000"]
min_uptime = "0s"

[jobs.quick]
type = "trigger"
command = ["true"]
max_parallel = 8

[jobs.slow]
type = "trigger"
command = ["sleep", "100000"]
max_parallel = 1000

[jobs.flood]
type = "trigger"
command = ["head", "-c", "314572800", "/dev/zero"]
"""


def start(home, extra: str = "", port: int | None = None) -> DaemonProcess:
    web = f"[web]\nport = {port}\n\n[jobs.web_server]\ntype = \"always\"\nprogram = \"web_server.py:main\"\n" \
        if port else ""
    write_home(home, web + JOBS + extra, {"web_server.py": WEB_SERVER})
    daemon = DaemonProcess(home)
    daemon.wait_ready()
    return daemon


def unix(path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(path))
    return sock


# ---------------------------------------------------------------- the control socket

def test_two_thousand_control_connections(home):
    daemon = start(home)
    watch = Watch(daemon=daemon.pid)
    held_now = partial(control_sockets, daemon.pid, home)   # not its sockets to the log writer or zygotes
    base = held_now()
    held = []
    try:
        for n in range(2000):
            sock = unix(home / "aios.sock")
            if n % 2:
                sock.sendall(b'{"op": "ping"}\n')     # half of them asked once, then idle
            held.append(sock)
            if n % 250 == 0:
                watch.look()
        most = held_now() - base
        aios_status(home)
        kill_and_see_it_back(home)
        watch.check("2,000 control connections held open", **{"daemon sockets beyond its own": most})
        assert most <= control.CONNECTIONS_MAX
    finally:
        for sock in held:
            sock.close()
    wait_until(lambda: held_now() <= base, what="the daemon's control connections gone")
    assert daemon.terminate() == 0


def test_a_client_that_never_reads_its_replies(home):
    daemon = start(home)
    watch = Watch(daemon=daemon.pid)
    sock = unix(home / "aios.sock")
    sock.setblocking(False)
    sent = 0
    request = b'{"op": "status"}\n' * 1000
    deadline = time.monotonic() + LIVENESS
    while time.monotonic() < deadline:
        try:
            sent += sock.send(request)
        except BlockingIOError:
            break               # the daemon stopped reading: its outbox is full
    watch.look()
    aios_status(home)
    kill_and_see_it_back(home)
    watch.check("a client that never reads", **{"request bytes it could send": sent})
    sock.close()
    assert daemon.terminate() == 0


def test_a_suspended_events_follower(home):
    daemon = start(home)
    watch = Watch(daemon=daemon.pid)
    with control.Client(home) as client:
        client.call("ping")                 # accepted: counted in base
        base = fds(daemon.pid, "socket:")
        follower = subprocess.Popen([sys.executable, "-m", "aios", "--home", str(home), "events", "-f"], cwd=ROOT,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            wait_until(lambda: client.call("trigger", job="quick") and select.select([follower.stdout], [], [], 0.2)[0],
                       what="the follower printing an event: it watches")
            follower.send_signal(signal.SIGSTOP)
            triggered = 0
            while fds(daemon.pid, "socket:") > base:   # until the daemon drops the follower
                for _ in range(50):
                    client.call("trigger", job="quick")
                triggered += 50
                watch.look()
                assert triggered < 10_000, "the suspended follower was never dropped"
            aios_status(home)
            kill_and_see_it_back(home)
            watch.check("a suspended `aios events -f`", **{"runs triggered until it was dropped": triggered})
            follower.send_signal(signal.SIGCONT)
            assert follower.wait(LIVENESS) in (1, 3), "it ends, with an error, once it runs again"
        finally:
            follower.kill()
            follower.wait(LIVENESS)
    assert daemon.terminate() == 0


@contextmanager
def limited_daemon(home, nofile: int):
    """simple_orchestrator.py started with RLIMIT_NOFILE soft and hard at `nofile`."""
    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    write_home(home, JOBS)
    with open(home / "daemon.stderr", "ab") as err:
        proc = subprocess.Popen([sys.executable, str(ROOT / "simple_orchestrator.py")], cwd=home, stderr=err,
                                stdout=subprocess.DEVNULL, env={**os.environ, "AIOS_HOME": str(home)},
                                preexec_fn=limit)
    try:
        wait_until(lambda: "daemon_started" in (home / "daemon.stderr").read_text() or proc.poll() is not None)
        assert proc.poll() is None, (home / "daemon.stderr").read_text()
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(LIVENESS)
        except subprocess.TimeoutExpired:
            proc.kill()
        for pid in processes_with_home(home):
            os.killpg(pid, signal.SIGKILL)


def test_a_daemon_with_64_descriptors_under_a_connection_flood(home):
    with limited_daemon(home, 64) as proc:
        watch = Watch(daemon=proc.pid)
        held, refused = [], 0
        try:
            for n in range(300):
                try:
                    sock = unix(home / "aios.sock")
                except OSError:
                    refused += 1
                    continue
                sock.sendall(b'{"op": "ping"}\n')
                held.append(sock)
            most = fds(proc.pid)
            aios_status(home)
            kill_and_see_it_back(home)
            ids = [control.call(home, "trigger", job="quick") for _ in range(20)]
            for trigger in ids:
                assert control.call(home, "wait", trigger=trigger)["outcome"] == "ok"
            watch.check("RLIMIT_NOFILE 64, 300 connections", **{"daemon descriptors at most": most,
                                                                "connections refused by the kernel": refused})
            assert most <= 64 and proc.poll() is None
        finally:
            for sock in held:
                sock.close()
        stderr = (home / "daemon.stderr").read_text()
        assert stderr.count("cannot accept") <= 1, "said once"


# ---------------------------------------------------------------- the dashboard

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Dashboard:
    """The web_server job of a daemon: its pid, its token, requests to it."""

    def __init__(self, home, port: int):
        self.home, self.port = home, port
        self.token = dashboard_token(home)          # as `aios dashboard` gets it
        self.pid = wait_until(lambda: status(home, "web_server")["pid"], what="web_server running")
        wait_until(lambda: self.get("/api/ping")[0] == 200, what="the dashboard answering")

    def get(self, path: str, timeout: float = LIVENESS) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"Authorization": f"Bearer {self.token}"})
            reply = conn.getresponse()
            return reply.status, reply.read().decode(errors="replace")
        except OSError as exc:
            return 0, str(exc)
        finally:
            conn.close()

    def open_stream(self, path: str) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=LIVENESS)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {self.token}\r\n\r\n".encode())
        return sock


@pytest.fixture
def dashboard(home):
    port = free_port()
    daemon = start(home, port=port)
    yield daemon, Dashboard(home, port)
    assert daemon.terminate() == 0


def test_a_thousand_idle_http_connections(dashboard):
    daemon, web = dashboard
    watch = Watch(daemon=daemon.pid, dashboard=web.pid)
    base = fds(web.pid, "socket:")
    held = []
    try:
        for n in range(1000):
            sock = socket.create_connection(("127.0.0.1", web.port), timeout=LIVENESS)
            sock.sendall(b"GET /api/status HTTP/1.1\r\nHost: x\r\n" if n % 2 else b"")   # slowloris, or nothing
            held.append(sock)
        burst = fds(web.pid, "socket:") - base
        settled = wait_until(lambda: (lambda n: n <= CONNECTIONS_MAX + 1 and n)(fds(web.pid, "socket:") - base),
                             what="the dashboard down to its connection cap")
        code, body = web.get("/api/status")
        assert code == 200 and '"svc"' in body, "a request with the token still gets in"
        aios_status(web.home)
        kill_and_see_it_back(web.home)
        watch.check("1,000 idle HTTP connections", **{"dashboard sockets beyond its own, in the burst": burst,
                                                      "then": settled})
    finally:
        for sock in held:
            sock.close()
    wait_until(lambda: fds(web.pid, "socket:") <= base, what="the dashboard's sockets back to its own")


def test_five_hundred_aborted_long_polls(dashboard):
    daemon, web = dashboard
    watch = Watch(daemon=daemon.pid, dashboard=web.pid)
    trigger = control.call(web.home, "trigger", job="slow")         # runs until the test ends
    daemon_base = 3     # its control socket, and the dashboard's two connections to it
    web_base = 5        # its listening socket, its event loop's socket pair, its two to the daemon
    held = partial(control_sockets, daemon.pid, web.home)
    wait_until(lambda: held() == daemon_base, what="the daemon's own sockets")
    for _ in range(20):                      # 20 rounds of 25: each round's waits are open together
        polls = [web.open_stream(f"/api/wait?trigger={trigger}") for _ in range(25)]
        wait_until(lambda: held() >= daemon_base + 25, what="25 waits at the daemon")
        for sock in polls:
            sock.close()                     # the browser tab goes away
        wait_until(lambda: held() <= daemon_base, what="the waits' daemon connections gone")
        watch.look()
    wait_until(lambda: fds(web.pid, "socket:") <= web_base, what="the dashboard's connections gone")
    code, body = web.get("/api/status")
    assert code == 200, body
    aios_status(web.home)
    kill_and_see_it_back(web.home)
    watch.check("500 aborted long-polls", **{"daemon sockets after": held() - daemon_base})


def test_two_hundred_log_tails_share_one_inotify_instance(dashboard):
    daemon, web = dashboard
    watch = Watch(daemon=daemon.pid, dashboard=web.pid)
    log = web.home / "logs" / "svc.log"
    with open(log, "a") as f:
        f.write("before\n")
    instances = fds(web.pid, "anon_inode:inotify")
    tails = [web.open_stream("/api/log?job=svc&lines=5") for _ in range(200)]
    try:
        for sock in tails:
            assert b"before" in read_until(sock, b"before")
        with open(log, "a") as f:
            f.write("written-after\n")
        for sock in tails:
            assert b"written-after" in read_until(sock, b"written-after")
        watch.check("200 log tails", **{"inotify instances of the dashboard": fds(web.pid, "anon_inode:inotify")})
        assert fds(web.pid, "anon_inode:inotify") == max(instances, 1)
        kill_and_see_it_back(web.home)
        aios_status(web.home)
    finally:
        for sock in tails:
            sock.close()


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    seen = b""
    while marker not in seen:
        data = sock.recv(65536)
        assert data, f"the stream ended before {marker!r}"
        seen = seen[-65536:] + data
    return seen


def test_a_300_mb_log_without_a_newline(dashboard):
    """A job writes 300 MB of NUL bytes and no newline while a viewer tails its log: the
    viewer gets one cut line and the dashboard's memory stays bounded."""
    daemon, web = dashboard
    watch = Watch(daemon=daemon.pid, dashboard=web.pid)
    cpu_before = cpu_seconds(web.pid)
    tail = web.open_stream("/api/log?job=flood&lines=200")
    read_until(tail, b"event: lines")
    trigger = control.call(web.home, "trigger", job="flood")
    while True:
        done = control.call(web.home, "history", job="flood", limit=1)
        watch.look()
        if done and done[0]["outcome"]:
            break
        time.sleep(0.05)
    assert (web.home / "logs" / "flood.log").stat().st_size == 314572800
    seen = read_until(tail, b"[line cut]")
    tail.close()
    assert control.call(web.home, "wait", trigger=trigger)["outcome"] == "ok"
    kill_and_see_it_back(web.home)
    watch.check("a 300 MB newline-free log tailed", **{
        "dashboard CPU for it": f"{cpu_seconds(web.pid) - cpu_before:.2f} s", "cut line bytes seen": len(seen)})


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

