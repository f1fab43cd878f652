"""How a run of a job becomes a process: its argv, environment, working directory and
identity (`plan` gathers them for supervisor.spawn).

Functions of the spec, the trigger and the daemon's facts; no process is started here
(supervisor does that). Arguments never pass through a shell: a `program` job gets them
as one JSON string for runner.py; a shell command gets them as "$1", "$2", ... The only
things read are the user and group databases (`identity`) and a job's env_file. Imports
aios.spec, aios.errors, aios.record and aios.dotenv.
"""
from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path

from . import dotenv
from .errors import SpawnError
from .record import record, replace
from .spec import MAX_ARG_BYTES, NAME_RE, JobSpec, Settings, SpecError, Trigger, exec_text_problem

RUNNER = str(Path(__file__).with_name("runner.py"))


def argv(spec: JobSpec, trigger: Trigger | None, home: Path) -> list[str]:
    args = list(spec.args) + list(trigger.args if trigger else ())
    if spec.program:
        return [sys.executable, RUNNER, str(home / "Programs"), spec.program, _payload(spec, trigger)]
    if spec.shell:
        return ["/bin/sh", "-c", spec.command[0], spec.name] + [_text(a) for a in args]
    return list(spec.command) + [_text(a) for a in args]


def _payload(spec: JobSpec, trigger: Trigger | None) -> str:
    """The one JSON argument of a program job (ASCII: NUL and surrogates come escaped)."""
    args = list(spec.args) + list(trigger.args if trigger else ())
    kwargs = {**spec.kwargs, **(trigger.kwargs if trigger else {})}
    return json.dumps({"args": args, "kwargs": kwargs}, separators=(",", ":"))


def _text(value) -> str:
    """A command-line argument from a JSON value: strings as they are, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


# ---------------------------------------------------------------- what the daemon puts in a trigger
# Keyword arguments under these keys are the daemon's, kept with the trigger in the store
# (so they survive a crash) and taken out before the job sees its arguments:
#   aios_hook  a hook's facts (on_failure, on_success): {"kind", "job", "outcome",
#              "exit_code", "run_id", "why"}; the job gets job, outcome, exit_code and run_id
#              appended to its arguments, and all of them as AIOS_HOOK_* variables;
#   aios_after the `after` list that made the trigger; AIOS_AFTER="a,b".
HOOK_KEY, AFTER_KEY = "aios_hook", "aios_after"
RESERVED = frozenset({HOOK_KEY, AFTER_KEY})
HOOK_ARGS = ("job", "outcome", "exit_code", "run_id")
_HOOK_TEXTS = ("kind", "job", "outcome", "why")
MAX_FACT = 4096     # characters of one fact (a reason is cut to this)


def reserved_problem(kwargs: dict) -> str | None:
    """Why the reserved keyword arguments of a trigger are malformed, or None."""
    hook, after = kwargs.get(HOOK_KEY), kwargs.get(AFTER_KEY)
    if HOOK_KEY in kwargs:
        if not isinstance(hook, dict) or not set(hook) <= {*_HOOK_TEXTS, *HOOK_ARGS}:
            return f"kwargs {HOOK_KEY} must be an object of {', '.join(_HOOK_TEXTS + HOOK_ARGS[2:])}"
        for key, value in hook.items():
            ok = (isinstance(value, str) and len(value) <= MAX_FACT and exec_text_problem(value) is None
                  if key in _HOOK_TEXTS else value is None or type(value) is int)
            if not ok:
                kind = "short text" if key in _HOOK_TEXTS else "an integer or null"
                return f"kwargs {HOOK_KEY}: {key} must be {kind}"
    if AFTER_KEY in kwargs and not (isinstance(after, list) and len(after) <= 64
                                    and all(isinstance(n, str) and NAME_RE.fullmatch(n) for n in after)):
        return f"kwargs {AFTER_KEY} must be a list of job names"
    return None


def unpack(trigger: Trigger | None) -> tuple[Trigger | None, dict]:
    """The trigger as its job sees it (the reserved keyword arguments taken out, a hook's
    facts appended to its arguments) and the variables they become."""
    if trigger is None or not RESERVED & set(trigger.kwargs):
        return trigger, {}
    kwargs = {k: v for k, v in trigger.kwargs.items() if k not in RESERVED}
    hook, after = trigger.kwargs.get(HOOK_KEY), trigger.kwargs.get(AFTER_KEY)
    env, args = {}, tuple(trigger.args)
    if isinstance(hook, dict):
        args += tuple(hook.get(key) for key in HOOK_ARGS)
        env = {f"AIOS_HOOK_{key.upper()}": "" if hook[key] is None else str(hook[key])
               for key in (*_HOOK_TEXTS, *HOOK_ARGS[2:]) if key in hook}
    if isinstance(after, list):
        env["AIOS_AFTER"] = ",".join(after)
    return replace(trigger, args=args, kwargs=kwargs), env


def exec_problem(spec: JobSpec, trigger: Trigger | None = None) -> str | None:
    """Why a run of `spec` with `trigger`'s arguments can never be exec'd, in one line, or
    None if it can: check a trigger when it is submitted, and refuse it, never store it.

    A command or shell job gets each trigger argument as one argv string (a NUL byte, a
    lone surrogate or 128 KiB in one are refused: "argument 2 contains a NUL byte"); a
    program job gets them all as one JSON string, which escapes NUL and surrogates but
    must stay under 128 KiB. The spec's own strings were checked by parse_job."""
    if trigger is None:
        return None
    problem = reserved_problem(trigger.kwargs)
    if problem:
        return problem
    trigger = unpack(trigger)[0]
    if spec.program:
        size = len(_payload(spec, trigger))
        if size >= MAX_ARG_BYTES:
            return (f"arguments are {size} bytes as JSON; a program job takes less than "
                    f"{MAX_ARG_BYTES // 1024} KiB (pass a file path instead)")
        return None
    for index, value in enumerate(trigger.args, 1):
        problem = exec_text_problem(_text(value))
        if problem:
            return f"argument {index} {problem}"
    return None


