"""python3 -m bench.spawn_cost [-n 200] [--baseline REV] [--ballast MB]

What one supervisor.spawn of /bin/true costs, from the call until it returns (the child
has exec'd and is watched), for each way of starting, against the supervisor of git
revision REV (default: main) loaded from `git show` in the same process. Variants
alternate spawn by spawn; the median and min-max of n spawns each are printed in
microseconds, with the ratio to the baseline. --ballast grows this
process (touched memory) to look like a daemon that has been up a while: a fork copies
page tables, posix_spawn does not. The fork variant runs as our own ids (root needed:
setgroups). With a cgroup v2 we may manage, a variant puts each run in a cgroup of its
own (the daemon moves in for the spawn and back).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import types

from aios import supervisor

from . import ROOT


def baseline(rev: str):
    """The supervisor module of `rev` (one file that imported nothing from aios), or None."""
    try:
        source = subprocess.run(["git", "show", f"{rev}:aios/supervisor.py"], cwd=ROOT, check=True,
                                capture_output=True, text=True).stdout
    except subprocess.CalledProcessError:
        return None
    module = types.ModuleType("baseline_supervisor")
    exec(compile(source, f"{rev}:aios/supervisor.py", "exec"), module.__dict__)
    return module


def variants(old, own_ids: dict) -> dict:
    env, log = dict(os.environ), os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)

    def new(tree=None, **options):
        supervisor.cgroup.TREE = tree           # cgroups for this variant only
        return supervisor, supervisor.spawn(["/bin/true"], env, "/", log, **options)

    found = {"posix_spawn": new}
    if old is not None:
        found = {"baseline": lambda: (old, old.spawn(["/bin/true"], env, "/", log)), **found}
    if os.geteuid() == 0:
        found["fork (user switch)"] = lambda: new(**own_ids)
    tree = supervisor.cgroup.setup(f"aios-bench-{os.getpid()}")
    if tree is not None:
        found["posix_spawn, cgroup"] = lambda: new(tree)
    return found


def measure(found: dict, n: int) -> dict[str, list[float]]:
    """n spawns of each variant, variants alternating spawn by spawn (A B C A B C ...),
    so that the load of a shared machine weighs on each alike."""
    times: dict[str, list[float]] = {name: [] for name in found}
    for _ in range(n):
        for name, start in found.items():
            began = time.perf_counter()
            module, proc = start()
            times[name].append(time.perf_counter() - began)
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
            module.reap(proc)
    return times


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m bench.spawn_cost")
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--baseline", default="main")
    parser.add_argument("--ballast", type=int, default=0, metavar="MB")
    args = parser.parse_args(argv)
    ballast = bytearray(args.ballast << 20)
    for offset in range(0, len(ballast), 4096):
        ballast[offset] = 1
    own = {"uid": os.getuid(), "gid": os.getgid(), "groups": tuple(os.getgroups())}
    times = measure(variants(baseline(args.baseline), own), args.n)
    if supervisor.cgroup.TREE is not None:
        supervisor.cgroup.sweep()
        os.rmdir(supervisor.cgroup.TREE.scope)
    base = statistics.median(times["baseline"]) if "baseline" in times else None
    rss = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmRSS"))
    print(f"{args.n} spawns of /bin/true per variant, RSS {int(rss) // 1024} MB, "
          f"Python {sys.version.split()[0]}")
    for name, values in times.items():
        median = statistics.median(values)
        ratio = f"  x{median / base:.2f}" if base else ""
        print(f"  {name:20s} median {median * 1e6:7.0f} us  (min {min(values) * 1e6:.0f}, "
              f"max {max(values) * 1e6:.0f}){ratio}")


if __name__ == "__main__":
    main(sys.argv[1:])
