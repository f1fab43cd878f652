"""The fence's rules on real processes, driven line by line in this process (no fence
process, no clock: a deadline in the past is due at the next `_fire`): a copy armed by its
mark before its pid is known is killed with every process carrying the mark, also one
that left its group; disarmed, or armed for another mark or a reused pid, nothing is."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from aios.supervisor import procfs
from aios.supervisor.fence import Fence, now

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


@pytest.fixture
def fence(tmp_path):
    fence = Fence(str(tmp_path / "fence.sock"))
    yield fence
    fence.listener.close()


@pytest.fixture
def started():
    procs: list[subprocess.Popen] = []

    def start(mark: str | None = None) -> subprocess.Popen:
        env = {**os.environ, **({"AIOS_RUN_TOKEN": mark} if mark else {})}
        proc = subprocess.Popen(SLEEPER, env=env, start_new_session=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def killed(proc: subprocess.Popen) -> bool:
    return proc.wait(timeout=30) == -signal.SIGKILL


def arm(fence: Fence, key: str, pid: int = 0, ticks: int = 0, mark: str = "-", due: float = -1.0) -> None:
    fence.command(["arm", key, str(pid), str(ticks), "-", f"{now() + due:.3f}", mark])


def test_a_copy_armed_by_its_mark_before_its_spawn_is_killed_with_what_left_its_group(fence, started):
    leader, escaped, other = started("n1.mac"), started("n1.mac"), started("n2.mac")   # each in a session
    arm(fence, "job:n1", mark="AIOS_RUN_TOKEN=n1.mac")
    fence._fire()
    assert killed(leader) and killed(escaped)
    assert other.poll() is None, "a process of another run was killed"


def test_disarmed_or_not_yet_due_nothing_is_killed(fence, started):
    proc = started("n3.mac")
    arm(fence, "job:n3", mark="AIOS_RUN_TOKEN=n3.mac")
    fence.command(["disarm", "job:n3"])
    arm(fence, "job:later", mark="AIOS_RUN_TOKEN=n3.mac", due=600.0)
    fence._fire()
    assert proc.poll() is None and list(fence.armed) == ["job:later"]


def test_armed_by_pid_the_group_dies_unless_the_pid_was_reused(fence, started):
    proc, reused = started(), started()
    ticks = procfs.stat(proc.pid).ticks
    arm(fence, "job:1", pid=proc.pid, ticks=ticks)
    arm(fence, "job:2", pid=reused.pid, ticks=procfs.stat(reused.pid).ticks + 1)   # not the process armed
    fence._fire()
    assert killed(proc)
    assert reused.poll() is None
    assert not fence.armed


def test_a_line_of_the_old_form_or_a_bad_one_arms_nothing(fence):
    fence.command(["arm", "job:x", "1", "2", "-", "3.0"])            # no mark field
    fence.command(["arm", "job:y", "one", "2", "-", "3.0", "-"])
    assert not fence.armed
