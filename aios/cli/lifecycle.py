"""`aios up`, `down`, `reexec`: the daemon itself."""
from __future__ import annotations

import os
import sys

from .. import control
from . import EXIT_OK, command, fail, out


def _up_arguments(cmd) -> None:
    cmd.add_argument("-d", "--detach", action="store_true", help="run in the background; return once ready")
    cmd.add_argument("--force", action="store_true", help="clear job state and pending triggers first")
    cmd.add_argument("--force-new-db", action="store_true", help="if orchestrator.db is empty, damaged or "
                     "not AIOS's, move it aside (orchestrator.db.broken-TIME) and begin a new one")


@command("up", setup=_up_arguments)
def cmd_up(args, home: str) -> int:
    """Run the daemon: in the foreground, or detached with -d (returns once it is ready)."""
    if args.detach:
        return _up_detached(home, ["--force"] * args.force + ["--force-new-db"] * args.force_new_db)
    from pathlib import Path

    from ..engine.daemon import serve
    from .dashboard import announce

    os.makedirs(home, mode=0o750, exist_ok=True)
    announce(home)
    return serve(Path(home), force=args.force, force_new_db=args.force_new_db)


def _up_detached(home: str, options: list[str]) -> int:
    import subprocess
    import time

    try:
        return fail(f"a daemon (pid {control.call(home, 'ping')['pid']}) is already running for {home}")
    except control.DaemonNotRunning:
        pass
    os.makedirs(home, mode=0o750, exist_ok=True)
    began = time.perf_counter()
    read_end, write_end = os.pipe()
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from ..logs import open_log

    log_fd = open_log(os.path.join(home, "orchestrator.log"), base=home)   # never through a link
    with open(log_fd, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aios", "--home", home, "up", *options],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=package_parent, start_new_session=True,
            pass_fds=(write_end,), env={**os.environ, "AIOS_READY_FD": str(write_end)})
    os.close(write_end)
    ready = _read_ready(read_end)
    if not ready.startswith("ready"):
        tail = log_tail(os.path.join(home, "orchestrator.log"), 5)
        return fail(f"the daemon did not start (exit status {proc.poll()}); orchestrator.log says:\n{tail}")
    took = (time.perf_counter() - began) * 1000
    out(f"aios: daemon pid {proc.pid} ready in {took:.1f} ms (its own start-up: {ready.split()[1]} ms); home {home}")
    from .dashboard import announce

    announce(home)
    _say_skipped(home)
    return EXIT_OK


def _say_skipped(home: str) -> None:
    """Ready, but not with every job: name those skipped for an invalid table."""
    from ..errors import AiosError

    try:
        skipped = [row["why"] for row in control.call(home, "status") if row["status"] == "invalid"]
    except AiosError:
        return
    if skipped:
        jobs = f"{len(skipped)} job{'s' if len(skipped) > 1 else ''}"
        sys.stderr.write(f"aios: ready; {jobs} skipped (`aios status` shows why):\n"
                         + "".join(f"  {why}\n" for why in skipped))


def _read_ready(fd: int, timeout: float = 60.0) -> str:
    import select

    data = b""
    while b"\n" not in data and select.select([fd], [], [], timeout)[0]:
        chunk = os.read(fd, 256)
        if not chunk:
            break
        data += chunk
    os.close(fd)
    return data.decode(errors="replace")


def log_tail(path: str, n: int) -> str:
    from .. import logs

    return "\n".join("  " + line.rstrip("\n") for line in logs.tail(path, n)) or "  (nothing)"


@command("down")
def cmd_down(args, home: str) -> int:
    """Stop every job gracefully, then the daemon; returns when all have exited."""
    import time

    began = time.perf_counter()
    pid = control.call(home, "shutdown")["pid"]
    _wait_gone(pid)
    out(f"aios: daemon pid {pid} and its jobs stopped in {(time.perf_counter() - began) * 1000:.0f} ms")
    return EXIT_OK


def _wait_gone(pid: int, timeout: float = 600.0) -> None:
    """Wait for a process to exit: on its pidfd where there are pidfds, else by looking."""
    import select
    import time

    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    if fd is not None:
        select.select([fd], [], [], timeout)
        os.close(fd)
        return
    deadline = time.monotonic() + timeout
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.01)


@command("reexec")
def cmd_reexec(args, home: str) -> int:
    """Replace the daemon's code in place (same pid); every job keeps running."""
    import time

    began = time.perf_counter()
    before = control.call(home, "ping")
    control.call(home, "reexec")
    after = _new_image(home, before["started"], began + 30.0)
    if after is None:
        tail = log_tail(os.path.join(home, "orchestrator.log"), 5)
        return fail(f"the daemon did not come back within 30 s; its jobs keep running and `aios up -d` "
                    f"adopts them. orchestrator.log says:\n{tail}")
    out(f"aios: daemon pid {after['pid']} re-executed in {(time.perf_counter() - began) * 1000:.1f} ms; "
        f"{after['jobs']} jobs kept running")
    return EXIT_OK


def _new_image(home: str, started: float, deadline: float) -> dict | None:
    """Ping until a daemon started after `started` answers (the re-executed one)."""
    import time

    while time.perf_counter() < deadline:
        try:
            about = control.call(home, "ping")
        except control.DaemonNotRunning:  # caught in the exec itself, or the new code failed
            time.sleep(0.01)
            continue
        if about["started"] != started:
            return about
    return None