# What the daemon's own environment must not pass on: every AIOS_* variable (control
# variables such as AIOS_READY_FD and AIOS_REEXEC_FDS, the database URL; the ones a job
# needs are set below, per run) and systemd's per-service protocol variables (a job
# holding NOTIFY_SOCKET could tell systemd the daemon is ready or stopping).
_NOT_INHERITED = frozenset({"NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES",
                            "WATCHDOG_PID", "WATCHDOG_USEC"})


def inherited(base: dict) -> dict:
    """The part of the daemon's environment a job starts from."""
    return {k: v for k, v in base.items() if not k.startswith("AIOS_") and k not in _NOT_INHERITED}


def environment(spec: JobSpec, run_id: int | None, base: dict, home: Path, settings: Settings,
                token: str | None = None, who: Identity | None = None, from_file: dict | None = None) -> dict:
    """The daemon's environment (less its own variables: `inherited`), HOME, USER and
    LOGNAME of the job's user (`who`), [python] env for a program job, its env_file's
    variables (`from_file`), the job's
    `env` (the more specific wins, as in docker compose), then what every job finds:
    AIOS_JOB, AIOS_RUN_ID, AIOS_DEVICE_ID, AIOS_HOME (and where the dashboard listens),
    AIOS_INSTANCE for a copy of a job with `instances`, and AIOS_RUN_TOKEN (`run_token`)
    when given, which nothing before can override."""
    env = inherited(base)
    if who is not None and who.name is not None:
        env.update(HOME=who.home, USER=who.name, LOGNAME=who.name)
    if spec.program:
        env.update(settings.python_env)
    env.update(from_file or {})
    env.update(spec.env)
    env.update(AIOS_JOB=spec.name, AIOS_RUN_ID=str(run_id), AIOS_DEVICE_ID=settings.device_id,
               AIOS_HOME=str(home), AIOS_WEB_HOST=settings.web_host, AIOS_WEB_PORT=str(settings.web_port))
    if spec.instance is not None:
        env["AIOS_INSTANCE"] = str(spec.instance)
    if token is not None:
        env[TOKEN_VAR] = token
    if spec.program:
        env.setdefault("PYTHONUNBUFFERED", "1")
    return env


TOKEN_VAR = "AIOS_RUN_TOKEN"


def run_token(secret: bytes, job: str, nonce: str | None = None) -> str:
    """The secret mark of one run, put in its environment as AIOS_RUN_TOKEN: a fresh nonce
    and a keyed BLAKE2b (a MAC, RFC 7693) of the job and the nonce under the home's secret
    (16 to 64 random bytes the daemon keeps to itself). It needs no run id, so a run
    started while the store fails is marked too. After a crash, a process is a run of
    `job` only if its token checks out (`token_matches`): other users can copy every
    other variable, not this one."""
    if not 16 <= len(secret) <= 64:
        raise ValueError(f"the run secret must be 16 to 64 bytes, not {len(secret)}")
    nonce = nonce or os.urandom(8).hex()
    mac = _blake2b()(f"aios run {job} {nonce}".encode(), key=secret, digest_size=16).hexdigest()
    return f"{nonce}.{mac}"


