"""supervisor.spawn: what a started process gets, and every way a start can fail, each
one SpawnError with its errno and a one-line message, on both ways of starting (plain
posix_spawn, and the fork that changes user and groups). Real processes, real files; the
descriptor and memory limits are lowered only in a child interpreter."""
from __future__ import annotations

import errno
import json
import os
import re
import signal

import pytest

from aios import supervisor
from aios.supervisor import SpawnError
from tests.processes import (PY, log, log_text, our_zombies, procs, require_root, run_driver, start,
                             wait_log, wait_until)


@pytest.fixture(params=["posix_spawn", "fork"])
def how(request) -> dict:
    """spawn's options for each way of starting: none, or our own ids (which takes the
    fork path, and needs root for setgroups)."""
    if request.param == "posix_spawn":
        return {}
    require_root()
    return {"uid": os.getuid(), "gid": os.getgid(), "groups": tuple(os.getgroups())}


def status_masks(pid: int) -> dict[str, int]:
    with open(f"/proc/{pid}/status") as f:
        rows = [line.split(":", 1) for line in f if line.startswith("Sig")]
    return {key: int(value, 16) for key, value in rows if key in ("SigIgn", "SigCgt", "SigBlk")}


def bit(sig: int) -> int:
    return 1 << (int(sig) - 1)


# ---------------------------------------------------------------- what the child gets


def test_argv_with_shell_metacharacters_arrives_literally(procs, log, how):
    weird = ["; rm -rf /", "$(echo pwned)", "`id`", "a b", "'\"", "*", "x > y", "\\n"]
    script = "import json, sys; print(json.dumps(sys.argv[1:]))"
    proc = start(procs, [PY, "-c", script, *weird], log, **how)
    wait_until(lambda: supervisor.reap(proc) is not None)
    assert json.loads(log_text(log).strip()) == weird


def test_env_and_cwd_reach_the_child(procs, log, tmp_path, how):
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    before = os.getcwd()
    env = {"PATH": os.environ["PATH"], "AIOS_JOB": "demo", "ODD": "a b;$c"}
    script = "import json, os; print(json.dumps([dict(os.environ), os.getcwd()]))"
    proc = start(procs, [PY, "-c", script], log, env=env, cwd=str(workdir), **how)
    assert os.getcwd() == before
    wait_until(lambda: supervisor.reap(proc) is not None)
    child_env, child_cwd = json.loads(log_text(log))
    assert child_env["AIOS_JOB"] == "demo" and child_env["ODD"] == "a b;$c"
    assert set(child_env) - {"LC_CTYPE"} == set(env)   # Python may coerce LC_CTYPE itself
    assert os.path.realpath(child_cwd) == os.path.realpath(workdir)


def test_program_is_found_in_the_jobs_path(procs, log, tmp_path, how):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    tool = bindir / "aios-test-tool"
    tool.write_text("#!/bin/sh\necho tool ran\n")
    tool.chmod(0o755)
    env = {"PATH": f"{bindir}:{os.environ['PATH']}"}
    proc = start(procs, ["aios-test-tool"], log, env=env, **how)
    wait_until(lambda: supervisor.reap(proc) is not None)
    assert "tool ran" in log_text(log)
    with pytest.raises(SpawnError, match="aios-test-tool"):
        supervisor.spawn(["aios-test-tool"], dict(os.environ), os.getcwd(), log[1], **how)
    with pytest.raises(SpawnError) as info:
        supervisor.spawn(["true"], {"PATH": str(bindir)}, os.getcwd(), log[1], **how)
    assert str(info.value) == (f"cannot start 'true': No such file or directory (ENOENT): "
                               f"not in the job's PATH {str(bindir)!r}")
    assert info.value.errno == errno.ENOENT


def test_stdout_and_stderr_land_in_the_log_and_stdin_is_devnull(procs, log, how):
    script = ("import sys; print('to stdout', flush=True); "
              "print('to stderr', file=sys.stderr, flush=True); print(repr(sys.stdin.read()))")
    proc = start(procs, [PY, "-c", script], log, **how)
    wait_until(lambda: supervisor.reap(proc) is not None)
    assert log_text(log).splitlines() == ["to stdout", "to stderr", "''"]


def test_child_leads_its_own_group_with_default_signals(procs, log, how):
    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN     # as Python sets it
    old_usr1 = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
    try:
        proc = start(procs, ["sleep", "1000"], log, **how)
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


# ---------------------------------------------------------------- every failure is one SpawnError


