"""The zygote (aios/zygote.py, aios/zygote_server.py) with real processes: a run forked
from it sees what a spawned run sees (environment, /proc, cwd, arguments, signals,
descriptors, limits, sys.path), ends as the runner ends it, is this process's own child,
picks up edits to Programs/; a zygote whose preloaded files change is replaced, one that
dies is started again after its backoff, one that is unsafe (a thread, a socket, a
failed import) is refused with its reason; a request the daemon gives up on runs
nothing. This process plays the daemon (a child subreaper while a zygote runs)."""
from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time

import pytest

from aios import launch, supervisor
from aios.engine.loop import Loop
from aios.supervisor import SpawnError
from aios.zygote import Unavailable, Zygotes
from tests.engine.fakes import FakeClock
from tests.processes import LIVENESS, REPO, require_root, run_driver, wait_exit, wait_until

PROBE = '''
import json, os, random, resource, signal, sys

def probe(out, *args, **kwargs):
    with open("/proc/self/status") as f:
        status = dict(line.rstrip("\\n").split(":\\t", 1) for line in f if ":\\t" in line)
    with open("/proc/self/environ", "rb") as f:
        environ = sorted(e.decode() for e in f.read().split(b"\\0") if e)
    with open("/proc/self/cmdline", "rb") as f:
        cmdline = [a.decode() for a in f.read().split(b"\\0") if a]
    umask = os.umask(0)
    os.umask(umask)
    report = {
        "env": dict(os.environ), "proc_environ": environ, "cmdline": cmdline, "cwd": os.getcwd(),
        "argv": sys.argv, "args": list(args), "kwargs": kwargs, "path": sys.path, "name": __name__,
        "leader": os.getpgid(0) == os.getpid(), "ppid": os.getppid(), "umask": umask,
        "signals": {s.name: str(signal.getsignal(s)) for s in signal.Signals
                    if s not in (signal.SIGKILL, signal.SIGSTOP)},
        "masks": [status["SigBlk"], status["SigIgn"], status["SigCgt"]],
        "fds": {fd: os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd") if int(fd) < 3},
        "nfds": len(os.listdir("/proc/self/fd")), "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
        "aios": [m for m in sys.modules if m == "aios" or m.startswith("aios.")],
        "random": random.random(), "stdout_buffering": sys.stdout.line_buffering,
    }
    with open(out, "w") as f:
        json.dump(report, f)

def code(n):
    return n

def leave(how):
    sys.exit(how)

def boom():
    raise ValueError("kaboom")

def interrupted():
    raise KeyboardInterrupt

def wait(marker):
    open(marker, "w").close()
    import time
    time.sleep(1000)

def at_exit(marker):
    import atexit
    atexit.register(lambda: open(marker, "w").close())
    print("registered")
'''


@pytest.fixture
def home(tmp_path):
    (tmp_path / "Programs").mkdir()
    (tmp_path / "Programs" / "probe.py").write_text(PROBE)
    (tmp_path / "logs").mkdir()
    return tmp_path