def cgroup_scope(home: Path) -> str:
    """The name of the cgroup that holds a home's runs (supervisor.setup_containment):
    the same for every daemon of that home, so one finds the runs another left; another
    for every other home on the machine."""
    return "aios-" + _blake2b()(os.fsencode(str(home)), digest_size=6).hexdigest()


def _blake2b():
    try:
        from _blake2 import blake2b     # hashlib's own; importing hashlib loads OpenSSL (3-10 ms)
    except ImportError:
        from hashlib import blake2b
    return blake2b


def token_matches(secret: bytes, job: str, token: str | None) -> bool:
    """True if `token` (found in a process's environment) was made for a run of `job`
    with this secret."""
    import hmac

    nonce = (token or "").partition(".")[0]
    return bool(nonce) and hmac.compare_digest(run_token(secret, job, nonce), token)


def working_dir(spec: JobSpec, home: Path) -> str:
    return str(home / spec.cwd) if spec.cwd else str(home)


# ---------------------------------------------------------------- who a job runs as


@record
class Identity:
    """Who a job's process runs as: ids for the switch, name and home for its environment
    (None when only the group changes)."""

    uid: int
    gid: int
    groups: tuple[int, ...]     # the complete supplementary list: setgroups() gets exactly this
    name: str | None = None
    home: str | None = None


def identity(spec: JobSpec) -> Identity | None:
    """Who `spec` runs as, or None to run as the daemon; SpecError naming the field if a
    user or group does not exist, or if this daemon may not switch to it (only root may
    switch; `user` set to the daemon's own user is fine anywhere).

    With `user`, the group is the user's primary group and the supplementary groups are
    the user's (as login would set them) plus `groups`; without it, the daemon's user
    keeps its uid and gets `group` and exactly `groups`. Call it at config load to refuse
    a bad table, and at each spawn (`plan`) to follow changes of the user database."""
    if spec.user is None and spec.group is None and not spec.groups:
        return None
    where = f"job {spec.name!r}"
    uid, gid, name, home = (_user(where, spec.user) if spec.user is not None
                            else (os.geteuid(), os.getegid(), None, None))
    if spec.group is not None:
        gid = _group(where, "group", spec.group)
    groups = {_group(where, "groups", g) for g in spec.groups}
    if name is not None:
        groups.update(os.getgrouplist(name, gid))
    who = Identity(uid=uid, gid=gid, groups=tuple(sorted(groups)), name=name, home=home)
    return _allowed(where, spec, who)


def _user(where: str, user: str) -> tuple[int, int, str | None, str | None]:
    import pwd

    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        if user.isdigit():          # an id without a name: allowed, as systemd does
            return int(user), int(user), None, None
        raise SpecError(f"{where}: user = {user!r} does not exist on this machine (see getent passwd)") from None
    return entry.pw_uid, entry.pw_gid, entry.pw_name, entry.pw_dir


def _group(where: str, key: str, group: str) -> int:
    import grp

    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        shown = f"{key} = {group!r}" if key == "group" else f"{key}: {group!r}"
        raise SpecError(f"{where}: {shown} does not exist on this machine (see getent group)") from None


def _allowed(where: str, spec: JobSpec, who: Identity) -> Identity | None:
    """who, if this daemon can switch to it: root can; anyone else only to itself (None)."""
    if os.geteuid() == 0:
        return who
    own_groups = set(os.getgroups()) | {os.getegid()}
    for key, differs in (("user", who.uid != os.geteuid()), ("group", who.gid != os.getegid()),
                         ("groups", not set(who.groups) <= own_groups)):
        if differs:
            return _refuse(where, key, getattr(spec, key))
    return None


def _refuse(where: str, key: str, value) -> None:
    shown = list(value) if isinstance(value, tuple) else value
    raise SpecError(f"{where}: {key} = {shown!r} needs a daemon running as root (this one runs as "
                    f"uid {os.geteuid()}); remove it or start the daemon as root")


def control_uids(specs) -> frozenset[int]:
    """The uids, other than root's, that jobs with `control = true` run as: the control
    socket admits them beside the daemon's owner and root (each is trusted with
    everything the owner may do; give such a job a user of its own)."""
    uids = set()
    for spec in specs:
        if spec.control and spec.user is not None:
            try:
                who = identity(spec)
            except SpecError:
                continue
            if who is not None and who.uid != 0:
                uids.add(who.uid)
    return frozenset(uids)


def root_warning(spec: JobSpec) -> str | None:
    """Why `spec` deserves a warning in status: a daemon running as root runs it as root
    only because no `user` says otherwise (user = "root" says it is meant)."""
    if os.geteuid() != 0 or spec.user is not None:
        return None
    return 'runs as root because no user is set: set user = "NAME" if it needs no root (user = "root" if it does)'


