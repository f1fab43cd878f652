"""Configuration: where AIOS_HOME is, aios.toml -> job specs and device settings, the
first start's files (aios.scaffold), a small TOML writer for job tables, and the local
time zone.

A bad job is reported in `Config.errors` and skipped; only a file that cannot be used
at all (TOML syntax, a job name defined twice, a bad setting, text no UTF-8 file can
hold) raises `ConfigError`. User programs are checked with `ast`, never imported. What
ties jobs together (hooks, `after`, the copies of `instances`) is checked and expanded
by `aios.jobset`. aios.toml, its backup and the cache are read and replaced without
following a link (aios.homefs). Imports `aios.spec`, `aios.jobtable` (each job table),
`aios.home`, `aios.jobset` and `aios.posixtz` from aios, and when used `aios.launch` (a
job's user and groups exist), `aios.homefs` and `aios.scaffold`; tomllib, ast, difflib,
socket and zoneinfo load only when used.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from . import jobset
from .jobtable import parse_job
from .spec import (NAME_RE, AiosError, JobSpec, Settings, SpecError, factory, parse_duration, record, replace,
                   show_value)

__all__ = ["ConfigError", "TimeZoneError", "Config", "load", "write_default", "write_config",
           "require_valid", "with_fleet", "dump_toml", "local_zone", "CONFIG_FILE", "PROGRAMS_DIR"]

from .home import CONFIG_FILE

PROGRAMS_DIR = "Programs"
_SECTIONS = ("device", "jobs", "logs", "python", "retention", "store", "web")
_SETTING_KEYS = {"device": ("id", "tags"), "web": ("host", "port", "token"), "retention": ("days",),
                 "logs": ("max_size", "keep", "timestamps"), "store": ("url", "password_file", "lease_ttl"),
                 "python": ("preload", "env", "start")}
STORE_ENV = ("AIOS_DB", "AIOS_DB_PASSWORD_FILE")   # override [store] url and password_file


class ConfigError(AiosError):
    """aios.toml cannot be used; fix the line or key named in the message."""


@record
class Config:
    """What load() read from one aios.toml."""

    home: Path
    settings: Settings
    specs: dict[str, JobSpec]       # valid jobs, in file order
    tables: dict[str, dict]         # their [jobs.NAME] tables as plain JSON data
    errors: list[str]               # one formatted line per skipped job or unknown table
    invalid: dict = factory(dict)   # name -> the error of each job skipped for its table
    sources: dict = factory(dict)   # the valid tables as written: a job with instances by its own name


# ---------------------------------------------------------------- load

def load(home: Path, text: str | None = None, *, cache: bool = False) -> Config:
    """Read home/aios.toml (or `text`, as if it were that file) into a Config. Raises
    ConfigError if the file is unusable. With `cache`, the functions found in each
    program file by the last load are reused while the file is unchanged (the daemon
    starts without parsing Python), and the cache is refreshed."""
    home = Path(home).absolute()
    source = _read(home) if text is None else _utf8_text(text)
    data = _parse_toml(source)
    errors = _unknown_sections(data)
    settings = _settings(data, errors)
    jobs = data.get("jobs", {})
    if not isinstance(jobs, dict):
        raise ConfigError(f"{CONFIG_FILE}: jobs must be tables like [jobs.backup], got jobs = {show_value(jobs)}")
    invalid: dict[str, str] = {}
    programs = ProgramCache(home) if cache and text is None else None
    specs, tables = _load_jobs(home, jobs, _job_header_lines(source), errors, invalid, programs)
    if programs is not None:
        programs.save()
    jobset.check(specs, tables, jobs, errors, invalid)
    checked = tables
    specs, tables = jobset.expand(specs, tables, errors, invalid)
    return Config(home=home, settings=settings, specs=specs, tables=tables, errors=errors, invalid=invalid,
                  sources={name: table for name, table in checked.items() if name not in invalid})


# ---------------------------------------------------------------- the cache of program checks
# What a load learns from parsing each program file (its top-level functions), kept in
# one JSON file beside aios.toml and reused while the file's stat is the same. Jobs,
# commands and settings always come from aios.toml itself: an edited cache can at most
# claim a function a program lacks, which the runner then reports when the job starts.

CACHE_FILE = ".aios.toml.cache"


def _stat(path) -> list | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino]


class ProgramCache:
    """The top-level functions of program files, by path and stat."""

    def __init__(self, home: Path):
        self.home, self.used, self.changed = home, {}, False
        self.saved = self._read()

    def functions(self, path: Path, where: str) -> list[str]:
        key, stat = str(path), _stat(path)
        hit = self.saved.get(key)
        if stat is not None and isinstance(hit, list) and len(hit) == 2 and hit[0] == stat:
            found = [name for name in hit[1] if isinstance(name, str)]
        else:
            found, self.changed = _top_level_functions(path, where), True
        self.used[key] = [stat, found]
        return found

    def save(self) -> None:
        if not self.changed and self.used.keys() == self.saved.keys():
            return
        import json

        from .homefs import replace_file

        data = json.dumps({"code": _code_key(), "programs": self.used}).encode()
        try:
            replace_file(self.home, CACHE_FILE, data, 0o600, sync=False, group_of_old=False)
        except OSError:
            pass  # a read-only home only loses the speed-up

    def _read(self) -> dict:
        import json

        from .homefs import open_below

        try:
            fd = open_below(self.home, CACHE_FILE, os.O_RDONLY)
        except OSError:
            return {}
        try:
            with open(fd, encoding="utf-8") as f:
                saved = json.load(f)
            return saved["programs"] if saved["code"] == _code_key() and isinstance(saved["programs"], dict) else {}
        except (OSError, ValueError, KeyError, TypeError):
            return {}


def _code_key() -> list:
    from . import __version__

    return [__version__, _stat(__file__)]


def _read(home: Path) -> str:
    from .homefs import UnsafePath, open_below

    path = home / CONFIG_FILE
    try:
        fd = open_below(home, CONFIG_FILE, os.O_RDONLY)
        with open(fd, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist; start AIOS once to write the default") from None
    except UnsafePath as exc:
        raise ConfigError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} cannot be read: {exc}") from None


def _utf8_text(text: str) -> str:
    """`text` if it can be written as the UTF-8 file aios.toml is (a client's text may
    hold a lone surrogate, which no file can)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        line = text.count("\n", 0, exc.start) + 1
        raise ConfigError(f"{CONFIG_FILE} line {line}: {text[exc.start]!r} is a lone surrogate, not a character "
                          "UTF-8 can hold; remove it") from None
    return text


