"""Program jobs (`program = "file.py:func"`) started through the zygote against the same
jobs started with `start = "spawn"` (a fresh interpreter per run, as before the zygote),
in one daemon or in daemons launched alternately, in the same round:

    python_launch   a run starts -> the program's own code runs (a tiny program): kill -9
                    of a running always job (min_uptime 0) until its replacement's code
                    runs; and a trigger sent until the triggered run's code runs
    python_heavy    the same for a program importing a heavy module: numpy when installed
                    (preloaded by the zygote's job), else json + decimal + email
    python_many     daemon launch -> N always program jobs all running their own code,
                    beside the bare-Popen floor: N interpreters started by this process
    python_pss      total PSS (/proc/PID/smaps_rollup) of N running program jobs, the
                    zygote itself counted with its children

A program stamps time.perf_counter() (CLOCK_MONOTONIC, the same clock in every process)
on its first line into a file, compared with the moment the kill or the trigger was
sent. Ratios are taken pair by pair within a round.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from . import measure
from .scenarios import Samples, Settings, _require_running
from .systems.aios import Aios

STAMP = """
import os, sys, time
{imports}

def stamp(path):
    with open(path, "w") as f:
        f.write(repr(time.perf_counter()))

def restarted(path):
    with open(path, "a") as f:
        f.write(repr(time.perf_counter()) + "\\n")
    time.sleep(100000)

def serve(folder):
    open(os.path.join(folder, str(os.getpid())), "w").close()
    time.sleep(100000)
"""
FLOOR = "import os, sys, time; open(sys.argv[1], 'w').close(); time.sleep(100000)"


def heavy_module() -> tuple[str, list[str]]:
    """What the heavy row imports: numpy if this interpreter has it, else three stdlib
    packages of some weight. (title, module names)."""
    try:
        import numpy
    except ImportError:
        return "json + decimal + email", ["json", "decimal", "email.parser", "email.message"]
    return f"numpy {numpy.__version__}", ["numpy"]


def _toml(jobs: dict, start: str = "zygote") -> str:
    """[python] (single-threaded BLAS: numpy may be preloaded), then one table per job:
    name -> (type, function, argument, job preload, job start)."""
    lines = ["[python]", 'env = { OPENBLAS_NUM_THREADS = "1", OMP_NUM_THREADS = "1" }', f'start = "{start}"', ""]
    for name, (kind, function, argument, job_preload, job_start) in jobs.items():
        lines += [f"[jobs.{name}]", f'type = "{kind}"', f'program = "stamp.py:{function}"']
        if argument:
            lines.append(f'args = ["{argument}"]')
        if job_preload:
            lines.append(f"preload = {list(job_preload)!r}".replace("'", '"'))
        if job_start:
            lines.append(f'start = "{job_start}"')
        if kind == "always":
            lines.append('min_uptime = "0s"')        # a kill is answered by a restart at once
        lines.append("")
    return "\n".join(lines)


@contextmanager
def daemon(system: Aios, toml: str, imports: list[str], conditions, timeout: float):
    """The AIOS daemon launched on a home with `toml` and Programs/stamp.py; yields the ms
    from the launch until each of `conditions(folder)` held (and `ready`), where folder
    is what `{folder}` in `toml` names."""
    try:
        system.prepare(None)
        folder = system.workdir / "up"
        folder.mkdir()
        (system.home / "Programs").mkdir(parents=True)
        (system.home / "Programs" / "stamp.py").write_text(
            STAMP.format(imports="\n".join(f"import {name}" for name in imports)))
        (system.home / "aios.toml").write_text(toml.replace("{folder}", str(folder)))
        system.before_launch()
        t0 = measure.now()
        system.launch()
        yield measure.watch({"ready": system.is_ready, **conditions(folder)}, t0, timeout, system.died)
    finally:
        system.cleanup()


# ---------------------------------------------------------------- one run

def _launches(system: Aios, s: Settings, imports: list[str], preload: list[str]) -> Samples:
    """In one daemon: an always and a trigger job through the zygote (preloading
    `preload`), and the same two spawned; each run timed until its stamp, from the kill
    of the always job's process (its restart) or from the trigger, the two alternating."""
    jobs = {"az": ("always", "restarted", "{folder}/az", preload, None),
            "as": ("always", "restarted", "{folder}/as", (), "spawn"),
            "tz": ("trigger", "stamp", "", preload, None), "ts": ("trigger", "stamp", "", (), "spawn")}
    samples: Samples = {key: [] for key in ("zygote_ms", "spawn_ms", "ratio", "zygote_trigger_ms",
                                            "spawn_trigger_ms")}
    started = lambda folder: {"up": lambda: all(_stamps(folder / job) for job in ("az", "as"))}
    with daemon(system, _toml(jobs), imports, started, s.timeout):
        from aios.control import Client

        folder = system.workdir / "up"
        with Client(system.home, timeout=s.timeout) as client:
            for job in ("tz", "ts"):            # untimed: caches fill
                _triggered(client, system, job)
            for _ in range(s.launches):
                for how, job in (("zygote", "z"), ("spawn", "s")):
                    samples[f"{how}_ms"].append(_restart(client, folder / f"a{job}", f"a{job}", s.timeout))
                    samples[f"{how}_trigger_ms"].append(_triggered(client, system, f"t{job}"))
                samples["ratio"].append(samples["zygote_ms"][-1] / samples["spawn_ms"][-1])
            shown = {job["name"]: job["started"] for job in client.call("status")}
    if shown != {"az": "zygote", "as": "spawn", "tz": "zygote", "ts": "spawn"}:
        raise measure.MeasureError(f"the runs did not start as configured: {shown}")
    return samples


