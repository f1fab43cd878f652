"""AIOS under a service manager: the systemd unit that starts a home's daemon at boot
and restarts it if it dies, and the readiness message the daemon sends to systemd.

`describe` gathers the facts of one home (its owner, this interpreter, the package's
folder) into a `Service`; `unit_text` writes the unit from them, a pure function;
`install_steps`/`uninstall_steps` are the systemctl calls, as data. The unit runs the
daemon in the foreground (`aios up`) with Type=notify: `notify_ready` sends READY=1 once
the daemon answers on its socket. KillMode=process: when systemd stops or restarts the
daemon alone, its jobs keep running and the next daemon adopts them (`aios down`, the
unit's ExecStop, is what stops the jobs). Everything is baked in by absolute path: the
interpreter, the package and the home; nothing is looked up on PATH at boot.

Imports only aios.errors and aios.record; hashlib, pwd, re and socket load only when used.
"""
from __future__ import annotations

import os

from .errors import AiosError
from .record import factory, record

USER, SYSTEM = "user", "system"
SYSTEM_UNIT_DIR = "/etc/systemd/system"
_KEPT_ENV = ("PATH", "DEVICE_ID", "DEVICE_TAGS", "LANG", "TZ")   # baked into the unit when set at install


class ServiceError(AiosError):
    """The unit cannot be written or installed; the message says why and what to do."""


@record
class Service:
    """Everything the unit of one home needs."""

    home: str                     # absolute path of the AIOS home
    scope: str                    # USER (systemctl --user) or SYSTEM
    name: str                     # unit name without ".service"
    python: str                   # the interpreter that runs the daemon (absolute)
    package_dir: str              # the folder holding the aios package (its cwd: `-m aios` imports it)
    user: str | None = None       # SYSTEM scope: the account the daemon runs as (None: root)
    group: str | None = None
    env: dict = factory(dict)     # Environment= lines
    unit_dir: str = SYSTEM_UNIT_DIR

    @property
    def path(self) -> str:
        return os.path.join(self.unit_dir, self.name + ".service")

    def systemctl(self, *args: str) -> list[str]:
        return ["systemctl", *(["--user"] if self.scope == USER else []), *args]


# ---------------------------------------------------------------- the facts of a home

def describe(home: str, scope: str | None = None) -> Service:
    """The service of `home` for this interpreter; scope defaults to USER, or SYSTEM when
    run as root. SYSTEM runs the daemon as the home's owner (root only for a home root owns)."""
    import pwd
    import sys

    home = os.path.abspath(home)
    scope = scope or (SYSTEM if os.geteuid() == 0 else USER)
    owner = pwd.getpwuid(_owner_uid(home))
    me = pwd.getpwuid(os.geteuid())
    default_home = os.path.join((owner if scope == SYSTEM else me).pw_dir, ".aios")
    user = group = None
    if scope == SYSTEM and owner.pw_uid != 0:
        import grp

        user, group = owner.pw_name, grp.getgrgid(owner.pw_gid).gr_name
    unit_dir = SYSTEM_UNIT_DIR if scope == SYSTEM else _user_unit_dir(me.pw_dir)
    package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return Service(home=home, scope=scope, name=unit_name(home, default_home, user if scope == SYSTEM else None),
                   python=os.path.abspath(sys.executable), package_dir=package_dir, user=user, group=group,
                   env={k: os.environ[k] for k in _KEPT_ENV if os.environ.get(k)}, unit_dir=unit_dir)


def _owner_uid(home: str) -> int:
    """The owner of the home, or of its nearest existing parent (a home not made yet)."""
    path = home
    while True:
        try:
            return os.stat(path).st_uid
        except FileNotFoundError:
            parent = os.path.dirname(path)
            if parent == path:
                return os.geteuid()
            path = parent


def _user_unit_dir(user_home: str) -> str:
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(user_home, ".config")
    return os.path.join(config, "systemd", "user")


