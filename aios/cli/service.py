"""`aios service install|uninstall|status`: the systemd unit that starts this home's
daemon at boot (aios/service.py writes it). Without a running systemd, install prints
the unit and says what to do."""
from __future__ import annotations

import os
import sys

from .. import control, service
from ..errors import AiosError
from . import EXIT_FAILED, EXIT_OK, command, out


def _service_arguments(cmd) -> None:
    cmd.add_argument("action", choices=["install", "uninstall", "status"],
                     help="install: write the unit, enable it and start the daemon under systemd; "
                          "uninstall: stop and disable it, remove the unit; status: where it is and its state")
    scope = cmd.add_mutually_exclusive_group()
    scope.add_argument("--user", dest="scope", action="store_const", const=service.USER,
                       help="a user unit in ~/.config/systemd/user (the default unless run as root)")
    scope.add_argument("--system", dest="scope", action="store_const", const=service.SYSTEM,
                       help="a system unit in /etc/systemd/system, running as the home's owner (root's default)")
    cmd.add_argument("--print", action="store_true", help="print the unit and what install would run; change nothing")


@command("service", setup=_service_arguments)
def cmd_service(args, home: str) -> int:
    """Start this home's daemon at boot under systemd: install, uninstall or status."""
    svc = service.describe(home, args.scope)
    if args.action == "install":
        return _install(svc, args.print)
    if args.action == "uninstall":
        return _uninstall(svc)
    return _status(svc)


def _install(svc: service.Service, dry_run: bool) -> int:
    text = service.unit_text(svc)
    running = _running_pid(svc.home)
    steps = service.install_steps(svc, start_now=running is None)
    if dry_run or not service.systemd_running():
        sys.stdout.write(text)
        if dry_run:
            _say(f"would write {svc.path}, then run: " + "; ".join(" ".join(s) for s in steps))
            return EXIT_OK
        _say(f"systemd is not running on this machine, so nothing was installed. The unit is above: "
             f"on a systemd machine save it as {svc.path} and run: " + "; ".join(" ".join(s) for s in steps)
             + ". For OpenRC, runit or launchd see docs/service.md.")
        return EXIT_FAILED
    service.write_unit(svc)
    out(f"aios: wrote {svc.path}")
    _run_steps(steps)
    if running is not None:
        out(f"aios: enabled {svc.name} for the next boot; the daemon already running (pid {running}) keeps "
            f"running. If you started it by hand, hand it to systemd: aios down && "
            f"{' '.join(svc.systemctl('start', svc.name))}")
    else:
        out(f"aios: {svc.name} enabled and started; `aios service status` shows it")
    if svc.scope == service.USER and service.linger_missing(_me()):
        out(f"aios: note: a user unit starts at boot only if you linger: loginctl enable-linger {_me()} "
            "(else it starts at your first login)")
    return EXIT_OK


def _uninstall(svc: service.Service) -> int:
    if not os.path.exists(svc.path):
        raise AiosError(f"no unit installed for {svc.home} ({svc.path} does not exist)")
    if service.systemd_running():
        _run_steps(service.uninstall_steps(svc))
    os.unlink(svc.path)
    if service.systemd_running():
        _run_steps([svc.systemctl("daemon-reload")])
    out(f"aios: removed {svc.path}" + ("; the daemon and its jobs were stopped" if service.systemd_running() else ""))
    return EXIT_OK


def _status(svc: service.Service) -> int:
    installed = os.path.exists(svc.path)
    out(f"unit {svc.name}.service ({svc.scope}): {svc.path} " + ("installed" if installed else "not installed"))
    if installed and _read(svc.path) != service.unit_text(svc):
        out("  it differs from what `aios service install` writes now (another interpreter or path?): "
            "install again to update it")
    if not service.systemd_running():
        out("systemd is not running on this machine")
        return EXIT_FAILED
    if not installed:
        return EXIT_FAILED
    import subprocess

    return subprocess.run(svc.systemctl("status", "--no-pager", "--lines=5", svc.name), check=False).returncode


def _run_steps(steps: list[list[str]]) -> None:
    import shutil
    import subprocess

    for argv in steps:
        program = shutil.which(argv[0])
        if program is None:
            raise AiosError(f"{argv[0]} is not on PATH; run by hand: {' '.join(argv)}")
        done = subprocess.run([program, *argv[1:]], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            why = (done.stderr or done.stdout).strip().splitlines()
            raise AiosError(f"`{' '.join(argv)}` failed (exit {done.returncode}): {why[-1] if why else 'no message'}")


def _running_pid(home: str) -> int | None:
    try:
        return control.call(home, "ping")["pid"]
    except (control.DaemonNotRunning, AiosError, OSError):
        return None


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def _me() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def _say(text: str) -> None:
    sys.stderr.write(f"aios: {text}\n")
