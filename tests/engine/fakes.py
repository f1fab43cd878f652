"""Fakes for the engine's rules: a clock the test moves, a process layer whose processes
exit when the test says (or when signalled), and a harness that builds an Engine on them
with the in-memory store and turns its loop through fake time, so rules that take minutes
or days are tested in milliseconds. No real process, no sleep."""
from __future__ import annotations

import signal
import textwrap

from aios.engine.core import Engine
from aios.jobset import expand
from aios.engine.loop import Loop
from aios.jobtable import parse_job
from aios.spec import Settings
from aios.store.memory import MemoryStore

T0_WALL = 1_767_000_000.0      # 2025-12-29 UTC: a fixed wall clock
T0_BOOT = 5_000.0


class FakeClock:
    def __init__(self, wall: float = T0_WALL, boot: float = T0_BOOT, boot_id: str = "boot-1"):
        self._wall, self._boot, self.boot_id = wall, boot, boot_id

    def boot(self) -> float:
        return self._boot

    def wall(self) -> float:
        return self._wall

    def advance(self, seconds: float) -> None:
        """Time passes: both clocks move."""
        self._boot += seconds
        self._wall += seconds

    def step_wall(self, seconds: float) -> None:
        """Someone sets the wall clock (NTP, a user): only it moves."""
        self._wall += seconds


class FakeProc:
    __slots__ = ("pid", "pidfd", "start_ticks", "child")

    def __init__(self, pid: int):
        self.pid, self.pidfd, self.start_ticks, self.child = pid, None, pid * 10, True


class FakeProcesses:
    """Processes that run until the test ends them. `fail[program] = OSError(...)` makes a
    spawn of that program fail; a stop signal ends a process at once unless `stubborn`."""

    def __init__(self):
        self.loop = None
        self.next_pid = 100
        self.alive: dict[int, dict] = {}          # pid -> {"argv", "env", "cwd"}
        self.spawned: list[dict] = []
        self.fail: dict[str, OSError] = {}
        self.stubborn: set[int] = set()
        self.signals: list[tuple[int, int]] = []
        self._exits: dict[int, tuple] = {}        # pid -> (code, signal)
        self._watchers: dict[int, tuple] = {}
        self.prepared: list[list] = []            # argv of runs it was told to get ready for
        self.warm_until: float | None = None      # boot time until which warming() says yes

    def spawn(self, argv, env, cwd, log_path, **options):
        if argv[0] in self.fail:
            raise self.fail[argv[0]]
        self.next_pid += 1
        self.alive[self.next_pid] = {"argv": list(argv), "env": dict(env), "cwd": cwd}
        self.spawned.append(self.alive[self.next_pid])
        return FakeProc(self.next_pid)

    def prepare(self, argv, env, **options) -> None:
        self.prepared.append(list(argv))

    def warming(self) -> bool:
        return self.warm_until is not None and self.loop.boot < self.warm_until

    def watch(self, proc, callback, *args) -> None:
        self._watchers[proc.pid] = (callback, args, proc)

    def reap(self, proc):
        return self._exits.pop(proc.pid, None)

    def signal(self, proc, sig: int) -> bool:
        if proc.pid not in self.alive:
            return False
        self.signals.append((proc.pid, sig))
        if sig == signal.SIGKILL or proc.pid not in self.stubborn:
            self.loop.call_soon(self.exit, proc.pid, None, sig)
        return True

    def exit(self, pid: int, code: int | None = 0, sig: int | None = None) -> None:
        """The process ends; the engine hears it in its next turn."""
        if self.alive.pop(pid, None) is None:
            return
        self._exits[pid] = (code, sig)
        callback, args, _ = self._watchers.pop(pid)
        self.loop.call_soon(callback, *args)

    def started(self, proc):
        return None

    def adopt(self, pid, ticks, uids, mark):
        return None

    def leaders(self, marks, keys, uids):
        return []

    def environ(self, pid, key):
        return None

    def oom_killed(self, proc) -> bool:
        return False

    def reap_orphans(self, tracked) -> list:
        return []

    def close(self, proc) -> None:
        pass


class Harness:
    """An Engine on fake clocks, fake processes and an in-memory store."""

    def __init__(self, toml_jobs: dict, tags=(), clock: FakeClock | None = None, zone=None, states=(),
                 start: bool = True):
        self.clock = clock or FakeClock()
        self.processes = FakeProcesses()
        self.loop = Loop(self.clock)
        self.processes.loop = self.loop
        self.store = MemoryStore("dev")
        settings = Settings(device_id="dev", tags=frozenset(tags))
        self.logged: list[str] = []
        self.engine = Engine(home="/nonexistent/aios-home", settings=settings, store=self.store,
                             processes=self.processes, loop=self.loop, log=self.logged.append)
        if zone is not None:
            self.engine.planner._zone = zone
        stored = {state.job: state for state in states}
        specs, tables = expand({name: parse_job(name, table) for name, table in toml_jobs.items()},
                               dict(toml_jobs), [], {})
        for name, spec in specs.items():
            self.engine.add_job(spec, stored.get(name))
        self.engine.tables = tables
        if start:       # else the test starts them, as the daemon does (engine/daemon.py)
            self.engine.consider_all()
            self.settle()

    def settle(self) -> None:
        """Turn the loop until nothing is left to do at this moment."""
        for _ in range(10_000):
            self.loop.turn(0)
            if self.loop.idle:
                return
        raise AssertionError("the engine keeps working at one moment: a tight loop")

    def advance(self, seconds: float) -> None:
        """Let `seconds` pass, running every timer at its moment."""
        end = self.clock.boot() + seconds
        while True:
            self.settle()
            due = self.loop.next_timer()
            if due is None or due > end:
                break
            self.clock.advance(max(0.0, due - self.clock.boot()))
        self.clock.advance(end - self.clock.boot())
        self.settle()

    def job(self, name: str):
        return self.engine.jobs[name]

    def status(self, name: str) -> str:
        return self.engine.jobs[name].state.status.value

    def pids(self, name: str) -> list[int]:
        return sorted(self.engine.jobs[name].runs)

    def exit(self, name: str, code: int = 0) -> None:
        for pid in self.pids(name):
            self.processes.exit(pid, code)
        self.settle()

    def events(self, name: str | None = None) -> list:
        return [e for e in reversed(self.store.recent_events(10_000)) if name is None or e.name == name]

    def runs(self, job: str) -> list:
        return list(reversed(self.store.recent_runs(job, 10_000)))


def jobs(text: str) -> dict:
    """[jobs.NAME] tables from TOML text."""
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib

    return tomllib.loads(textwrap.dedent(text))["jobs"]


__all__ = ["FakeClock", "FakeProcesses", "Harness", "jobs"]
