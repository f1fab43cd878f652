"""The fleet rows: several AIOS daemons on this machine, each a device of one fleet on
one PostgreSQL (bench.pg: a schema of its own per fleet), measured from outside:

- triggers acknowledged fleet-wide: three devices, `fleet_clients` client processes on
  each, each sending `triggers` trigger ops back to back on its own connection;
- a trigger on device A for device B (the op `aios trigger JOB --device B` sends to A's
  socket) until B announces the run started (its job_started event, on a `watch`);
- failover: kill -9 of the daemon whose device holds a fleet job's lease (lease_ttl
  FAILOVER_TTL) until the copy runs on another device, and until the old copy is killed
  by its fence; a new copy seen while the old one still ran fails the row;
- idle: `idle_devices` daemons (default lease ttl, IDLE_TTL), each with one job of its
  own and one fleet job between them: the CPU of each daemon and of PostgreSQL over a
  window, and the connections they hold.

Every daemon is `python3 simple_orchestrator.py` with its own AIOS_HOME, DEVICE_ID and
AIOS_DB; cleanup stops them (SIGTERM, then SIGKILL) and kills whatever of theirs is left
(fences, copies). The scenarios run on the `aios-pg` system (its server and settings).
"""
from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import ROOT, measure
from .scenarios import Samples, Settings
from .systems import SLEEP, STOP_GRACE, TRUE
from .systems.aios import ENTRY, ping

FAILOVER_TTL = 2.0         # seconds: the shortest lease a fleet may use
IDLE_TTL = 10.0            # the default lease ttl: a heartbeat turn every IDLE_TTL / 3
SOLO = (SLEEP[0], "100007")   # the fleet job's copy, told apart from any other sleep by its argument

# A client process: one connection to one device, `n` triggers back to back, each awaited;
# a refused one (the store failing a moment) is sent again, as a client should.
CLIENT = """
import json, sys, time
from aios.control import Client, DaemonNotRunning
from aios.errors import AiosError
home, n = sys.argv[1], int(sys.argv[2])
refused = 0
with Client(home, timeout=300) as client:
    print("ready", flush=True)
    sys.stdin.readline()
    t0 = time.perf_counter()
    while n:
        try:
            client.call("trigger", job="work")
            n -= 1
        except DaemonNotRunning:
            raise
        except AiosError:
            refused += 1
            time.sleep(0.01)
    t1 = time.perf_counter()
print(json.dumps({"t0": t0, "t1": t1, "refused": refused}))
"""