def refused(log, argv, env=None, cwd=None, how=None) -> SpawnError:
    """The SpawnError a spawn raises; no zombie is left and our cwd is kept."""
    before, zombies = os.getcwd(), our_zombies()
    with pytest.raises(SpawnError) as info:
        supervisor.spawn(argv, dict(os.environ) if env is None else env, cwd or os.getcwd(), log[1], **(how or {}))
    assert os.getcwd() == before and our_zombies() <= zombies
    assert "\n" not in str(info.value) and isinstance(info.value, OSError)
    return info.value


@pytest.fixture
def files(tmp_path):
    """A program without its run bit, a text file with it, a script whose interpreter is
    missing, a folder, and a file to use as cwd."""
    made = {"norun": tmp_path / "norun.sh", "text": tmp_path / "notes.txt",
            "badshebang": tmp_path / "bad.sh", "folder": tmp_path / "folder"}
    made["norun"].write_text("#!/bin/sh\necho hi\n")
    made["norun"].chmod(0o644)
    made["text"].write_text("just words\n")
    made["text"].chmod(0o755)
    made["badshebang"].write_text("#!/nonexistent/interp\n")
    made["badshebang"].chmod(0o755)
    made["folder"].mkdir()
    return {name: str(path) for name, path in made.items()}


EXEC_FAULTS = [
    ("/nonexistent/aios-prog", errno.ENOENT,
     "cannot start '/nonexistent/aios-prog': No such file or directory (ENOENT)"),
    ("aios-no-such-program", errno.ENOENT, "cannot start 'aios-no-such-program': No such file or directory (ENOENT): "
                                           "not in the job's PATH '"),
    ("norun", errno.EACCES,
     "Permission denied (EACCES): the file is not executable (chmod +x) or its file system is mounted noexec"),
    ("folder", errno.EACCES, "Permission denied (EACCES): it is a directory"),
    ("text", errno.ENOEXEC, "Exec format error (ENOEXEC): not a binary this machine runs, and no '#!' line"),
    ("badshebang", errno.ENOENT,
     "No such file or directory (ENOENT): its interpreter '#!/nonexistent/interp' was not found"),
]


@pytest.mark.parametrize("program, err, message", EXEC_FAULTS, ids=[f[0] for f in EXEC_FAULTS])
def test_a_program_that_cannot_run_is_one_spawn_error(log, files, how, program, err, message):
    program = files.get(program, program)
    exc = refused(log, [program, "x"], how=how)
    assert exc.errno == err
    assert str(exc).startswith(f"cannot start {program!r}: ") and message in str(exc)


INPUT_FAULTS = [
    (["true", "a\0b"], None, None, "argument 1 contains a NUL byte"),
    (["tr\0ue"], None, None, "the program name contains a NUL byte"),
    (["true", "ok", "\ud800"], None, None, "argument 2 cannot be encoded for exec: lone surrogate '\\ud800'"),
    (["true", 5], None, None, "argument 1 is int, not a string"),
    (["true"], {"LANG": "C\0"}, None, "env 'LANG' contains a NUL byte"),
    (["true"], {"L\0": "C"}, None, "env 'L\\x00' contains a NUL byte"),
    (["true"], {"LANG": "\udfff"}, None, "env 'LANG' cannot be encoded for exec: lone surrogate '\\udfff'"),
    (["true"], {"A=B": "x"}, None, "environment variable name 'A=B' is not valid (empty, or holds '=')"),
    (["true"], {"": "x"}, None, "environment variable name '' is not valid (empty, or holds '=')"),
    (["true"], None, "/tmp\0x", "cwd contains a NUL byte"),
    (["true"], None, "/tmp/\ud800", "cwd cannot be encoded for exec: lone surrogate '\\ud800'"),
]


@pytest.mark.parametrize("argv, env, cwd, message", INPUT_FAULTS, ids=[f[3] for f in INPUT_FAULTS])
def test_input_exec_cannot_take_is_one_spawn_error(log, how, argv, env, cwd, message):
    env = None if env is None else {"PATH": os.environ["PATH"], **env}
    exc = refused(log, argv, env, cwd, how)
    assert exc.errno is None and str(exc) == f"cannot start {argv[0]!r}: {message}"


def test_an_escaped_surrogate_is_a_byte_and_reaches_the_child(procs, log):
    proc = start(procs, [PY, "-c", "import os, sys; print(os.fsencode(sys.argv[1]).hex())", "caf\udce9"], log)
    wait_until(lambda: supervisor.reap(proc) is not None)
    assert log_text(log).strip() == b"caf\xe9".hex()


@pytest.mark.parametrize("argv", [["true", "x" * (128 * 1024)], ["true"] + ["x" * 1000] * 10000],
                         ids=["one string of 128 KiB", "10 MB of arguments"])
def test_an_argument_list_too_long_is_e2big(log, how, argv):
    exc = refused(log, argv, how=how)
    assert exc.errno == errno.E2BIG and str(exc) == "cannot start 'true': Argument list too long (E2BIG)"