def _parse_toml(text: str) -> dict:
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        try:
            import tomli as tomllib
        except ImportError:
            import sys

            raise ConfigError(f"reading {CONFIG_FILE} on Python {sys.version.split()[0]} needs the tomli package: "
                              f"{sys.executable} -m pip install tomli (Python 3.11 and later have it built in)"
                              ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(str(exc), text) from None


def _syntax_error(message: str, text: str) -> ConfigError:
    """Reword tomllib's 'Expected ... (at line 7, column 5)' as 'aios.toml line 7: expected ...'."""
    match = re.fullmatch(r"(.*) \(at (?:line (\d+), column \d+|end of document)\)", message, re.S)
    what, line = (match[1], int(match[2] or len(text.splitlines()) or 1)) if match else (message, 0)
    twice = _defined_twice(text, line) if what.startswith("Cannot declare") else None
    if twice:
        return ConfigError(twice)
    what = what.replace(" in a key/value pair", "")
    what = re.sub(r"\(((?:'[^']*'(?:, )?)+),?\)",
                  lambda m: "[" + ".".join(re.findall(r"'([^']*)'", m[1])) + "]", what)
    where = f"{CONFIG_FILE} line {line}" if line else CONFIG_FILE
    return ConfigError(f"{where}: {what[:1].lower()}{what[1:]}")


_JOB_HEADER = re.compile(
    r"^[ \t]*\[[ \t]*jobs[ \t]*\.[ \t]*(?:([A-Za-z0-9_-]+)|\"([^\"\\\n]*)\"|'([^'\n]*)')"
    r"[ \t]*\][ \t]*(?:#.*)?$", re.M)


def _job_header_lines(text: str) -> dict[str, list[int]]:
    """Line numbers of each `[jobs.NAME]` header, by NAME as written."""
    lines: dict[str, list[int]] = {}
    for match in _JOB_HEADER.finditer(text):
        name = match[1] or match[2] or match[3] or ""
        lines.setdefault(name, []).append(text.count("\n", 0, match.start()) + 1)
    return lines


def _defined_twice(text: str, line: int) -> str | None:
    for name, found in _job_header_lines(text).items():
        if len(found) > 1 and line in found[1:]:
            return f"{CONFIG_FILE} line {line}: job {name!r} is defined twice (first at line {found[0]})"
    return None


def _unknown_sections(data: dict) -> list[str]:
    errors = []
    for key, value in data.items():
        if key in _SECTIONS:
            continue
        if isinstance(value, dict) and "type" in value:
            hint = f" (did you mean [jobs.{key}]?)"
        else:
            hint = _suggest(key, _SECTIONS, "[{}]")
        errors.append(f"{CONFIG_FILE}: unknown table [{key}]{hint}; "
                      "use [device], [web], [logs], [retention], [store], [python] or [jobs.NAME]")
    return errors


def _suggest(word: str, choices, form: str = "{!r}") -> str:
    import difflib  # only on the error path

    match = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {form.format(match[0])}?)" if match else ""