class Fleet:
    """Daemons of one fleet: one home per device under a work folder, one schema."""

    def __init__(self, system, jobs: dict[str, dict], ttl: float | None = None):
        from aios.store import open_store

        self.system, self.ttl = system, ttl
        self.root = Path(tempfile.mkdtemp(prefix="fleet-", dir=system.scratch))
        self.url = system.postgres.fresh()
        self.procs: dict[str, subprocess.Popen] = {}
        store = open_store(self.url, "bench")
        try:
            store.publish_jobs(jobs, "bench")
        finally:
            store.close()

    def home(self, name: str) -> Path:
        return self.root / name

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def start(self, names: list[str], timeout: float) -> None:
        """Launch the devices one after the other, each once the last answers ping (daemons
        starting at the same moment on a new schema race to save their jobs: see the report)."""
        for name in names:
            self._launch(name)
            socket_path = str(self.home(name) / "aios.sock")
            measure.wait_for(lambda: ping(socket_path) is not None, measure.now(), timeout,
                             f"device {name} to answer ping", lambda: self.died(name))

    def _launch(self, name: str) -> None:
        home = self.home(name)
        home.mkdir()
        (home / "aios.toml").write_text(f'[store]\nlease_ttl = "{self.ttl:g}s"\n' if self.ttl else "")
        env = {**self.system.env, "AIOS_HOME": str(home), "AIOS_DB": self.url, "DEVICE_ID": name, "DEVICE_TAGS": ""}
        with open(home / "daemon.out", "wb") as out:
            self.procs[name] = subprocess.Popen([sys.executable, str(ENTRY)], env=env, cwd=str(home),
                                                stdin=subprocess.DEVNULL, stdout=out, stderr=out)

    def died(self, name: str) -> str | None:
        proc = self.procs[name]
        if proc.poll() is None:
            return None
        tail = (self.home(name) / "daemon.out").read_text(errors="replace").strip().splitlines()[-3:]
        return f"device {name}'s daemon exited with status {proc.returncode}: {' | '.join(tail)}"

    def kill(self, name: str) -> None:
        self.procs[name].kill()
        self.procs[name].wait()

    def close(self) -> None:
        """Stop every daemon as a user would, then kill what they left (fences, copies)."""
        running = [proc for proc in self.procs.values() if proc.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        for proc in running:
            try:
                proc.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid in _processes_of(self.root):
            for kill, target in ((os.killpg, pid), (os.kill, pid)):
                try:
                    kill(target, signal.SIGKILL)
                except OSError:
                    pass
        shutil.rmtree(self.root, ignore_errors=True)


def _processes_of(root: Path) -> list[int]:
    """Processes whose home is under `root` (job copies) or that name it (fences)."""
    marker = str(root).encode()
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        env, cmdline = measure.environ(int(entry)), measure.cmdline(int(entry))
        if (env and b"AIOS_HOME=" + marker in env) or (cmdline and marker in cmdline):
            found.append(int(entry))
    return found


def _trigger_job(argv) -> dict[str, dict]:
    return {"work": {"type": "trigger", "command": list(argv)}}


# ---------------------------------------------------------------- the rows

def fleet_triggers(system, s: Settings) -> Samples:
    """Three devices, `triggers` triggers for each, sent by `fleet_clients` processes per
    device, each on one connection, awaiting every reply (the job runs `sleep`,
    max_parallel 1: the rest stay queued). Triggers acknowledged per second, from the
    first client's first call to the last client's last reply."""
    fleet = Fleet(system, _trigger_job(SLEEP))
    try:
        names, each = ["a", "b", "c"], max(1, s.triggers // s.fleet_clients)
        fleet.start(names, s.timeout)
        argvs = [[sys.executable, "-c", CLIENT, str(fleet.home(name)), str(each)]
                 for name in names for _ in range(s.fleet_clients)]
        daemons, server = [fleet.pid(name) for name in names], system.postgres.server_pids()
        before = {pid: _cpu(pid) for pid in daemons + server}
        results = measure.together(argvs, {**system.env, "PYTHONPATH": str(ROOT)}, str(ROOT), s.timeout * 5)
        used = _cpu_ms(before, {pid: _cpu(pid) for pid in daemons + server})
        elapsed, total = max(r["t1"] for r in results) - min(r["t0"] for r in results), len(argvs) * each
        samples = {"per_s": [total / elapsed], "refused": [float(sum(r["refused"] for r in results))],
                   "daemon_cpu_ms": [sum(used[pid] for pid in daemons) / total]}
        if server:
            samples["pg_cpu_ms"] = [sum(used[pid] for pid in server) / total]
        return samples
    finally:
        fleet.close()


def remote_trigger(system, s: Settings) -> Samples:
    """Two devices; `remote` times, one after the other: a trigger op on A's socket for
    device B, until B's watch announces job_started of that trigger (and then its end)."""
    from aios.control import Client

    fleet = Fleet(system, _trigger_job(TRUE))
    try:
        fleet.start(["a", "b"], s.timeout)
        acked, started = [], []
        with Client(fleet.home("b"), timeout=s.timeout) as watch, Client(fleet.home("a"), timeout=s.timeout) as a:
            watch.call("watch")
            for _ in range(s.remote):
                t0 = measure.now()
                trigger = a.call("trigger", job="work", device="b")
                acked.append(measure.ms_since(t0))
                _await(watch, "job_started", f"trigger {trigger}", fleet)
                started.append(measure.ms_since(t0))
                _await(watch, "trigger_done", f"trigger {trigger}:", fleet)
        return {"p50_ms": [measure.percentile(started, 50)], "p99_ms": [measure.percentile(started, 99)],
                "ack_p50_ms": [measure.percentile(acked, 50)], "all_ms": started}
    finally:
        fleet.close()


def _await(watch, name: str, mention: str, fleet: Fleet) -> None:
    """Read B's events until `name` whose message mentions `mention` (the socket's timeout
    bounds the wait)."""
    while True:
        try:
            event = watch.receive().get("event") or {}
        except OSError as exc:
            raise measure.MeasureError(f"no {name} event ({exc}); {fleet.died('b') or 'b runs'}") from None
        if event.get("name") == name and mention in (event.get("message") or ""):
            return


def failover(system, s: Settings) -> Samples:
    """`kills` + 1 devices, one fleet job (`sleep`, stop_timeout 300 ms) with a FAILOVER_TTL
    lease. `kills` times: once the copy has run `settle` s, kill -9 the daemon of its
    device; ms until a copy runs under another device's daemon, and until the old copy is
    gone (its fence kills it at the lease's deadline)."""
    job = {"solo": {"type": "always", "command": list(SOLO), "scope": "fleet", "stop_timeout": "300ms"}}
    fleet = Fleet(system, job, FAILOVER_TTL)
    try:
        names = [f"f{n}" for n in range(s.kills + 1)]
        fleet.start(names, s.timeout)
        children = measure.Children()

        def copies(among: list[str]) -> list[tuple[str, int]]:
            return _copies(fleet, among, children)
        measure.wait_for(lambda: len(copies(names)) == 1, measure.now(), s.timeout, "one copy of the fleet job")
        holder, pid = copies(names)[0]
        moved, fenced = [], []
        for _ in range(s.kills):
            time.sleep(s.settle)   # a crash while the copy runs (see the report: not in its first ms)
            old, others = measure.identity(pid), [n for n in names if n != holder and fleet.procs[n].poll() is None]
            fleet.kill(holder)
            t0 = measure.now()
            marks = measure.watch({"fenced": lambda: not measure.alive(old), "moved": lambda: bool(copies(others))},
                                  t0, s.timeout)
            if marks["moved"] < marks["fenced"]:
                raise measure.MeasureError(f"two copies at once: a new one after {marks['moved']:.0f} ms, the old "
                                           f"one gone after {marks['fenced']:.0f} ms")
            moved.append(marks["moved"])
            fenced.append(marks["fenced"])
            holder, pid = copies(others)[0]
        return {"moved_ms": moved, "fenced_ms": fenced}
    finally:
        fleet.close()


def _copies(fleet: Fleet, names: list[str], children: measure.Children) -> list[tuple[str, int]]:
    """(device, pid) of every copy of the fleet job running under these devices' daemons."""
    wanted = b"\0".join(part.encode() for part in SOLO) + b"\0"
    return [(name, pid) for name in names for pid in children.of(fleet.pid(name)) if measure.cmdline(pid) == wanted]


def idle(system, s: Settings) -> Samples:
    """`idle_devices` daemons, each running one job of its own (`sleep`) and standing by
    for (or running) one fleet job; after a settle, utime+stime of every daemon and of
    every PostgreSQL server process over `cpu_window` seconds."""
    n = s.idle_devices
    system.postgres.allow_connections(2 * n + 20)
    jobs = {"svc": {"type": "always", "command": list(SLEEP)},
            "solo": {"type": "always", "command": list(SOLO), "scope": "fleet"}}
    fleet = Fleet(system, jobs)
    try:
        names = [f"idle{k:03d}" for k in range(n)]
        fleet.start(names, s.timeout * 3)
        time.sleep(s.settle + 1.0)
        daemons, server = [fleet.pid(name) for name in names], system.postgres.server_pids()
        before, t0 = {pid: _cpu(pid) for pid in daemons + server}, measure.now()
        time.sleep(s.cpu_window)
        after, window = {pid: _cpu(pid) for pid in daemons + server}, measure.now() - t0
        for name in names:
            if fleet.died(name):
                raise measure.MeasureError(fleet.died(name))
        cpu = _cpu_ms(before, after)
        used = [cpu[pid] for pid in daemons]
        turns = window / (IDLE_TTL / 3)
        samples = {"daemon_ms": [statistics.median(used)], "daemon_max_ms": [max(used)],
                   "turn_ms": [statistics.fmean(used) / turns],
                   "connections": [float(system.postgres.connections("aios idle"))], "window_s": [window]}
        if server:   # a server elsewhere has no /proc here
            samples["pg_ms"] = [sum(cpu[pid] for pid in server)]
        return samples
    finally:
        fleet.close()


def _cpu(pid: int) -> float | None:
    st = measure.stat(pid)
    return None if st is None else (st.utime + st.stime) / measure.CLK_TCK


def _cpu_ms(before: dict, after: dict) -> dict[int, float]:
    """CPU ms each process used between the two readings (0 for one that came or went:
    a server's short-lived workers are not counted)."""
    return {pid: (after[pid] - before[pid]) * 1000.0 if before[pid] is not None and after.get(pid) is not None
            else 0.0 for pid in before}