def unit_name(home: str, default_home: str, user: str | None = None) -> str:
    """"aios" for the default home (~/.aios; "aios-USER" for a system unit), else
    "aios-FOLDER-HASH": readable, and distinct for every path."""
    import hashlib
    import re

    if os.path.normpath(home) == os.path.normpath(default_home):
        return f"aios-{user}" if user else "aios"
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", os.path.basename(home.rstrip("/")) or "root").strip("_.-")[:32]
    digest = hashlib.sha256(home.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"aios-{slug or 'home'}-{digest}"


# ---------------------------------------------------------------- the unit

def unit_text(svc: Service) -> str:
    """The systemd unit of `svc`, as text."""
    _check_path("the interpreter", svc.python, program=True)
    for what, value in (("the home", svc.home), ("the package", svc.package_dir)):
        _check_path(what, value)
    aios = [svc.python, "-m", "aios", "--home", svc.home]
    unit = [f"# Written by `aios service install` for the AIOS home {svc.home}.",
            "# `aios service uninstall` removes it (and stops the daemon and its jobs).",
            "[Unit]", f"Description=AIOS daemon for {_specifiers(svc.home)}"]
    if svc.scope == SYSTEM:
        unit += ["Wants=network-online.target", "After=network-online.target"]
    unit += ["", "[Service]", "Type=notify", "NotifyAccess=main"]
    if svc.user:
        unit += [f"User={svc.user}", f"Group={svc.group}"]
    unit += [f"WorkingDirectory={_specifiers(svc.package_dir)}"]
    unit += [f"Environment={_quote(f'{k}={v}')}" for k, v in sorted(svc.env.items())]
    unit += [f"ExecStart={_command(aios + ['up'])}",
             f"ExecReload={_command(aios + ['reexec'])}",
             f"ExecStop={_command(aios + ['down'])}",
             "# systemd stops or restarts the daemon alone; its jobs keep running and the",
             "# next daemon adopts them. ExecStop (`aios down`) is what stops the jobs.",
             "KillMode=process", "Restart=always", "RestartSec=1",
             "", "[Install]", f"WantedBy={'multi-user.target' if svc.scope == SYSTEM else 'default.target'}", ""]
    return "\n".join(unit)


def _check_path(what: str, path: str, program: bool = False) -> None:
    """Refuse what a unit cannot hold: control characters and backslashes anywhere, and
    quotes in the program's path (systemd refuses them there)."""
    if not os.path.isabs(path):
        raise ServiceError(f"{what} {path!r} is not an absolute path; a unit needs one")
    bad = "\\\"'" if program else "\\"
    if any(ord(c) < 32 or ord(c) == 127 or c in bad for c in path):
        which = "a control character, a backslash or a quote" if program else "a control character or a backslash"
        raise ServiceError(f"{what} {path!r} holds {which}, which a systemd unit cannot hold there; "
                           "move it to a plainer path")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise ServiceError(f"{what} {path!r} is not valid UTF-8, which a systemd unit needs; "
                           "move it to a plainer path") from None


def _specifiers(text: str) -> str:
    return text.replace("%", "%%")


def _quote(word: str, program: bool = False) -> str:
    """One word of an Exec or Environment line: % (and $, but in the program's path, which
    systemd does not expand) made literal, quoted if needed."""
    import re

    word = _specifiers(word) if program else _specifiers(word).replace("$", "$$")
    if re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _command(argv: list[str]) -> str:
    return " ".join([_quote(argv[0], program=True)] + [_quote(word) for word in argv[1:]])


# ---------------------------------------------------------------- installing

def systemd_running() -> bool:
    """True when systemd is the running init (sd_booted: /run/systemd/system exists)."""
    return os.path.isdir("/run/systemd/system")


def install_steps(svc: Service, start_now: bool) -> list[list[str]]:
    """The systemctl calls after the unit file is written."""
    return [svc.systemctl("daemon-reload"), svc.systemctl("enable", *(["--now"] if start_now else []), svc.name)]


def uninstall_steps(svc: Service) -> list[list[str]]:
    """The systemctl call before the unit file is removed (then daemon-reload)."""
    return [svc.systemctl("disable", "--now", svc.name)]


def write_unit(svc: Service) -> None:
    """Write the unit file (mode 0644) atomically, making its folder if needed."""
    text = unit_text(svc)
    try:
        os.makedirs(svc.unit_dir, mode=0o755, exist_ok=True)
        tmp = f"{svc.path}.{os.getpid()}.tmp"
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644), "w",
                  encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, svc.path)
    except PermissionError:
        raise ServiceError(f"cannot write {svc.path}: permission denied; a system unit needs root: "
                           f"sudo {svc.python} -m aios --home {svc.home} service install --system") from None
    except OSError as exc:
        raise ServiceError(f"cannot write {svc.path}: {exc.strerror}") from None


def linger_missing(user: str) -> bool:
    """True when `user`'s units start only at their login (no `loginctl enable-linger`)."""
    return not os.path.exists(os.path.join("/var/lib/systemd/linger", user))


# ---------------------------------------------------------------- readiness

def notify_ready(status: str = "") -> bool:
    """Tell systemd the daemon is ready (sd_notify READY=1) when it was started with
    Type=notify, which sets NOTIFY_SOCKET; False when not asked or not delivered."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if address.startswith("@"):
        address = "\0" + address[1:]   # an abstract socket
    elif not address.startswith("/"):
        return False
    import socket

    message = "READY=1\n" + f"MAINPID={os.getpid()}\n" + (f"STATUS={status}\n" if status else "")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message.encode(), address)
    except OSError:
        return False
    return True
