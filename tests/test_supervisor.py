"""supervisor: real processes, real signals, real pidfds. Waits are on events with
generous timeouts; nothing asserts speed."""
from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import time

import pytest

from aios import supervisor
from tests.processes import (LIVENESS, NOBODY, PY, foreign_leader, gone, log, log_text, our_zombies, procs,
                             start, wait_exit, wait_log, wait_until)

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
    monkeypatch.setattr(supervisor.procs, "HAS_PIDFD", False)
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
    monkeypatch.setattr(supervisor.procs, "HAS_PIDFD", False)
    proc = start(procs, ["sh", "-c", 'sleep 1000 & echo "grandchild $!"; wait'], log)
    grandchild = int(wait_log(log, "grandchild ").split()[1])
    assert supervisor.reap(proc) is None and supervisor.alive(proc)
    assert supervisor.signal_group(proc, signal.SIGKILL)
    wait_until(lambda: supervisor.reap(proc) is not None)
    wait_until(lambda: gone(grandchild))


# ---------------------------------------------------------------- adoption: only our uids


MARKS = {"AIOS_HOME": "/srv/aios-test-home", "AIOS_DEVICE_ID": "lab-adopt"}


@pytest.fixture
def forged():
    """A process of uid nobody carrying the environment of one of our job processes."""
    runner, pid = foreign_leader({**os.environ, **MARKS, "AIOS_JOB": "web", "AIOS_RUN_ID": "41",
                                  "AIOS_RUN_TOKEN": "guessed"})
    yield pid
    os.kill(pid, signal.SIGKILL)
    runner.wait()


@pytest.fixture
def ours(procs, log):
    """One of our job processes: a group leader carrying the marks and a run token."""
    env = {**os.environ, **MARKS, "AIOS_JOB": "web", "AIOS_RUN_ID": "42", "AIOS_RUN_TOKEN": "t42"}
    proc = start(procs, ["sleep", "1000"], log, env=env)
    # posix_spawn returns once the exec has begun; the new environment shows a moment later.
    wait_until(lambda: b"AIOS_RUN_TOKEN=t42" in open(f"/proc/{proc.pid}/environ", "rb").read())
    return proc


def test_leaders_are_found_only_among_the_uids_allowed(forged, ours):
    keys = ("AIOS_JOB", "AIOS_RUN_ID", "AIOS_RUN_TOKEN")
    found = {leader.pid: leader for leader in supervisor.leaders(MARKS, keys, [os.getuid()])}
    assert list(found) == [ours.pid]
    assert found[ours.pid] == supervisor.Leader(pid=ours.pid, ticks=ours.start_ticks, uid=os.getuid(),
                                                env={"AIOS_JOB": "web", "AIOS_RUN_ID": "42", "AIOS_RUN_TOKEN": "t42"})
    found = {leader.pid: leader for leader in supervisor.leaders(MARKS, keys, [os.getuid(), NOBODY])}
    assert set(found) == {ours.pid, forged} and found[forged].uid == NOBODY
    assert found[forged].env["AIOS_RUN_TOKEN"] == "guessed"  # what the caller checks next


def test_adopt_refuses_another_uid_unless_allowed_and_a_missing_mark(forged, ours):
    ticks = supervisor.start_ticks(forged)
    assert supervisor.adopt(forged, ticks) is None                       # default: our uid only
    assert supervisor.adopt(forged, ticks, uids=[os.getuid()]) is None
    assert supervisor.adopt(forged, ticks, uids=[NOBODY], mark="AIOS_RUN_TOKEN=t41") is None
    assert supervisor.adopt(forged, ticks + 1, uids=[NOBODY]) is None
    proc = supervisor.adopt(forged, ticks, uids=[NOBODY], mark="AIOS_RUN_TOKEN=guessed")
    assert proc is not None and not proc.child
    supervisor.close(proc)
    # Our own child (a re-exec keeps them) is ours whatever its environment says.
    adopted = supervisor.adopt(ours.pid, ours.start_ticks, uids=[NOBODY], mark="AIOS_RUN_TOKEN=t41")
    assert adopted is not None and adopted.child
    supervisor.close(adopted)