DYNAMIC_IDS = range(61184, 65520)   # where systemd's DynamicUser= takes ids, never a login's


def dashboard_id(home: Path) -> int:
    """A uid (and the gid of the same number) for the dashboard of a root daemon's home,
    as systemd's DynamicUser= does: one no user or group of this machine has, the same
    each time for a home while it stays free."""
    import grp
    import pwd

    start = int.from_bytes(_blake2b()(os.fsencode(str(home)), digest_size=4).digest(), "big")
    for step in range(len(DYNAMIC_IDS)):
        candidate = DYNAMIC_IDS[(start + step) % len(DYNAMIC_IDS)]
        try:
            pwd.getpwuid(candidate)
            continue
        except KeyError:
            pass
        try:
            grp.getgrgid(candidate)
        except KeyError:
            return candidate
    raise SpawnError(f"no free id in {DYNAMIC_IDS.start}-{DYNAMIC_IDS.stop - 1} for the dashboard; "
                     'set user = "NAME" in [jobs.web_server] yourself')


# ---------------------------------------------------------------- the whole of one run


@record
class Plan:
    """What the process layer's spawn(argv, env, cwd, log_path, **options) needs for one
    run: supervisor.spawn's options, and for a program job `start` and `preload`."""

    argv: list
    env: dict
    cwd: str
    options: dict


def plan(spec: JobSpec, trigger: Trigger | None, run_id: int | None, base: dict, home: Path,
         settings: Settings, token: str | None = None) -> Plan:
    """argv, environment, cwd and spawn options of one run; SpawnError if it cannot
    start now (its user or group no longer exists, its env_file is missing or bad).

    A `control` job running as another user (the dashboard of a root daemon) gets the
    home as its descriptor 3 (AIOS_HOME_FD=3) and reaches it as HOME_BY_FD (its cwd,
    Programs/): its user may not be able to reach the home by name (/root is 0700), and
    needs not; what it may do inside is what the home's group may."""
    try:
        who = identity(spec)
    except SpecError as exc:
        raise SpawnError(f"cannot start job {spec.name!r}: {str(exc).partition(': ')[2]}") from None
    options: dict = {"umask": spec.umask, "unit": spec.name}
    if token is not None:
        options["mark"] = f"{TOKEN_VAR}={token}"
    if who is not None:
        options.update(uid=who.uid, gid=who.gid, groups=who.groups)
    limits = {key: getattr(spec, key) for key in LIMITS if getattr(spec, key) is not None}
    if limits:
        options["limits"] = limits
    seen = home
    if spec.control and who is not None and who.uid != os.geteuid():
        options["folder"], seen = str(home), Path(HOME_BY_FD)
    if spec.program:    # through a zygote (zygote.py), unless it or [python] says spawn (or it needs a folder)
        options.update(start="spawn" if "folder" in options else spec.start or settings.python_start,
                       preload=tuple(dict.fromkeys(settings.python_preload + spec.preload)))
    trigger, from_trigger = unpack(trigger)
    env = {**environment(spec, run_id, base, home, settings, token, who, env_file(spec, home)), **from_trigger}
    if seen is not home:
        env[HOME_FD_VAR] = HOME_BY_FD.rpartition("/")[2]
    return Plan(argv=argv(spec, trigger, seen), cwd=working_dir(spec, seen), options=options, env=env)


HOME_BY_FD = "/proc/self/fd/3"
HOME_FD_VAR = "AIOS_HOME_FD"


LIMITS = ("memory_max", "cpu_quota", "cpu_weight", "nice", "nofile", "ioclass")


def env_file(spec: JobSpec, home: Path) -> dict | None:
    """The variables of spec's env_file (relative to home), read now so that edits count
    from the next start; SpawnError naming the file and line, never a value."""
    if spec.env_file is None:
        return None
    path = home / spec.env_file
    where = f"cannot start job {spec.name!r}: env_file {str(path)!r}"
    try:
        with open(path, "rb") as f:
            data = f.read(dotenv.MAX_BYTES + 1)
    except OSError as exc:
        raise SpawnError(f"{where}: {exc.strerror} ({errno.errorcode.get(exc.errno, exc.errno)})", exc.errno) from None
    if len(data) > dotenv.MAX_BYTES:
        raise SpawnError(f"{where}: larger than {dotenv.MAX_BYTES // 1024} KiB")
    try:
        values = dotenv.parse(data.decode("utf-8", "surrogateescape"))
    except dotenv.DotenvError as exc:
        raise SpawnError(f"{where}: {exc}") from None
    for key, value in values.items():
        problem = exec_text_problem(f"{key}={value}")
        if problem:
            raise SpawnError(f"{where}: {key} {problem.split(':')[0]}")    # never the value itself
    return values
