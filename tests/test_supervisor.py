"""supervisor: real processes, real signals, real pidfds. Waits are on events with
generous timeouts; nothing asserts speed."""
from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import sys
import time

import pytest

from aios import supervisor
from aios.supervisor import Proc

LIVENESS = 30.0     # seconds: only ever reached when something is broken
PY = sys.executable


@pytest.fixture
def log(tmp_path):
    path = tmp_path / "job.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
    yield path, fd
    os.close(fd)


@pytest.fixture
def procs():
    """Every proc a test starts; whatever is still running is killed afterwards."""
    started: list[Proc] = []
    yield started
    for proc in started:
        supervisor.signal_group(proc, signal.SIGKILL)
        wait_until(lambda p=proc: supervisor.reap(p) is not None)


def start(procs, argv, log, env=None, cwd=None) -> Proc:
    proc = supervisor.spawn(argv, env or dict(os.environ), cwd or os.getcwd(), log[1])
    procs.append(proc)
    return proc


def wait_until(condition, timeout=LIVENESS):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.01)


def wait_exit(proc: Proc) -> tuple:
    """Wait for the pidfd to become readable, then reap."""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.pidfd, selectors.EVENT_READ)
        assert sel.select(LIVENESS), "pidfd never became readable"
    result = supervisor.reap(proc)
    assert result is not None
    return result


def log_text(log) -> str:
    return log[0].read_text()


def wait_log(log, needle: str) -> str:
    wait_until(lambda: needle in log_text(log))
    return log_text(log)


