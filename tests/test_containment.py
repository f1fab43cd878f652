"""No process escapes its job: a child that calls setsid stops with its job (cgroup, or
the subreaper's process tree and run mark), orphans are reaped without stealing a job's
exit status, and a daemon that is PID 1 keeps no zombies. Each test runs its own driver
interpreter, so that a subreaper or a cgroup never outlives it."""
from __future__ import annotations

import os

import pytest

from tests.processes import require_root, run_driver

# Common to the drivers: start a job whose child leaves the process group (setsid) and
# reports its pid; wait for things with a deadline; list our zombies.
PRELUDE = r"""
import json, os, selectors, signal, sys, time
from aios import supervisor
from tests.processes import gone, our_zombies as zombies     # as PID 1: every zombie of the namespace
log_r, log_w = os.pipe()

def job(script, token="tok-1"):
    env = {**os.environ, "AIOS_RUN_TOKEN": token}
    proc = supervisor.spawn(["sh", "-c", script], env, "/", log_w, mark=f"AIOS_RUN_TOKEN={token}", unit="esc")
    escapee = int(os.read(log_r, 100).split()[-1])
    until(lambda: os.getpgid(escapee) != proc.pid, 10)     # setsid has run
    return proc, escapee

def until(condition, timeout=30):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True

@__import__("atexit").register
def cleanup():
    # Whatever happened, leave no process and no cgroup behind.
    tree = supervisor.cgroup.TREE
    if tree is None or not os.path.isdir(tree.scope):
        return
    runs = [os.path.join(tree.scope, d) for d in os.listdir(tree.scope) if os.path.isdir(os.path.join(tree.scope, d))]
    for run in runs:
        supervisor.cgroup.kill(run)
    until(lambda: all(supervisor.cgroup.remove(run) for run in runs), 10)
    os.rmdir(tree.scope)

STAY = "setsid sleep 1000 & echo $!; wait"      # the leader stays, its child left the group
LEAVE = "setsid sleep 1000 & echo $!"           # the leader exits at once
"""

ESCAPE_DRIVER = PRELUDE + r"""
mode = sys.argv[1]
if mode == "cgroup":
    supervisor.setup_containment(f"aios-test-{os.getpid()}")
elif mode == "subreaper":
    supervisor.become_subreaper()
out = {"containment": supervisor.containment()}
if mode == "cgroup" and not out["containment"].startswith("cgroup"):
    print(json.dumps(out)); sys.exit(0)
proc, escapee = job(STAY)
out["escapee_in_other_group"] = os.getpgid(escapee) != proc.pid
out["in_cgroup"] = proc.cgroup is not None and escapee in supervisor.cgroup.pids(proc.cgroup) \
    and supervisor.cgroup.of(escapee) == proc.cgroup
supervisor.signal_group(proc, signal.SIGTERM)
out["stop: escapee gone"] = until(lambda: gone(escapee), 10)
until(lambda: supervisor.reap(proc) is not None)
proc, escapee = job(LEAVE, "tok-2")
until(lambda: supervisor.reap(proc) is not None)
out["exit: escapee gone"] = until(lambda: gone(escapee), 10)
if not gone(escapee):
    os.kill(escapee, signal.SIGKILL)
until(lambda: not supervisor.reap_orphans(()) and not zombies(), 10)
out["zombies"] = sorted(zombies())
if proc.cgroup is not None:
    scope = supervisor.cgroup.TREE.scope
    runs = lambda: [d for d in os.listdir(scope) if os.path.isdir(os.path.join(scope, d))]
    out["cgroups removed"] = until(lambda: (supervisor.cgroup.sweep(), runs() == [])[1], 10)
print(json.dumps(out))
"""


def test_with_a_cgroup_a_setsid_child_stops_with_its_job():
    require_root()
    out = run_driver(ESCAPE_DRIVER, "cgroup")
    if not out["containment"].startswith("cgroup"):
        pytest.skip(f"no cgroup v2 we may manage here (containment: {out['containment']})")
    assert out == {"containment": out["containment"], "escapee_in_other_group": True, "in_cgroup": True,
                   "stop: escapee gone": True, "exit: escapee gone": True, "zombies": [],
                   "cgroups removed": True}


def test_as_subreaper_a_setsid_child_stops_with_its_job():
    out = run_driver(ESCAPE_DRIVER, "subreaper")
    assert out == {"containment": "process group + subreaper", "escapee_in_other_group": True,
                   "in_cgroup": False, "stop: escapee gone": True, "exit: escapee gone": True, "zombies": []}