# ---------------------------------------------------------------- settings

def _settings(data: dict, errors: list[str]) -> Settings:
    device, web, logs, retention, store, python = (_section(data, name, errors) for name in
                                                   ("device", "web", "logs", "retention", "store", "python"))
    return Settings(
        **_python(python),
        device_id=_device_id(device),
        tags=_device_tags(device),
        web_host=_setting(web, "web", "host", str, "127.0.0.1", "a host name or address"),
        web_port=_port(web),
        web_token=_setting(web, "web", "token", str, None, "a non-empty string"),
        log_max_bytes=_size(logs),
        log_keep=_keep(logs),
        log_timestamps=_timestamps(logs),
        retention_days=_retention(retention),
        store_url=_store_url(store),
        lease_ttl=_lease_ttl(store),
        store_password_file=os.environ.get("AIOS_DB_PASSWORD_FILE") or _setting(
            store, "store", "password_file", str, None, "the path of a file holding only the password"),
    )


def _python(python: dict) -> dict:
    """[python]: what program jobs' zygotes preload, variables of every program job, and
    how program jobs start unless they say."""
    from .jobtable import parse_env, parse_preload, parse_start

    where = f"{CONFIG_FILE}: [python]"
    try:
        return {"python_preload": parse_preload(f"{where} preload", python.get("preload", [])),
                "python_env": parse_env(where, python.get("env", {})),
                "python_start": parse_start(f"{where} start", python.get("start", "zygote"))}
    except SpecError as exc:
        raise ConfigError(str(exc)) from None


def _section(data: dict, name: str, errors: list[str]) -> dict:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{CONFIG_FILE}: {name} must be a table [{name}], got {name} = {show_value(table)}")
    for key in table:
        if key not in _SETTING_KEYS[name]:
            errors.append(f"{CONFIG_FILE}: unknown key {key!r} in [{name}]"
                          f"{_suggest(key, _SETTING_KEYS[name])}; use "
                          + ", ".join(_SETTING_KEYS[name]))
    return table


def _setting(table: dict, section: str, key: str, kind: type, default, accepted: str):
    value = table.get(key, default)
    if value is not default and (not isinstance(value, kind) or isinstance(value, bool)
                                 or value == ""):
        raise ConfigError(f"{CONFIG_FILE}: [{section}] {key} = {show_value(value)}; use {accepted}")
    return value


def _device_id(device: dict) -> str:
    env = os.environ.get("DEVICE_ID", "").strip()
    if env:
        return env
    value = _setting(device, "device", "id", str, None, "a non-empty string such as \"lab-pc\"")
    return value or os.uname().nodename


def _device_tags(device: dict) -> frozenset:
    if "DEVICE_TAGS" in os.environ:
        tags = [t.strip() for t in os.environ["DEVICE_TAGS"].split(",") if t.strip()]
        where = "DEVICE_TAGS"
    else:
        tags = device.get("tags", [])
        where = f"{CONFIG_FILE}: [device] tags"
    if not isinstance(tags, list) or not all(isinstance(t, str) and NAME_RE.fullmatch(t) for t in tags):
        raise ConfigError(f"{where} = {show_value(tags)}: use tag names (letters, digits, '_', '.', '-'), "
                          "as a list like [\"gpu\", \"lab\"] or comma-separated in DEVICE_TAGS")
    return frozenset(tags)


def _store_url(store: dict) -> str | None:
    """AIOS_DB, else [store] url: a postgresql:// URL (a fleet), a sqlite:/// URL or a file
    path. A password never goes in it (the file is not secret; the URL may be shown)."""
    env = os.environ.get("AIOS_DB", "").strip()
    where = "AIOS_DB" if env else f"{CONFIG_FILE}: [store] url"
    url = env or _setting(store, "store", "url", str, None,
                          "a postgresql://user@host/db URL or a SQLite file path")
    if url is None:
        return None
    if any(ord(c) < 32 or c == "\x7f" for c in url):
        raise ConfigError(f"{where} holds control characters; write the URL on one line")
    if url.startswith(("postgres://", "postgresql://")) and _has_password(url):
        raise ConfigError(f"{where} holds a password; remove it from the URL and put it in a file "
                          "only you can read, named by [store] password_file (or "
                          "AIOS_DB_PASSWORD_FILE), or in AIOS_DB_PASSWORD")
    return url