def gone(pid: int) -> bool:
    """The pid no longer runs (it may linger as a zombie of some other reaper)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return True
    return data[data.rindex(b")") + 2:][:1] in (b"Z", b"X")


def our_zombies() -> set[int]:
    found = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if fields[0] == b"Z" and int(fields[1]) == os.getpid():
                found.add(int(name))
    return found


def status_masks(pid: int) -> dict[str, int]:
    with open(f"/proc/{pid}/status") as f:
        rows = [line.split(":", 1) for line in f if line.startswith("Sig")]
    return {key: int(value, 16) for key, value in rows if key in ("SigIgn", "SigCgt", "SigBlk")}


def bit(sig: int) -> int:
    return 1 << (int(sig) - 1)


# ---------------------------------------------------------------- exits


@pytest.mark.skipif(not supervisor.HAS_PIDFD, reason="no pidfd on this kernel")
def test_pidfd_readable_on_exit_and_reap_gives_exit_code(procs, log):
    proc = start(procs, [PY, "-c", "import sys; sys.exit(3)"], log)
    assert proc.child and proc.pidfd is not None and proc.start_ticks is not None
    assert wait_exit(proc) == (3, None)
    assert not supervisor.alive(proc)
    assert proc.pid not in our_zombies()


@pytest.mark.skipif(not supervisor.HAS_PIDFD, reason="no pidfd on this kernel")
def test_signal_group_terminates_and_reap_gives_the_signal(procs, log):
    proc = start(procs, ["sleep", "1000"], log)
    assert supervisor.alive(proc)
    assert supervisor.reap(proc) is None
    assert supervisor.signal_group(proc, signal.SIGTERM)
    assert wait_exit(proc) == (None, signal.SIGTERM)
    assert not supervisor.signal_group(proc, signal.SIGTERM)   # closed: refused


def test_reap_twice_and_close_are_idempotent(procs, log):
    proc = start(procs, ["true"], log)
    wait_until(lambda: supervisor.reap(proc) is not None)
    assert supervisor.reap(proc) == (None, None)
    supervisor.close(proc)
    supervisor.close(proc)


# ---------------------------------------------------------------- what the child gets


def test_argv_with_shell_metacharacters_arrives_literally(procs, log):
    weird = ["; rm -rf /", "$(echo pwned)", "`id`", "a b", "'\"", "*", "x > y", "\\n"]
    script = "import json, sys; print(json.dumps(sys.argv[1:]))"
    proc = start(procs, [PY, "-c", script, *weird], log)
    wait_until(lambda: supervisor.reap(proc) is not None)
    assert json.loads(log_text(log).strip()) == weird


def test_env_and_cwd_reach_the_child(procs, log, tmp_path):
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    before = os.getcwd()
    env = {"PATH": os.environ["PATH"], "AIOS_JOB": "demo", "ODD": "a b;$c"}
    script = "import json, os; print(json.dumps([dict(os.environ), os.getcwd()]))"
    proc = start(procs, [PY, "-c", script], log, env=env, cwd=str(workdir))
    assert os.getcwd() == before
    wait_until(lambda: supervisor.reap(proc) is not None)
    child_env, child_cwd = json.loads(log_text(log))
    assert child_env["AIOS_JOB"] == "demo" and child_env["ODD"] == "a b;$c"
    assert set(child_env) - {"LC_CTYPE"} == set(env)   # Python may coerce LC_CTYPE itself
    assert os.path.realpath(child_cwd) == os.path.realpath(workdir)


def test_program_is_found_in_the_jobs_path(procs, log, tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    tool = bindir / "aios-test-tool"
    tool.write_text("#!/bin/sh\necho tool ran\n")
    tool.chmod(0o755)
    env = {"PATH": f"{bindir}:{os.environ['PATH']}"}
    proc = start(procs, ["aios-test-tool"], log, env=env)
    wait_until(lambda: supervisor.reap(proc) is not None)
    assert "tool ran" in log_text(log)
    with pytest.raises(OSError, match="aios-test-tool"):
        supervisor.spawn(["aios-test-tool"], dict(os.environ), os.getcwd(), log[1])
    with pytest.raises(OSError, match="true"):
        supervisor.spawn(["true"], {"PATH": str(bindir)}, os.getcwd(), log[1])


def test_stdout_and_stderr_land_in_the_log_and_stdin_is_devnull(procs, log):
    script = ("import sys; print('to stdout', flush=True); "
              "print('to stderr', file=sys.stderr, flush=True); print(repr(sys.stdin.read()))")
    proc = start(procs, [PY, "-c", script], log)
    wait_until(lambda: supervisor.reap(proc) is not None)
    assert log_text(log).splitlines() == ["to stdout", "to stderr", "''"]


def test_child_leads_its_own_group_with_default_signals(procs, log):
    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN     # as Python sets it
    old_usr1 = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
    try:
        proc = start(procs, ["sleep", "1000"], log)
    finally:
        signal.signal(signal.SIGUSR1, old_usr1)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    assert os.getpgid(proc.pid) == proc.pid != os.getpgid(0)
    masks = status_masks(proc.pid)
    # glibc's posix_spawn leaves its two internal real-time signals (32 and 33, below
    # SIGRTMIN) ignored and no API can reset them; every real signal is default.
    assert masks["SigIgn"] & ~(bit(32) | bit(33)) == 0
    assert masks["SigBlk"] == 0
    for sig in (signal.SIGPIPE, signal.SIGINT, signal.SIGTERM):
        assert not masks["SigCgt"] & bit(sig)
    assert os.readlink(f"/proc/{proc.pid}/fd/0") == os.devnull


# ---------------------------------------------------------------- process groups


@pytest.mark.skipif(not supervisor.HAS_PIDFD, reason="no pidfd on this kernel")
def test_sigkill_takes_a_term_ignoring_shell_and_its_grandchild(procs, log):
    script = 'trap "" TERM; sleep 1000 & echo "grandchild $!"; wait; wait; wait'
    proc = start(procs, ["sh", "-c", script], log)
    grandchild = int(wait_log(log, "grandchild ").split()[1])
    assert supervisor.signal_group(proc, signal.SIGTERM)
    with selectors.DefaultSelector() as sel:
        sel.register(proc.pidfd, selectors.EVENT_READ)
        assert not sel.select(0.3)          # TERM is ignored: still running
    assert supervisor.alive(proc) and not gone(grandchild)
    assert supervisor.signal_group(proc, signal.SIGKILL)
    assert wait_exit(proc) == (None, signal.SIGKILL)
    wait_until(lambda: gone(grandchild))


def test_reap_kills_grandchildren_left_by_an_exited_leader(procs, log):
    proc = start(procs, ["sh", "-c", 'sleep 1000 & echo "grandchild $!"'], log)
    grandchild = int(wait_log(log, "grandchild ").split()[1])
    result = None

    def reaped():
        nonlocal result
        result = supervisor.reap(proc)
        return result is not None

    wait_until(reaped)
    assert result == (0, None)
    wait_until(lambda: gone(grandchild))


# ---------------------------------------------------------------- failures


@pytest.mark.parametrize("program", ["aios-no-such-program", "/nonexistent/aios-prog"])
def test_exec_failure_raises_naming_the_program_and_leaves_no_zombie(log, program):
    before = our_zombies()
    with pytest.raises(OSError) as info:
        supervisor.spawn([program, "x"], dict(os.environ), os.getcwd(), log[1])
    assert program in str(info.value)
    assert our_zombies() <= before


def test_missing_cwd_raises_naming_it_and_keeps_our_cwd(log, tmp_path):
    before = os.getcwd()
    missing = str(tmp_path / "missing")
    with pytest.raises(OSError, match="missing"):
        supervisor.spawn(["true"], dict(os.environ), missing, log[1])
    assert os.getcwd() == before


# ---------------------------------------------------------------- adoption


def orphan_group_leader(log) -> int:
    """A `sleep` that leads its own group and is not our child (its parent exited)."""
    script = ("import subprocess; p = subprocess.Popen(['sleep', '1000'], "
              "start_new_session=True); print('orphan', p.pid, flush=True)")
    launcher = supervisor.spawn([PY, "-c", script], dict(os.environ), os.getcwd(), log[1])
    wait_until(lambda: supervisor.reap(launcher) is not None)
    return int(wait_log(log, "orphan ").split()[1])


def test_adopt_checks_start_ticks_and_reaps_a_non_child(log):
    pid = orphan_group_leader(log)
    ticks = supervisor.start_ticks(pid)
    assert ticks is not None
    assert supervisor.adopt(pid, ticks + 1) is None            # a reused pid
    proc = supervisor.adopt(pid, ticks)
    assert proc is not None and not proc.child and proc.start_ticks == ticks
    try:
        assert supervisor.alive(proc) and supervisor.reap(proc) is None
        assert supervisor.signal_group(proc, signal.SIGTERM)
        wait_until(lambda: supervisor.reap(proc) is not None)
        assert not supervisor.alive(proc)
        assert not supervisor.signal_group(proc, signal.SIGKILL)
    finally:
        if not gone(pid):
            os.kill(pid, signal.SIGKILL)
    wait_until(lambda: gone(pid))


def test_adopt_refuses_a_pid_that_is_gone(procs, log):
    proc = start(procs, ["true"], log)
    ticks = proc.start_ticks
    wait_until(lambda: supervisor.reap(proc) is not None)
    assert supervisor.adopt(proc.pid, ticks) is None


def test_start_ticks_of_a_missing_pid_is_none():
    assert supervisor.start_ticks(os.getpid()) is not None
    assert supervisor.start_ticks(2 ** 22 + 12345) is None


# ---------------------------------------------------------------- SIGCHLD fallback


@pytest.fixture
def sigchld_wakeup():
    """A socket that becomes readable when SIGCHLD arrives, as in the daemon's loop."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.setblocking(False)
    old_fd = signal.set_wakeup_fd(theirs.fileno())
    old_handler = signal.signal(signal.SIGCHLD, lambda *_: None)
    yield ours
    signal.signal(signal.SIGCHLD, old_handler)
    signal.set_wakeup_fd(old_fd)
    ours.close()
    theirs.close()