def _stamps(path: Path) -> list[float]:
    try:
        return [float(line) for line in path.read_text().split()]
    except (OSError, ValueError):
        return []


def _restart(client, path: Path, job: str, timeout: float) -> float:
    """kill -9 the always job's process; ms until its replacement's own code ran."""
    before, pid = len(_stamps(path)), client.call("status", job=job)[0]["pid"]
    t0 = measure.now()
    os.kill(pid, signal.SIGKILL)
    measure.wait_for(lambda: len(_stamps(path)) > before, t0, timeout, f"{job} restarted")
    return (_stamps(path)[-1] - t0) * 1000.0


def _triggered(client, system: Aios, job: str) -> float:
    """One run of the trigger job `job`: ms from the trigger sent until its code ran."""
    path = system.workdir / f"stamp-{job}"
    path.unlink(missing_ok=True)
    t0 = measure.now()
    result = client.call("wait", trigger=client.call("trigger", job=job, args=[str(path)]))
    if result["outcome"] != "ok":
        raise measure.MeasureError(f"run of {job}: {result}")
    return (float(path.read_text()) - t0) * 1000.0


def python_launch(system: Aios, s: Settings) -> Samples:
    return _launches(system, s, [], [])


def python_heavy(system: Aios, s: Settings) -> Samples:
    modules = heavy_module()[1]
    return _launches(system, s, modules, modules)


# ---------------------------------------------------------------- many jobs at once

def _serving(n: int):
    return lambda folder: {"all": lambda: len(os.listdir(folder)) >= n}


def _many_jobs(n: int) -> dict:
    return {f"py{i:03d}": ("always", "serve", "{folder}", (), None) for i in range(n)}


def python_many(system: Aios, s: Settings) -> Samples:
    """Launch -> all N program jobs running their own code: through the zygote, spawned,
    and the floor of N bare interpreters Popen'd by this process."""
    n, samples = s.python_jobs, {}
    for start in ("zygote", "spawn"):       # untimed: the zygote's and the program's bytecode is cached
        with daemon(system, _toml(_many_jobs(2), start), [], _serving(2), s.timeout):
            pass
    for start in ("zygote", "spawn"):
        with daemon(system, _toml(_many_jobs(n), start), [], _serving(n), s.scale_timeout) as marks:
            samples[f"{start}_ms"] = [marks["all"]]
    samples["floor_ms"] = [_popen_floor(n, system.scratch, s.scale_timeout, system.env)]
    samples["ratio"] = [samples["zygote_ms"][0] / samples["floor_ms"][0]]
    return samples


def _popen_floor(n: int, scratch: Path, timeout: float, env: dict) -> float:
    folder = Path(scratch) / f"floor-{os.getpid()}-{time.monotonic_ns()}"
    folder.mkdir()
    procs = []
    try:
        t0 = measure.now()
        procs = [subprocess.Popen([sys.executable, "-c", FLOOR, str(folder / str(i))], env=env,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for i in range(n)]
        return measure.wait_for(lambda: len(os.listdir(folder)) >= n, t0, timeout, f"{n} interpreters running")
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        shutil.rmtree(folder, ignore_errors=True)


def python_pss(system: Aios, s: Settings) -> Samples:
    """Total PSS of N running program jobs (the zygote included), zygote vs spawned."""
    n, samples = s.python_pss, {}
    for start in ("zygote", "spawn"):
        with daemon(system, _toml(_many_jobs(n), start), [], _serving(n), s.scale_timeout):
            time.sleep(s.settle)
            _require_running(system)
            pids = system.managed_pids()     # the jobs, and the zygote: every child of the daemon
            if len(pids) < n:
                raise measure.MeasureError(f"{len(pids)} of {n} program jobs running")
            samples[f"{start}_mib"] = [sum(pss_kib(pid) for pid in pids) / 1024.0]
    samples["ratio"] = [samples["zygote_mib"][0] / samples["spawn_mib"][0]]
    return samples


def pss_kib(pid: int) -> int:
    """Pss of /proc/PID/smaps_rollup, in KiB (0 if the process is gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