def _lease_ttl(store: dict) -> float:
    """[store] lease_ttl: how long a fleet job's lease holds without renewal (2 s to 5 min);
    a dead holder's jobs move within it."""
    value = store.get("lease_ttl", 10)
    try:
        seconds = parse_duration(value, f"{CONFIG_FILE}: [store] lease_ttl")
    except SpecError as exc:
        raise ConfigError(str(exc)) from None
    if not 2 <= seconds <= 300:
        raise ConfigError(f"{CONFIG_FILE}: [store] lease_ttl = {show_value(value)}; use from \"2s\" to \"5m\"")
    return seconds


def _has_password(url: str) -> bool:
    from urllib.parse import parse_qsl, urlsplit

    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    return bool(userinfo.partition(":")[2]) or any(key == "password" for key, _ in parse_qsl(parts.query))


def _port(web: dict) -> int:
    port = _setting(web, "web", "port", int, 8787, "a port number from 1 to 65535")
    if not 1 <= port <= 65535:
        raise ConfigError(f"{CONFIG_FILE}: [web] port = {show_value(port)}; use a port number from 1 to 65535")
    return port


def _keep(logs: dict) -> int:
    keep = _setting(logs, "logs", "keep", int, 3, "a number of rotated files from 0 to 100")
    if not 0 <= keep <= 100:
        raise ConfigError(f"{CONFIG_FILE}: [logs] keep = {show_value(keep)}; "
                          "use a number of rotated files from 0 to 100")
    return keep


def _timestamps(logs: dict) -> str:
    """How job log lines are stamped; a home without the setting keeps raw logs (new homes
    get "local" from default.toml)."""
    value = logs.get("timestamps", "none")
    if value not in ("local", "utc", "none"):
        raise ConfigError(f"{CONFIG_FILE}: [logs] timestamps = {show_value(value)}; use \"local\" (each line "
                          "stamped with local time and its stream), \"utc\", or \"none\" (raw output)")
    return value


def _retention(retention: dict) -> float:
    days = retention.get("days", 30)
    if isinstance(days, bool) or not isinstance(days, (int, float)) or not 0 <= days <= 36500:
        raise ConfigError(f"{CONFIG_FILE}: [retention] days = {show_value(days)}; use a number of days "
                          "from 0 (keep everything) to 36500")
    return float(days)


_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}


def _size(logs: dict) -> int:
    value = logs.get("max_size", 10 * 1024 ** 2)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?\s*", value, re.I) \
        if isinstance(value, str) else None
    if match and float(match[1]) > 0:
        return max(1, int(float(match[1]) * _SIZE_UNITS[match[2].lower()]))
    raise ConfigError(f"{CONFIG_FILE}: [logs] max_size = {show_value(value)}; use a number of bytes "
                      "or a size like \"512KB\", \"10MB\", \"1GB\"")


# ---------------------------------------------------------------- jobs

def _load_jobs(home: Path, jobs: dict, header_lines: dict, errors: list[str], invalid: dict,
               programs: ProgramCache | None = None):
    specs: dict[str, JobSpec] = {}
    tables: dict[str, dict] = {}
    seen: dict[str, str] = {}  # lower-case name -> name as first written
    for name, table in jobs.items():
        try:
            _check_unique(name, seen, header_lines)
            table = _plain_table(name, table)
            spec = _check_spec(home, parse_job(name, table), programs)
        except SpecError as exc:
            errors.append(str(exc))
            if isinstance(name, str) and name not in specs:
                invalid[name] = str(exc)
            continue
        specs[name], tables[name] = spec, table
    return specs, tables


