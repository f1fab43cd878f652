"""Per-run limits on real processes: what the child gets (nofile, nice, I/O class,
memory), how each limit is enforced here (limits.plan and its notes, a table), and the
OOM kill of a cgroup memory.max where this machine offers the memory controller."""
from __future__ import annotations

import os
import resource
import subprocess

import pytest

from aios import supervisor
from aios.supervisor import limits
from tests.processes import PY, log, log_text, procs, require_root, run_driver, start, wait_until


def limits_of(pid: int) -> dict[str, tuple[str, str]]:
    with open(f"/proc/{pid}/limits") as f:
        rows = f.read().splitlines()[1:]
    return {row[:26].strip(): tuple(row[26:].split()[:2]) for row in rows}


def nice_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return int(f.read().rsplit(b")", 1)[1].split()[16])


def test_nofile_nice_and_ioclass_reach_the_child(procs, log):
    require_root()              # a nice below the daemon's
    nofile = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 1 << 20) - 1
    proc = start(procs, ["sleep", "1000"], log, limits={"nofile": nofile, "nice": -3, "ioclass": "idle"})
    assert limits_of(proc.pid)["Max open files"] == (str(nofile), str(nofile))
    assert nice_of(proc.pid) == -3
    assert subprocess.run(["ionice", "-p", str(proc.pid)], capture_output=True, text=True).stdout.strip() == "idle"


def test_limits_a_process_may_not_take_are_a_spawn_error(log):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    driver = r"""
import json, os
from aios import supervisor
log = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
out = []
for limits in ({"nice": -5}, {"nofile": %d}, {"ioclass": "realtime"}, {"nice": 5}):
    try:
        proc = supervisor.spawn(["true"], dict(os.environ), "/", log, limits=limits)
        out.append("started")
    except supervisor.SpawnError as exc:
        out.append(str(exc))
print(json.dumps(out))
""" % (hard + 1 if hard != resource.RLIM_INFINITY else 1 << 20)
    require_root()
    nice, nofile, realtime, fine = run_driver(driver, prefix=("runuser", "-u", "nobody", "--"))
    assert nice == "cannot start 'true': setpriority(-5): Permission denied (EACCES)"
    assert nofile == "cannot start 'true': setrlimit(RLIMIT_NOFILE): Operation not permitted (EPERM)"
    assert realtime == "cannot start 'true': ioprio_set(8196): Operation not permitted (EPERM)"
    assert fine == "started"


def test_memory_max_without_a_memory_controller_is_a_data_limit(procs, log):
    if supervisor.cgroup.TREE is not None and "memory" in supervisor.cgroup.TREE.controllers:
        pytest.skip("this process runs jobs in cgroups with a memory controller")
    script = "x = bytearray(200 << 20)"
    proc = start(procs, [PY, "-c", script], log, limits={"memory_max": 64 << 20})
    assert limits_of(proc.pid)["Max data size"] == (str(64 << 20), str(64 << 20))
    wait_until(lambda: supervisor.reap(proc) is not None)
    assert "MemoryError" in log_text(log) and not supervisor.oom_killed(proc)


# ---------------------------------------------------------------- how each limit is enforced

ALL = {"memory_max": 64 << 20, "cpu_quota": 0.5, "cpu_weight": 200, "nofile": 256, "ioclass": "best-effort"}


def test_with_every_controller_limits_go_to_the_cgroup():
    plan = limits.plan(ALL, frozenset({"memory", "cpu", "io", "pids"}))
    assert plan.cgroup_files == {"memory.max": str(64 << 20), "cpu.max": "50000 100000", "cpu.weight": "200"}
    assert plan.rlimits == ((resource.RLIMIT_NOFILE, 256, 256),) and plan.later == ()
    assert (plan.nice, plan.ioprio, plan.notes) == (None, 2 << 13 | 4, ())


def test_without_controllers_limits_fall_back_and_say_so():
    plan = limits.plan(ALL, None)
    assert plan.cgroup_files == {} and plan.later == ((resource.RLIMIT_DATA, 64 << 20, 64 << 20),)
    assert plan.nice == (-3 if os.geteuid() == 0 else 0)
    assert plan.notes == (
        "memory_max: a data-size limit (RLIMIT_DATA), no cgroup memory controller here: allocations beyond it "
        "fail in the job, whose end is not an `oom`",
        "cpu_quota: not enforced, no cgroup cpu controller here",
        f"cpu_weight: as nice {plan.nice}, no cgroup cpu controller here")
    assert limits.plan({"cpu_weight": 50, "nice": 2}, None).notes == (
        "cpu_weight: not enforced (nice is set), no cgroup cpu controller here",)
    assert limits.plan({"cpu_weight": 10}, None).nice == 10 and limits.plan({"cpu_weight": 1}, None).nice == 19
    assert not limits.plan(None, None).in_child and limits.plan({"nofile": 64}, None).in_child


def test_limit_notes_follow_the_containment_in_use():
    assert supervisor.limit_notes({"nofile": 64}) == []
    if supervisor.cgroup.TREE is None:
        assert supervisor.limit_notes({"cpu_quota": 1.0}) == ["cpu_quota: not enforced, no cgroup cpu controller here"]


def test_oom_kills_are_read_from_memory_events():
    events = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n"
    assert limits.oom_kills(events) == 2 and limits.oom_kills("") == 0


OOM_DRIVER = r"""
import json, os, time
from aios import supervisor
supervisor.setup_containment(f"aios-test-oom-{os.getpid()}")
tree = supervisor.cgroup.TREE
if tree is None or "memory" not in tree.controllers:
    if tree is not None:
        os.rmdir(tree.scope)
    print(json.dumps(None)); raise SystemExit
log = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
proc = supervisor.spawn(["python3", "-c", "x = bytearray(300 << 20)"], dict(os.environ), "/", log,
                        limits={"memory_max": 64 << 20})
while (status := supervisor.reap(proc)) is None:
    time.sleep(0.01)
supervisor.cgroup.sweep()
os.rmdir(tree.scope)
print(json.dumps([status, supervisor.oom_killed(proc)]))
"""


def test_a_job_killed_for_its_memory_max_is_recognised_as_oom():
    require_root()
    out = run_driver(OOM_DRIVER)
    if out is None:
        pytest.skip("no cgroup v2 memory controller we may use on this machine")
    assert out == [[None, 9], True]


# A daemon that raised its own soft open-file limit starts jobs with the usual one.
JOBS_NOFILE_DRIVER = r"""
import json, os, resource
from aios import supervisor
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
supervisor.set_jobs_nofile(256)
log = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
ids = {"uid": os.getuid(), "gid": os.getgid(), "groups": tuple(os.getgroups())}
out = []
for options in ({}, ids, {"limits": {"nofile": 512}}):
    proc = supervisor.spawn(["sleep", "1000"], dict(os.environ), "/", log, **options)
    with open(f"/proc/{proc.pid}/limits") as f:
        row = next(line for line in f if line.startswith("Max open files"))
    out.append(row.split()[3:5])
    supervisor.signal_group(proc, 9)
out.append(list(resource.getrlimit(resource.RLIMIT_NOFILE)) == [hard, hard])
print(json.dumps([out, hard]))
"""


def test_jobs_start_with_the_usual_open_file_limit_whatever_the_daemons():
    require_root()              # the fork path (setgroups) is one of the three
    (plain, switched, own, restored), hard = run_driver(JOBS_NOFILE_DRIVER)
    assert plain == switched == ["256", str(hard)]
    assert own == ["512", "512"] and restored
