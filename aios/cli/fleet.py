"""`aios fleet`: the devices of a fleet and who runs what; `aios fleet init URL` and
`aios fleet join URL` move a home from its own SQLite file to a fleet's PostgreSQL."""
from __future__ import annotations

import os
import sys
import time

from .. import control, show
from ..errors import AiosError
from . import EXIT_OK, UsageError, command, out, print_json


def _fleet_arguments(cmd) -> None:
    cmd.add_argument("words", nargs="*", metavar="[init URL | join URL]",
                     help="init: make this home the first device of a fleet on PostgreSQL URL, publishing "
                          "its jobs; join: make it another device of that fleet")
    cmd.add_argument("--password-file", help="a file holding only the database password (mode 0600)")
    cmd.add_argument("--json", action="store_true")


@command("fleet", setup=_fleet_arguments)
def cmd_fleet(args, home: str) -> int:
    """The fleet's devices (tags, version, load, last heartbeat, running jobs) and leases;
    `aios fleet init URL` / `aios fleet join URL` move this home onto a fleet's PostgreSQL."""
    words = args.words
    if words and words[0] in ("init", "join"):
        if len(words) != 2:
            raise UsageError(f"use: aios fleet {words[0]} postgresql://USER@HOST/DB")
        return _enter(home, words[1], args.password_file, publish=words[0] == "init")
    if words:
        raise UsageError("use: aios fleet, aios fleet init URL, or aios fleet join URL")
    view = control.call(home, "fleet")
    if args.json:
        return print_json(view)
    out(_devices_table(view))
    return EXIT_OK


def _devices_table(view: dict) -> str:
    color = show.use_color(sys.stdout)
    holders: dict[str, list[str]] = {}
    for lease in view["leases"]:
        holders.setdefault(lease["device"], []).append(f"{lease['job']}#{lease['epoch']}")
    rows = []
    for device in view["devices"]:
        alive = device["age"] is not None and device["age"] < view["ttl"]
        name = device["id"] + (" (this)" if device["id"] == view["device"] else "")
        rows.append([(name, "bold"), ("up" if alive else "down", "green" if alive else "red"),
                     (show.duration(device["age"]) + " ago" if device["age"] is not None else "-", None),
                     (",".join(device["tags"]) or "-", None), (device["version"] or "-", None),
                     (f"{device['load']:.2f}", None), (", ".join(holders.get(device["id"], [])) or "-", None),
                     (", ".join(device["running"]) or "-", "dim")])
    table = show.table(["DEVICE", "STATE", "HEARTBEAT", "TAGS", "VERSION", "LOAD", "LEASES", "RUNNING"], rows, color)
    return f"{table}\nfleet jobs version {view['version']}; lease ttl {view['ttl']:g} s"


# ---------------------------------------------------------------- moving onto a fleet

def _enter(home: str, url: str, password_file: str | None, publish: bool) -> int:
    """Point this home at the fleet's database: the home's secret and its queued triggers
    move with it (acknowledged work is never left behind); the history stays in
    orchestrator.db. A running daemon re-executes onto the new store, its jobs running on."""
    from pathlib import Path

    from ..config import load
    from ..store import is_postgres_url, open_store

    if not is_postgres_url(url):
        raise UsageError(f"{url!r} is not a postgresql:// URL")
    fleet = open_store(url, load(Path(home)).settings.device_id, password_file=password_file)
    moved = _move_queue(home, fleet)
    _write_store_url(home, url, password_file)
    if publish:
        cfg = load(Path(home))
        fleet.publish_jobs({n: t for n, t in cfg.sources.items() if t.get("local") is not True}, cfg.settings.device_id)
    fleet.close()
    out(f"aios: {home} now uses {url.split('?')[0]}; {moved} queued trigger(s) moved"
        + ("; its jobs published as the fleet's" if publish else "; it runs the fleet's published jobs"))
    from .lifecycle import cmd_reexec

    try:
        return cmd_reexec(None, home)   # onto the new store; the jobs keep running and are adopted
    except control.DaemonNotRunning:
        out("aios: no daemon running; `aios up -d` starts it on the fleet")
        return EXIT_OK


def _move_queue(home: str, fleet) -> int:
    """The home's secret and its queued triggers, from orchestrator.db into the fleet."""
    from ..store import open_store

    path = os.path.join(home, "orchestrator.db")
    if not os.path.exists(path):
        return 0
    local = open_store(path, fleet.device)
    try:
        secret = local.meta_get("run_secret")
        if secret and not fleet.meta_get("run_secret"):
            fleet.meta_set("run_secret", secret)
        elif secret and fleet.meta_get("run_secret") != secret:
            raise AiosError("this home's jobs carry tokens of another secret than the fleet's; stop them first "
                            "(`aios down`), then join")
        queued = local.pending_triggers(None, 1_000_000)
        with fleet.batch(durable=True):
            for trigger in queued:
                fleet.add_trigger(trigger.job, trigger.args, trigger.kwargs, trigger.created)
        for trigger in queued:
            local.finish_trigger(trigger.id, "moved to the fleet's database", time.time())
        return len(queued)
    finally:
        local.close()


def _write_store_url(home: str, url: str, password_file: str | None) -> None:
    """[store] url (and password_file) in aios.toml, the rest of the file as it was."""
    import re
    from pathlib import Path

    from ..config import CONFIG_FILE, write_config

    path = Path(home) / CONFIG_FILE
    text = path.read_text(encoding="utf-8")
    lines = [f"url = {_quoted(url)}"] + ([f"password_file = {_quoted(password_file)}"] if password_file else [])
    section = re.search(r"(?m)^\[store\][^\n]*\n(?:(?!\[)[^\n]*\n?)*", text)
    if section:
        kept = [line for line in section.group(0).splitlines()[1:]
                if not re.match(r"\s*(url|password_file)\s*=", line)]
        text = text[:section.start()] + "\n".join(["[store]"] + lines + kept) + "\n" + text[section.end():]
    else:
        text = "[store]\n" + "\n".join(lines) + "\n\n" + text
    write_config(Path(home), text, backup=True)


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