def with_fleet(cfg: Config, tables: dict[str, dict]) -> Config:
    """The jobs one device of a fleet runs: the fleet's published job `tables` (as written:
    copies, hooks and `after` are made and checked here, as `load` does), checked against
    this home (its Programs/, its users), with this device's own jobs (local = true in its
    aios.toml), which win a name both have. The settings stay this device's."""
    own = {name: table for name, table in cfg.sources.items() if table.get("local") is True}
    sources = {**{n: t for n, t in tables.items() if n not in own}, **own}
    errors, invalid = [], {}
    specs, plain = _load_jobs(cfg.home, sources, {}, errors, invalid)
    jobset.check(specs, plain, sources, errors, invalid)
    checked = plain
    specs, plain = jobset.expand(specs, plain, errors, invalid)
    errors += [line for line in cfg.errors if line not in errors]
    return Config(home=cfg.home, settings=cfg.settings, specs=specs, tables=plain, errors=errors, invalid=invalid,
                  sources={name: table for name, table in checked.items() if name not in invalid})


def _check_unique(name: str, seen: dict[str, str], header_lines: dict) -> None:
    """Names equal ignoring case collide on case-insensitive file systems (logs/<job>.log)."""
    first = seen.setdefault(name.lower(), name)
    if first == name:
        return
    line, first_line = (header_lines.get(n, [0])[0] for n in (name, first))
    where = f"{CONFIG_FILE} line {line}" if line else CONFIG_FILE
    at = f" at line {first_line}" if first_line else ""
    raise SpecError(f"{where}: job {name!r} is defined twice (first{at} as {first!r}; "
                    "job names must differ in more than letter case)")


def _plain_table(name: str, table: object) -> object:
    """The table as JSON data: TOML times for time/after/before become "HH:MM[:SS]"
    strings; any other TOML date or time is refused (jobs receive JSON values)."""
    if not isinstance(table, dict):
        return table
    from datetime import date, time as Clock

    def plain(key: str, value: object) -> object:
        if isinstance(value, Clock) and key in ("time", "after", "before") and not value.tzinfo:
            return value.isoformat(timespec="seconds" if value.second else "minutes")
        if isinstance(value, (date, Clock)):
            raise SpecError(f"job {name!r}: {key} = {value.isoformat()} is a TOML date or time; "
                            "quote it as a string")
        if isinstance(value, list):
            return [plain(key, item) for item in value]
        if isinstance(value, dict):
            return {k: plain(key, v) for k, v in value.items()}
        return value

    return {key: plain(key, value) for key, value in table.items()}


def _check_spec(home: Path, spec: JobSpec, programs: ProgramCache | None = None) -> JobSpec:
    if spec.user is not None or spec.group is not None or spec.groups:
        from .launch import identity

        identity(spec)      # its user and groups exist, and this daemon may switch to them
    if spec.program:
        _check_program(home, spec, programs)
    if spec.cwd is not None:
        spec = replace(spec, cwd=_check_cwd(home, spec))
    return spec


def _check_program(home: Path, spec: JobSpec, cache: ProgramCache | None) -> None:
    file, func = spec.program.rsplit(":", 1)
    where, shown = f"job {spec.name!r}: program {spec.program!r}", f"{PROGRAMS_DIR}/{file}"
    programs = (home / PROGRAMS_DIR).resolve()
    path = (programs / file).resolve()
    if not path.is_relative_to(programs):
        raise SpecError(f"{where}: {shown} resolves to {path}, outside {PROGRAMS_DIR}/; "
                        f"put the program file itself inside {PROGRAMS_DIR}/")
    if not path.is_file():
        raise SpecError(f"{where}: {shown} does not exist")
    found = (cache.functions if cache else _top_level_functions)(path, f"{where}: {shown}")
    if func not in found:
        raise SpecError(f"{where}: {shown} has no function {func!r} "
                        f"(found: {', '.join(found) or 'no functions'})")


def _top_level_functions(path: Path, where: str) -> list[str]:
    import ast

    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError as exc:
        raise SpecError(f"{where} line {exc.lineno}: {exc.msg}") from None
    except (OSError, ValueError) as exc:
        raise SpecError(f"{where} cannot be read: {exc}") from None
    return [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]


def _check_cwd(home: Path, spec: JobSpec) -> str:
    path = Path(spec.cwd).expanduser()
    path = path if path.is_absolute() else home / path
    if not path.is_dir():
        raise SpecError(f"job {spec.name!r}: cwd {spec.cwd!r} is not an existing folder ({path}); "
                        "relative paths are taken from AIOS_HOME")
    return str(path)


# ---------------------------------------------------------------- writing

def write_default(home: Path) -> None:
    """First start: create home, aios.toml with the seven example jobs unless it exists,
    and Programs/ with any example program not there yet (aios.scaffold)."""
    from .scaffold import write_default as scaffold

    scaffold(Path(home), PROGRAMS_DIR)