def test_the_longest_string_exec_takes_passes(procs, log):
    proc = start(procs, [PY, "-c", "import sys; print(len(sys.argv[1]))", "x" * (128 * 1024 - 1)], log)
    wait_until(lambda: supervisor.reap(proc) is not None)
    assert log_text(log).strip() == str(128 * 1024 - 1)


@pytest.mark.parametrize("case, err, where", [("missing", errno.ENOENT, "No such file or directory (ENOENT)"),
                                              ("file", errno.ENOTDIR, "Not a directory (ENOTDIR)")])
def test_a_cwd_that_vanished_or_is_a_file_is_one_spawn_error(log, tmp_path, how, case, err, where):
    cwd = tmp_path / "work"
    cwd.mkdir()
    cwd.rmdir()
    if case == "file":
        cwd.write_text("")
    exc = refused(log, ["true"], cwd=str(cwd), how=how)
    assert exc.errno == err and str(exc) == f"cannot start 'true': cwd {str(cwd)!r}: {where}"


def test_an_empty_command_is_one_spawn_error(log):
    assert str(refused(log, [], cwd="/")) == "cannot start an empty command (cwd '/')"


# Run in a child interpreter: fills every descriptor up to a lowered RLIMIT_NOFILE but
# `free`, or lowers RLIMIT_AS to what is mapped, then spawns; prints what came out.
LIMIT_DRIVER = r"""
import json, os, resource, sys
from aios import supervisor
from aios.supervisor import SpawnError
kind, free = sys.argv[1], int(sys.argv[2])
log = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
if kind == "nofile":
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, nofile[1]))
    fds = []
    try:
        while True:
            fds.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
    except OSError:
        for fd in fds[len(fds) - free:]:
            os.close(fd)
else:
    size = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize:")) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (size, resource.RLIM_INFINITY))
try:
    proc = supervisor.spawn(["sleep", "1000"], dict(os.environ), "/", log)
    out = ["started", proc.pid]
    supervisor.signal_group(proc, 9)
except SpawnError as exc:
    out = [exc.errno, str(exc)]
resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
resource.setrlimit(resource.RLIMIT_NOFILE, nofile)
print(json.dumps(out + [open(f"/proc/self/task/{os.getpid()}/children").read().split()]))
"""


@pytest.mark.skipif(not supervisor.HAS_PIDFD, reason="no pidfd on this kernel")
@pytest.mark.parametrize("free, step", [(0, "pidfd_open"), (1, "/proc/PID/stat")])
def test_no_descriptor_left_is_one_spawn_error_and_no_child_runs(free, step):
    """posix_spawn needs no descriptor of ours (glibc closes fd 0 before it opens
    /dev/null there): what fails is watching the child, which is then killed and reaped."""
    err, text, children = run_driver(LIMIT_DRIVER, "nofile", str(free))
    assert err == errno.EMFILE and children == []
    pattern = f"cannot watch 'sleep': {step.replace('PID', '[0-9]+')}: Too many open files [(]EMFILE[)]"
    assert re.fullmatch(pattern, text)


def test_no_memory_left_is_one_spawn_error():
    err, text, zombies = run_driver(LIMIT_DRIVER, "memory", "0")
    assert (err, text, zombies) == (errno.ENOMEM, "cannot start 'sleep': Cannot allocate memory (ENOMEM)", [])


# ---------------------------------------------------------------- nothing inherited leaks


# A process holding inheritable descriptors (as a daemon started from a shell or by
# `aios up` does) spawns a job, with or without close_on_exec_all first; prints the
# job's descriptors and what close_on_exec_all reported.
LEAK_DRIVER = r"""
import json, os, sys
from aios import supervisor
fd = os.open("/etc/hostname", os.O_RDONLY)
reader, writer = os.pipe()
for leaked in (fd, reader, writer):
    os.set_inheritable(leaked, True)
changed = supervisor.close_on_exec_all(keep=(writer,)) if sys.argv[1] == "close" else []
log = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
proc = supervisor.spawn(["sleep", "1000"], dict(os.environ), "/", log)
fds = sorted(int(name) for name in os.listdir(f"/proc/{proc.pid}/fd"))
supervisor.signal_group(proc, 9)
print(json.dumps([fds, sorted(changed), [fd, reader, writer]]))
"""


def test_inherited_descriptors_never_reach_a_job_once_marked():
    fds, changed, (fd, reader, writer) = run_driver(LEAK_DRIVER, "close")
    assert changed == [fd, reader] and fds == [0, 1, 2, writer]   # `keep` is kept
    fds, changed, held = run_driver(LEAK_DRIVER, "leave")
    assert fds == [0, 1, 2, *held]                               # what the call prevents