class Daemon:
    """This process as the daemon: a loop on a clock the test moves, the zygotes, and
    what they reported."""

    def __init__(self, home):
        supervisor.close_on_exec_all()      # as the daemon does: nothing of ours reaches a spawned job
        self.home, self.clock = home, FakeClock()
        self.loop = Loop(self.clock)
        self.events: list = []
        self.zygotes = Zygotes(self.loop, lambda name, message: self.events.append((name, message)),
                               launch.inherited(dict(os.environ)))
        self.procs: list = []

    def env(self, **extra) -> dict:
        return {**launch.inherited(dict(os.environ)), "PYTHONUNBUFFERED": "1", "AIOS_JOB": "probe",
                "AIOS_HOME": str(self.home), "AIOS_RUN_TOKEN": "n0nce.mac", **extra}

    def start(self, how: str, target: str, *args, env=None, preload=(), cwd=None, log="job.log", **options):
        argv = [sys.executable, launch.RUNNER, str(self.home / "Programs"), target,
                json.dumps({"args": list(args), "kwargs": {}})]
        fd = os.open(self.home / "logs" / log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            if how == "spawn":
                proc = supervisor.spawn(argv, env or self.env(), cwd or str(self.home), fd, **options)
            else:
                proc = self._through_zygote(argv, env or self.env(), cwd or str(self.home), fd, preload, options)
        finally:
            os.close(fd)
        self.procs.append(proc)
        return proc

    def _through_zygote(self, argv, env, cwd, fd, preload, options):
        """As the daemon asks: a zygote still starting says so at once (the daemon would
        spawn that run); its loop turns until the zygote says it is ready, and asks again."""
        try:
            return self.zygotes.spawn(argv, env, cwd, fd, preload=preload, **options)
        except Unavailable as exc:
            if "still starting" not in str(exc):
                raise
        self.turn_until(lambda: all(z.state != "starting" for z in self.zygotes.zygotes.values()))
        return self.zygotes.spawn(argv, env, cwd, fd, preload=preload, **options)

    def run(self, how: str, target: str, *args, **kwargs) -> tuple:
        return wait_exit(self.start(how, target, *args, **kwargs))

    def turn_until(self, condition) -> None:
        deadline = time.monotonic() + LIVENESS
        while not condition():
            assert time.monotonic() < deadline, "condition not met"
            self.loop.turn(0.05)

    def next_turn(self) -> None:
        """The loop's next turn, a moment later (its clock is the test's)."""
        self.clock.advance(0.001)
        self.loop.tick()

    def names(self) -> list:
        return [name for name, _ in self.events]

    def zygote_pid(self) -> int:
        (pid,) = [z.proc.pid for z in self.zygotes.zygotes.values() if z.proc is not None]
        return pid

    def close(self) -> None:
        for proc in self.procs:
            if supervisor.signal_group(proc, signal.SIGKILL):
                wait_until(lambda p=proc: supervisor.reap(p) is not None)
        self.zygotes.close()
        supervisor.become_subreaper(False)


@pytest.fixture
def daemon(home):
    made = Daemon(home)
    yield made
    made.close()


def log_of(home, name="job.log") -> str:
    return (home / "logs" / name).read_text()


# ---------------------------------------------------------------- like a spawned run

def test_a_run_from_the_zygote_sees_what_a_spawned_one_sees(daemon, home):
    reports = {}
    for how in ("spawn", "zygote", "zygote"):
        out = home / f"{how}-{len(reports)}.json"
        assert daemon.run(how, "probe.py:probe", str(out), "a b", 3, umask=0o027) == (0, None)
        reports[f"{how}-{len(reports)}"] = json.loads(out.read_text())
    spawned, forked, again = reports["spawn-0"], reports["zygote-1"], reports["zygote-2"]
    assert spawned["name"] == "probe" and spawned["aios"] == [] and spawned["leader"]
    for key in ("env", "proc_environ", "cwd", "args", "kwargs", "path", "name", "leader", "ppid", "umask",
                "signals", "masks", "fds", "nfds", "nofile", "aios", "stdout_buffering"):
        assert forked[key] == spawned[key], key
    assert forked["argv"][0] == spawned["argv"][0] == str(home / "Programs" / "probe.py")
    assert forked["cmdline"][:4] == spawned["cmdline"][:4], "ps shows the runner's command line"
    assert len({spawned["random"], forked["random"], again["random"]}) == 3, "every run draws its own seeds"
    assert forked["ppid"] == os.getpid(), "the run's process is the daemon's child, not the zygote's"


@pytest.mark.parametrize("target, args, expected, said", [
    ("probe.py:code", [7], (7, None), ""),
    ("probe.py:leave", [5], (5, None), ""),
    ("probe.py:leave", ["bye"], (1, None), "bye"),
    ("probe.py:boom", [], (1, None), "ValueError: kaboom"),
    ("probe.py:interrupted", [], (None, signal.SIGINT), "KeyboardInterrupt"),
    ("probe.py:missing", [], (2, None), "has no function 'missing'"),
    ("nope.py:f", [], (2, None), "not found"),
])
def test_exit_codes_and_exceptions_are_the_runners(daemon, home, target, args, expected, said):
    for how in ("spawn", "zygote"):
        assert daemon.run(how, target, *args, log=f"{how}.log") == expected, how
        assert said in log_of(home, f"{how}.log"), how
    assert log_of(home, "spawn.log").splitlines()[-1:] == log_of(home, "zygote.log").splitlines()[-1:]


def test_atexit_handlers_run_and_output_reaches_the_log(daemon, home):
    assert daemon.run("zygote", "probe.py:at_exit", str(home / "exited")) == (0, None)
    assert (home / "exited").exists() and log_of(home) == "registered\n"


def test_signals_reach_the_run_as_in_a_spawned_one(daemon, home):
    for sig, expected in ((signal.SIGTERM, (None, signal.SIGTERM)), (signal.SIGINT, (None, signal.SIGINT))):
        marker = home / f"started-{sig}"
        proc = daemon.start("zygote", "probe.py:wait", str(marker))
        wait_until(marker.exists)
        assert supervisor.signal_group(proc, sig)
        assert wait_exit(proc) == expected
    assert "KeyboardInterrupt" in log_of(home), "SIGINT raises KeyboardInterrupt, as in a fresh interpreter"


def test_a_cwd_that_is_gone_is_the_same_spawn_error(daemon, home):
    messages = []
    for how in ("spawn", "zygote"):
        with pytest.raises(SpawnError) as caught:
            daemon.start(how, "probe.py:code", 0, cwd=str(home / "gone"))
        messages.append(str(caught.value))
    assert messages[0] == messages[1] and "No such file or directory" in messages[0]


def test_edits_to_programs_are_picked_up_between_two_runs(daemon, home):
    program = home / "Programs" / "edited.py"
    helper = home / "Programs" / "helper_mod.py"
    for version in ("one", "two, longer"):
        helper.write_text(f"VALUE = {version!r}\n")
        program.write_text("import helper_mod\ndef main():\n    print(helper_mod.VALUE)\n")
        assert daemon.run("zygote", "edited.py:main") == (0, None)
    assert log_of(home).splitlines() == ["one", "two, longer"]
    assert len(daemon.zygotes.pids()) == 1, "one zygote served both runs"


# ---------------------------------------------------------------- the zygote's own life

def preloadable(home, name: str, source: str) -> dict:
    """A module `name` importable by the zygote (on PYTHONPATH); the env of a run."""
    folder = home / "modules"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(source)
    return {"PYTHONPATH": str(folder)}


def test_a_change_to_a_preloaded_module_starts_a_new_zygote(daemon, home):
    env = daemon.env(**preloadable(home, "pre_mod", "WORD = 'first'\n"))
    (home / "Programs" / "uses.py").write_text("import pre_mod\ndef main():\n    print(pre_mod.WORD)\n")
    assert daemon.run("zygote", "uses.py:main", env=env, preload=("pre_mod",)) == (0, None)
    first = daemon.zygote_pid()
    (home / "modules" / "pre_mod.py").write_text("WORD = 'second one'\n")
    daemon.next_turn()
    assert daemon.run("zygote", "uses.py:main", env=env, preload=("pre_mod",)) == (0, None)
    assert daemon.zygote_pid() != first
    assert log_of(home).splitlines() == ["first", "second one"]
    assert daemon.names() == ["zygote_restart"] and "pre_mod.py changed" in daemon.events[0][1]


@pytest.mark.parametrize("source, reason", [
    ("import threading, time\nthreading.Thread(target=time.sleep, args=(1000,), daemon=True).start()\n",
     "1 other thread(s) running"),
    ("import socket\nHELD = socket.socket()\n", "left 1 descriptor(s) open (socket:["),
    ("import no_such_module_anywhere\n", "preloading 'unsafe' failed: ModuleNotFoundError"),
])
def test_an_unsafe_preload_is_refused_with_its_reason_once(daemon, home, source, reason):
    env = daemon.env(**preloadable(home, "unsafe", source))
    for _ in range(2):
        with pytest.raises(Unavailable) as caught:
            daemon.start("zygote", "probe.py:code", 0, env=env, preload=("unsafe",))
        assert reason in str(caught.value)
    assert daemon.names() == ["zygote_refused"], "said once"
    assert reason in daemon.events[0][1]
    daemon.turn_until(lambda: not daemon.zygotes.pids())    # it exited and was reaped


def test_a_job_with_its_own_preload_has_its_own_zygote_and_its_trouble_stays_there(daemon, home):
    env = daemon.env(**preloadable(home, "threaded", "import threading, time\n"
                                   "threading.Thread(target=time.sleep, args=(1000,), daemon=True).start()\n"))
    assert daemon.run("zygote", "probe.py:code", 0, env=env) == (0, None)
    shared = daemon.zygote_pid()
    with pytest.raises(Unavailable, match="thread"):
        daemon.start("zygote", "probe.py:code", 0, env=env, preload=("threaded",))
    assert daemon.run("zygote", "probe.py:code", 0, env=env) == (0, None)
    assert daemon.zygote_pid() == shared, "the shared zygote serves on, untouched"
    assert len(daemon.zygotes.zygotes) == 2 and daemon.names() == ["zygote_refused"]


def test_a_zygote_that_dies_is_started_again_after_its_backoff(daemon, home):
    assert daemon.run("zygote", "probe.py:code", 0) == (0, None)
    first = daemon.zygote_pid()
    os.kill(first, signal.SIGKILL)
    daemon.turn_until(lambda: "zygote_exited" in daemon.names())
    assert "killed by signal 9" in daemon.events[0][1]
    with pytest.raises(Unavailable, match="starts again in 0.5 s"):
        daemon.start("zygote", "probe.py:code", 0)
    daemon.clock.advance(0.5)
    daemon.loop.tick()
    assert daemon.run("zygote", "probe.py:code", 0) == (0, None)
    assert daemon.zygote_pid() != first


def test_a_run_whose_environment_does_not_fit_is_spawned_and_the_zygote_kept(daemon, home):
    assert daemon.run("zygote", "probe.py:code", 0) == (0, None)
    with pytest.raises(Unavailable, match="larger than the zygote's room"):
        daemon.start("zygote", "probe.py:code", 0, env=daemon.env(BIG="x" * 40_000))
    assert daemon.run("zygote", "probe.py:code", 0) == (0, None) and daemon.events == []


def test_a_request_the_daemon_gives_up_on_runs_nothing(daemon, home):
    """The run's process waits on the gate; closed without a word, it ends unrun."""
    marker = home / "ran"
    with pytest.raises(Unavailable, match="still starting"):
        daemon.zygotes._ready(_key(daemon))
    daemon.turn_until(lambda: daemon.zygotes.zygotes[_key(daemon)].state == "ready")
    zygote = daemon.zygotes._ready(_key(daemon))
    gate, opener = os.pipe2(os.O_CLOEXEC)
    fd = os.open(home / "logs" / "job.log", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    argv = [sys.executable, launch.RUNNER, str(home / "Programs"), "probe.py:wait", json.dumps({"args": [str(marker)]})]
    setup = supervisor.forkexec.Setup(sigdef=())
    pid, _ = daemon.zygotes._fork(zygote, gate, argv, daemon.env(), str(home), (fd, fd), setup)
    os.close(gate)
    os.close(fd)
    os.close(opener)                    # the daemon gave up on it
    assert os.waitpid(pid, 0)[1] == 0 and not marker.exists()


def _key(daemon):
    from aios.zygote import Key, startup_variables

    return Key(interpreter=sys.executable, preload=(), startup=startup_variables(daemon.env()))


def test_the_zygote_stops_with_the_daemon_and_leaves_no_zombie(daemon, home):
    assert daemon.run("zygote", "probe.py:code", 0) == (0, None)
    pid = daemon.zygote_pid()
    daemon.zygotes.close()
    assert not os.path.exists(f"/proc/{pid}") and daemon.zygotes.pids() == set()


# ---------------------------------------------------------------- as another user, in a cgroup

DRIVER = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
from tests.test_zygote import Daemon
from pathlib import Path
from aios import supervisor
home = Path(sys.argv[2])
mode = sys.argv[3]
if mode == "cgroup":
    supervisor.setup_containment(f"aios-test-{os.getpid()}")
daemon = Daemon(home)
options = {"uid": 65534, "gid": 65534, "groups": ()} if mode == "user" else {"unit": "probe"}
marker = home / "logs" / "started"
proc = daemon.start("zygote", "probe.py:wait", str(marker), **options)
from tests.processes import wait_until
wait_until(marker.exists)
with open(f"/proc/{proc.pid}/status") as f:
    uid = [line.split()[1] for line in f if line.startswith("Uid:")][0]
with open(f"/proc/{proc.pid}/cgroup") as f:
    cgroup = f.read().split("0::")[-1].strip()
environ = open(f"/proc/{proc.pid}/environ", "rb").read()
out = {"uid": int(uid), "cgroup": cgroup, "proc_cgroup": proc.cgroup, "containment": supervisor.containment(),
       "token": b"AIOS_RUN_TOKEN=n0nce.mac" in environ.split(b"\0")}
daemon.close()
if supervisor.cgroup.TREE is not None:
    scope = supervisor.cgroup.TREE.scope
    wait_until(lambda: (supervisor.cgroup.sweep(), not supervisor.cgroup._PENDING)[1])
    out["left"] = [d for d in os.listdir(scope) if os.path.isdir(os.path.join(scope, d))]
    os.rmdir(scope)
print(json.dumps(out))
"""


def test_a_run_as_another_user_drops_its_ids_and_keeps_its_mark():
    require_root()
    import shutil
    import tempfile

    home = tempfile.mkdtemp(prefix="aios-zygote-")     # where nobody may read the program
    try:
        os.chmod(home, 0o755)
        for folder, mode in (("Programs", 0o755), ("logs", 0o777)):
            os.mkdir(os.path.join(home, folder), mode)
            os.chmod(os.path.join(home, folder), mode)
        with open(os.path.join(home, "Programs", "probe.py"), "w") as f:
            f.write(PROBE)
        out = run_driver(DRIVER, REPO, home, "user")
    finally:
        shutil.rmtree(home)
    assert out["uid"] == 65534 and out["token"]


def test_a_run_is_in_its_own_cgroup_from_the_start(home):
    out = run_driver(DRIVER, REPO, str(home), "cgroup")
    if not out["containment"].startswith("cgroup"):
        pytest.skip("no cgroup v2 for us to manage here")
    assert out["proc_cgroup"] and out["proc_cgroup"].endswith(out["cgroup"])
    assert os.path.basename(out["cgroup"]).startswith("_py."), "made ahead by the zygote, named as no job's can be"
    assert out["left"] == [], "no cgroup of the zygote's is left behind"


def test_a_zygote_whose_daemon_died_while_it_preloaded_exits_quietly():
    import subprocess

    from aios.zygote import SERVER

    ours, theirs = socket.socketpair()
    proc = subprocess.Popen([sys.executable, SERVER, str(theirs.fileno()), json.dumps(["email.parser"]), ""],
                            pass_fds=[theirs.fileno()], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    theirs.close()
    ours.close()                # the daemon is gone before the zygote can say it is ready
    _, err = proc.communicate(timeout=LIVENESS)
    assert (proc.returncode, err) == (0, b""), err.decode()