def require_valid(cfg: Config) -> None:
    """Refuse a configuration with any error, listing them all (before it replaces aios.toml)."""
    if cfg.errors:
        count = f"{len(cfg.errors)} error{'s' if len(cfg.errors) > 1 else ''}"
        raise ConfigError(f"{count}; {CONFIG_FILE} left as it was:\n  " + "\n  ".join(cfg.errors))


BACKUP_FILE = CONFIG_FILE + ".prev"


def write_config(home: Path, text: str, backup: bool = False) -> None:
    """Replace home/aios.toml by `text` atomically (a crash leaves the old or the new file;
    a link there is replaced, never written through; the new file keeps the old one's
    group); with `backup`, the file it replaces is kept as aios.toml.prev (unless it is
    the same)."""
    from .homefs import replace_file

    if backup:
        try:
            old = _read(Path(home).absolute())
        except ConfigError:
            old = None
        if old is not None and old != text:
            replace_file(home, BACKUP_FILE, old.encode("utf-8"), 0o640)
    replace_file(home, CONFIG_FILE, text.encode("utf-8"), 0o640)


def dump_toml(tables: dict[str, dict]) -> str:
    """`[jobs.NAME]` sections for job tables: tomllib.loads(text)["jobs"] == tables.
    Values: strings, ints, floats, bools, lists, and dicts (as inline tables)."""
    sections = []
    for name, table in tables.items():
        lines = [f"[jobs.{_toml_key(name)}]"]
        lines += [f"{_toml_key(key)} = {_toml_value(value)}" for key, value in table.items()]
        sections.append("\n".join(lines) + "\n")
    return "\n".join(sections)


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
            "\r": "\\r"}


def _toml_key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"TOML keys are strings, not {key!r}")
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def _toml_string(text: str) -> str:
    return '"' + "".join(
        _ESCAPES.get(c) or (f"\\u{ord(c):04x}" if c < " " or c == "\x7f" else c)
        for c in text) + '"'


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)  # floats: "1.5", "1e+16", "inf", "nan" are all TOML
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as TOML")


# ---------------------------------------------------------------- time zone

class TimeZoneError(ConfigError):
    """TZ names no time zone glibc understands; the daemon refuses to start on it."""


def local_zone():
    """The local time zone with its DST rules, exactly as glibc (so `date`) reads TZ:
    unset, /etc/localtime (UTC without it); empty or ":", UTC; otherwise, a leading ':'
    dropped, the zone file at that path (relative ones under $TZDIR, by default
    /usr/share/zoneinfo), else a POSIX rule like JST-9 or EST5EDT,M3.2.0,M11.1.0.
    Anything else (a DST name without rules included) raises TimeZoneError, one line."""
    tz = os.environ.get("TZ")
    if tz is None:
        return _system_zone() or _utc()
    name = tz[1:] if tz.startswith(":") else tz
    if not name:
        return _utc()
    from .posixtz import lacks_dst_rules, rule_zone

    zone = _zone_file(name) or rule_zone(name)
    if zone is None and lacks_dst_rules(name):
        raise TimeZoneError(f"TZ={show_value(tz)} names daylight saving time without its rules (glibc would "
                            "take New York's); add them, e.g. CET-1CEST,M3.5.0,M10.5.0/3, or use e.g. Europe/Berlin")
    if zone is None:
        raise TimeZoneError(f"TZ={show_value(tz)} is not a time zone glibc understands; "
                            "use e.g. Europe/Berlin or a POSIX rule like JST-9")
    return zone


def _zone_file(name: str):
    """The TZif file glibc would read for TZ=name, or None."""
    from zoneinfo import ZoneInfo

    folder = os.environ.get("TZDIR") or "/usr/share/zoneinfo"
    try:
        with open(os.path.join(folder, name), "rb") as source:  # join keeps an absolute name
            return ZoneInfo.from_file(source, key=name)
    except (OSError, ValueError):  # missing, a folder, a NUL byte, not a TZif file
        return None


def _system_zone():
    from zoneinfo import ZoneInfo

    real = os.path.realpath("/etc/localtime")
    if "/zoneinfo/" in real:
        try:
            return ZoneInfo(real.split("/zoneinfo/", 1)[1])
        except (ValueError, KeyError, OSError):
            pass
    try:
        with open("/etc/localtime", "rb") as source:
            return ZoneInfo.from_file(source, key="localtime")
    except (ValueError, OSError):
        return None


def _utc():
    from datetime import timezone

    return timezone.utc
