"""The import directions of the design (README, "Design") stay true, and the core stays stdlib-only."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "aios"

# module -> the aios modules it may import. The engine is a package (aios/engine/): its
# parts (core, runs, planner, recorder, operations, reconcile, recovery, watches, loop,
# processes, daemon) count as "engine". store/* counts as "store", cli/* as "cli".
# wallclock is the DST arithmetic of calendar slots (where a zone's clock passes a time);
# posixtz turns a POSIX TZ rule into a tzinfo for config.local_zone; cron parses and
# steps cron expressions (jobtable parses the field, schedule plans its slots).
ALLOWED = {
    "spec": {"cron"},                    # only for the type of JobSpec.cron (TYPE_CHECKING)
    "jobtable": {"spec", "cron"},        # one [jobs.NAME] table -> a JobSpec; cron for its `cron` field
    "runner": set(), "fswatch": set(),
    "homefs": set(),                     # opening files in the home without following links; who owns it
    "logs": {"fswatch", "homefs",        # logs and their rotation never go through a link
             "logformat"},               # last_words reads the stream of stamped lines
    "logformat": set(),                  # the stamped line: written by logwriter, read by logs, cli, web
    "logwriter": {"logformat", "logs",   # the process that stamps job output into logs (logs.open_log)
                  "unixsock"},           # who connected to it (SO_PEERCRED)
    "unixsock": set(),                   # Unix sockets only their owner reaches: control, log writer, fence
    "logview": {"logformat", "logs", "fswatch",
                "spec"},                 # job logs read back for `aios logs`; spec.parse_duration for --since
    "scaffold": {"home", "homefs",       # a new home, its files made without following links
                 "launch"},              # launch.dashboard_id: a root daemon's dashboard runs as a uid of its own
    "supervisor": {"spec",      # spec.exec_text_problem words a spawn's bad input (error path only)
                   "unixsock"},  # the fence's socket
    "zygote": {"supervisor",             # a zygote's run is started by supervisor.spawn(via=...), as a Proc
               "zygote_server",          # the frames both sides speak
               "zygote_run"},            # the variable that makes room for a run's environment
    "zygote_server": {"runner",          # what a run's process calls, as `python3 runner.py` would
                      "zygote_run"},     # a run's process before the job's code
    "zygote_run": {"supervisor"},        # the child set-up a spawned run gets (forkexec)
    "schedule": {"spec", "cron", "wallclock"}, "cron": {"wallclock"}, "wallclock": set(),
    "lifecycle": {"spec", "schedule"},   # the table asks schedule when a restart or retry is due
    "states": {"spec", "lifecycle"},     # the status vocabulary, read off the lifecycle table
    "config": {"spec", "home", "posixtz",
               "jobtable",               # each [jobs.NAME] table, and the [python] fields jobs share
               "launch",                 # launch.identity: a job's user and groups exist at load
               "jobset",                 # hooks, after and instances: checks across jobs, copies
               "homefs", "scaffold"},    # aios.toml and its cache read and replaced without a link; a new home
    "jobset": {"spec"},                  # the jobs of a configuration as a whole (pure)
    "posixtz": set(), "control": {"spec", "unixsock"},
    "store": {"spec", "homefs"},         # sqlite_file: the database and its side files are ours, never links
    "home": set(), "show": set(), "launch": {"spec", "dotenv"}, "dotenv": set(),
    "service": set(),                    # the systemd unit of a home; sd_notify readiness
    "oplog": {"logs"},                   # orchestrator.log, rotated like job logs
    "engine": {"spec", "schedule", "lifecycle", "config", "store", "supervisor", "control", "logs",
               "fswatch", "home", "show", "launch", "jobset",
               "service",                        # daemon.py: sd_notify READY=1 under systemd (Type=notify)
               "oplog",                          # daemon.py: its log sink, orchestrator.log
               "zygote",                         # processes.py: program jobs' runs forked from a zygote
               "homefs",                         # daemon.py: the home must be ours (check_home)
               "unixsock"},                      # logpipes.py: the log writer's socket
    "cli": {"control", "config", "home", "show", "logs", "store", "engine", "spec", "states",
            "jobtable",                          # `aios add` checks the new job's table before writing it
            "jobset",                            # a group of copies (instances) by its name, daemon down
            "logview", "logformat",              # `aios logs`: job logs read back, stamped lines parsed
            "service",                           # `aios service`
            "homefs",                            # the edit lock and orchestrator.log, never through a link
            "supervisor"},                       # status with the daemon down: is a recorded pid alive (/proc)
    "web": {"control", "config", "home", "errors", "logs",
            "logformat",   # the live tail shows stamped lines with their local time and stream
            "fswatch",     # every live log tail of the web process shares its one inotify instance
            "spec"},       # /metrics names every job state
    "__init__": set(), "__main__": {"cli"}, "errors": set(), "record": set(),
}
for _allowed in ALLOWED.values():
    _allowed.update({"errors", "record"})   # the error base and frozen records: importable anywhere
THIRD_PARTY_ALLOWED = {"tomli"}   # only below Python 3.11, in place of tomllib
# The fleet extra (pip install 'aios[fleet]'): only the PostgreSQL store's modules, loaded
# only for a postgresql:// store URL.
EXTRA_ALLOWED = {"postgres.py": {"psycopg"}, "pg_link.py": {"psycopg"}}


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        if "programs" in path.parts:
            continue  # templates copied into the user's Programs/, not part of the package
        rel = path.relative_to(PACKAGE).with_suffix("")
        yield rel.parts[0], path


def imported(path: Path):
    """(aios module names, top-level external module names) imported anywhere in the file."""
    tree = ast.parse(path.read_text())
    ours, external = set(), set()
    depth = len(path.relative_to(PACKAGE).parts) - 1
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                (ours.add(alias.name.split(".")[1]) if top == "aios" else external.add(top))
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                top = node.module.split(".")[0]
                if top == "aios":
                    ours.add(node.module.split(".")[1])
                else:
                    external.add(top)
            elif node.level > depth:  # reaches the package root: from . import x / from .x import y
                ours.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
    return ours & MODULES, external


MODULES = {p.stem if p.parent == PACKAGE else p.parent.name for p in PACKAGE.rglob("*.py")
           if "programs" not in p.parts}


@pytest.mark.parametrize("name, path", list(modules()), ids=lambda v: str(v))
def test_imports_follow_the_design(name, path):
    ours, external = imported(path)
    ours.discard(name)
    assert ours <= ALLOWED[name], f"{path.name} imports {sorted(ours - ALLOWED[name])}"
    if hasattr(sys, "stdlib_module_names"):  # Python 3.10+
        stdlib = set(sys.stdlib_module_names)
        allowed = stdlib | THIRD_PARTY_ALLOWED | EXTRA_ALLOWED.get(path.name, set())
        assert external <= allowed, f"{path.name}: {external - stdlib}"


def test_psycopg_loads_only_with_a_postgres_store():
    """Importing the store package (and opening SQLite) must not import psycopg."""
    code = ("import sys, tempfile, os; from aios.store import open_store; "
            "open_store(os.path.join(tempfile.mkdtemp(), 's.db'), 'd').close(); "
            "print('psycopg' in sys.modules)")
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=PACKAGE.parent, check=True).stdout
    assert out.strip() == "False"


def test_only_store_touches_sqlite_and_only_supervisor_spawns():
    """Job processes are spawned and signalled only by supervisor and the zygote; the CLI
    may launch the daemon itself (subprocess) and the daemon may re-exec itself (os.execv)."""
    for name, path in modules():
        source = path.read_text()
        if name != "store":
            assert "sqlite3" not in imported(path)[1], f"{path.name} imports sqlite3"
        if name not in ("supervisor", "zygote", "zygote_server", "zygote_run"):
            for call in ("posix_spawn", "os.fork", "os.kill(", "killpg"):
                assert call not in source, f"{path.name} uses {call}"
        if name != "cli":
            assert "subprocess" not in imported(path)[1], f"{path.name} imports subprocess"