def test_with_the_process_group_alone_a_setsid_child_outlives_its_exited_job():
    """What the subreaper and the cgroup add: here the child that left the group while
    its leader was running is still stopped (it is the leader's child), but once the
    leader is gone, nothing finds the orphan."""
    out = run_driver(ESCAPE_DRIVER, "none")
    assert out["containment"] == "process group"
    assert out["stop: escapee gone"] and not out["exit: escapee gone"]


STATUS_DRIVER = PRELUDE + r"""
supervisor.become_subreaper()
proc = supervisor.spawn(["sh", "-c", "for i in 1 2 3 4 5; do (sleep 0.01 &); done; sleep 0.2; exit 7"],
                        dict(os.environ), "/", log_w)
reaped = []
until(lambda: (reaped.extend(supervisor.reap_orphans({proc.pid})), gone(proc.pid))[1])
until(lambda: (reaped.extend(supervisor.reap_orphans({proc.pid})), len(reaped) >= 5)[1], 10)
print(json.dumps([len(reaped), supervisor.reap(proc)]))
"""


def test_reap_orphans_reaps_orphans_and_never_a_tracked_childs_status():
    orphans, status = run_driver(STATUS_DRIVER)
    assert orphans == 5 and status == [7, None]


# PID 1 in a new pid namespace: a job spawns 100 short-lived orphans; the driver reaps
# on SIGCHLD (with reap_orphans) or not at all; prints the zombies left in the namespace.
PID1_DRIVER = PRELUDE + r"""
reaping = sys.argv[1] == "reap"
assert os.getpid() == 1
wake_r, wake_w = os.pipe()
os.set_blocking(wake_w, False)
signal.set_wakeup_fd(wake_w)
signal.signal(signal.SIGCHLD, lambda *_: None)
proc = supervisor.spawn(["sh", "-c", "for i in $(seq 100); do (sleep 0.01 &); done; sleep 1"],
                        dict(os.environ), "/", log_w)
sel = selectors.DefaultSelector()
sel.register(wake_r, selectors.EVENT_READ)
sel.register(proc.pidfd, selectors.EVENT_READ)
reaped, status = 0, None
while status is None:
    for key, _ in sel.select(30):
        if key.fd == wake_r:
            os.read(wake_r, 4096)
            if reaping:
                reaped += len(supervisor.reap_orphans({proc.pid}))
        else:
            status = supervisor.reap(proc)
if reaping:
    until(lambda: (globals().__setitem__("reaped", reaped + len(supervisor.reap_orphans(()))), reaped >= 100)[1], 10)
else:
    until(lambda: len(zombies()) >= 100, 10)
print(json.dumps([status, reaped, len(zombies())]))
"""


@pytest.mark.parametrize("mode", ["reap", "no-reap"])
def test_as_pid_1_no_zombies_accumulate(mode):
    require_root()
    status, reaped, zombies = run_driver(PID1_DRIVER, mode, prefix=("unshare", "--pid", "--fork", "--mount-proc"))
    assert status == [0, None]
    if mode == "reap":
        assert (reaped, zombies) == (100, 0)
    else:
        assert (reaped, zombies) == (0, 100)     # what reap_orphans prevents


# A daemon that dies leaves a run in its cgroup; the next one (same scope name) adopts
# it and stops it whole, setsid child included.
LEAVE_BEHIND = PRELUDE.replace("@__import__(\"atexit\").register", "") + r"""
supervisor.setup_containment(sys.argv[1])
proc, escapee = job(STAY)
print(json.dumps([proc.pid, proc.start_ticks, escapee, proc.cgroup]))
"""

TAKE_BACK = PRELUDE + r"""
pid, ticks, escapee = map(int, sys.argv[2:5])
supervisor.setup_containment(sys.argv[1])
proc = supervisor.adopt(pid, ticks, mark="AIOS_RUN_TOKEN=tok-1")
out = [proc.cgroup if proc else None]
supervisor.signal_group(proc, signal.SIGKILL)
out.append(until(lambda: gone(pid) and gone(escapee), 10))
supervisor.reap(proc)
print(json.dumps(out))
"""


def test_a_run_left_by_a_dead_daemon_is_adopted_with_its_cgroup():
    require_root()
    scope = f"aios-test-adopt-{os.getpid()}"
    pid, ticks, escapee, place = run_driver(LEAVE_BEHIND, scope)
    try:
        if place is None:
            pytest.skip("no cgroup v2 we may manage here")
        assert run_driver(TAKE_BACK, scope, str(pid), str(ticks), str(escapee)) == [place, True]
    finally:
        for leftover in (pid, escapee):
            try:
                os.kill(leftover, 9)
            except ProcessLookupError:
                pass