def test_sigchld_fallback_without_pidfd(procs, log, monkeypatch, sigchld_wakeup):
    monkeypatch.setattr(supervisor, "HAS_PIDFD", False)
    proc = start(procs, [PY, "-c", "import sys; sys.stdin.read(); sys.exit(7)"], log)
    assert proc.pidfd is None and proc.start_ticks is not None
    result = None
    with selectors.DefaultSelector() as sel:
        sel.register(sigchld_wakeup, selectors.EVENT_READ)
        deadline = time.monotonic() + LIVENESS
        while result is None and time.monotonic() < deadline:
            if sel.select(deadline - time.monotonic()):
                sigchld_wakeup.recv(4096)
            result = supervisor.reap(proc)  # what the daemon does for every proc
    assert result == (7, None)
    assert not supervisor.alive(proc)


def test_fallback_signal_and_group_kill_without_pidfd(procs, log, monkeypatch):
    monkeypatch.setattr(supervisor, "HAS_PIDFD", False)
    proc = start(procs, ["sh", "-c", 'sleep 1000 & echo "grandchild $!"; wait'], log)
    grandchild = int(wait_log(log, "grandchild ").split()[1])
    assert supervisor.reap(proc) is None and supervisor.alive(proc)
    assert supervisor.signal_group(proc, signal.SIGKILL)
    wait_until(lambda: supervisor.reap(proc) is not None)
    wait_until(lambda: gone(grandchild))


@pytest.mark.skipif(not supervisor.HAS_PIDFD, reason="no pidfd on this kernel")
def test_a_child_that_cannot_be_watched_is_not_left_running(log):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    fillers = []
    before = our_zombies()
    try:
        fd = os.open(os.devnull, os.O_RDONLY)
        resource.setrlimit(resource.RLIMIT_NOFILE, (fd + 1, hard))
        fillers.append(fd)                  # every fd number below the limit is taken
        with pytest.raises(OSError, match="cannot watch 'sleep'"):
            supervisor.spawn(["sleep", "1000"], dict(os.environ), os.getcwd(), log[1])
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        for fd in fillers:
            os.close(fd)
    assert our_zombies() <= before
