"""aios.config: AIOS_HOME discovery, aios.toml loading and its error messages, the default
configuration and Programs/, settings from file and environment, dump_toml, local_zone."""
from __future__ import annotations

import os
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from aios import config
from aios.config import ConfigError, dump_toml, load, local_zone, write_default
from aios.jobtable import parse_job
from aios.spec import JobType

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

DEFAULT_JOBS = ["web_server", "stock_monitor", "morning_report", "random_check", "backup",
                "llm_processor", "idle_task"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("AIOS_HOME", "DEVICE_ID", "DEVICE_TAGS", "TZ"):
        monkeypatch.delenv(name, raising=False)


def home_with(tmp_path: Path, text: str, programs: dict[str, str] | None = None) -> Path:
    (tmp_path / "aios.toml").write_text(text, encoding="utf-8")
    (tmp_path / "Programs").mkdir(exist_ok=True)
    for name, source in (programs or {}).items():
        (tmp_path / "Programs" / name).write_text(source, encoding="utf-8")
    return tmp_path


def load_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(home_with(tmp_path, text))
    return str(caught.value)


def job_errors(tmp_path: Path, text: str, programs: dict[str, str] | None = None) -> list[str]:
    return load(home_with(tmp_path, text, programs)).errors


# ---------------------------------------------------------------- the default configuration

def test_default_config_loads_with_the_seven_jobs(tmp_path):
    home = tmp_path / "home"
    write_default(home)
    cfg = load(home)
    assert cfg.errors == []
    assert list(cfg.specs) == DEFAULT_JOBS
    assert list(cfg.tables) == DEFAULT_JOBS
    assert cfg.home == home
    assert (home.stat().st_mode & 0o777) == 0o750 & ~_umask()
    types = {name: spec.type for name, spec in cfg.specs.items()}
    assert types == {
        "web_server": JobType.ALWAYS, "stock_monitor": JobType.ALWAYS,
        "morning_report": JobType.DAILY, "random_check": JobType.RANDOM_DAILY,
        "backup": JobType.INTERVAL, "llm_processor": JobType.TRIGGER, "idle_task": JobType.IDLE}
    specs = cfg.specs
    assert specs["stock_monitor"].tags == ("gpu",) and specs["llm_processor"].tags == ("gpu",)
    assert str(specs["morning_report"].time) == "09:00:00"
    assert (str(specs["random_check"].after), str(specs["random_check"].before)) == ("14:00:00", "18:00:00")
    assert specs["backup"].interval == 30 * 60
    assert (specs["idle_task"].idle_after, specs["idle_task"].cooldown) == (600, 6 * 3600)
    assert cfg.settings.log_timestamps == "local"     # a new home stamps its job logs


def test_a_home_without_the_timestamps_setting_keeps_raw_logs(tmp_path):
    assert load(home_with(tmp_path, "[logs]\nkeep = 2\n")).settings.log_timestamps == "none"
    for value in ("local", "utc", "none"):
        text = f'[logs]\ntimestamps = "{value}"\n'
        assert load(home_with(tmp_path, text)).settings.log_timestamps == value


def test_the_default_of_a_first_start_as_root_gives_the_dashboard_a_uid_of_its_own(tmp_path):
    import tomllib

    from aios import scaffold

    assert scaffold.default_text() == (Path(config.__file__).parent / "default.toml").read_text()
    text = scaffold.default_text(62001)
    jobs = tomllib.loads(text)["jobs"]
    assert list(jobs) == DEFAULT_JOBS
    assert (jobs["web_server"]["user"], jobs["web_server"]["control"]) == ("62001", True)
    assert {name: table.get("user") for name, table in jobs.items() if name != "web_server"} == dict.fromkeys(
        DEFAULT_JOBS[1:], "root")
    if os.geteuid() == 0:       # only root may run jobs as another user
        from aios.launch import dashboard_id

        write_default(tmp_path)
        assert (tmp_path / "aios.toml").read_text() == scaffold.default_text(dashboard_id(tmp_path))
        assert load(tmp_path, text).errors == []


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_default_programs_are_copied_and_define_their_functions(tmp_path):
    write_default(tmp_path)
    cfg = load(tmp_path)
    package = Path(config.__file__).parent / "programs"
    for spec in cfg.specs.values():
        file, func = spec.program.split(":")
        copied = tmp_path / "Programs" / file
        assert copied.read_bytes() == (package / file).read_bytes()
        assert func in config._top_level_functions(copied, file)


def test_write_default_never_overwrites_user_files(tmp_path):
    (tmp_path / "Programs").mkdir()
    (tmp_path / "Programs" / "backup.py").write_text("def main():\n    pass  # mine\n")
    (tmp_path / "aios.toml").write_text("# my own\n")
    write_default(tmp_path)
    assert (tmp_path / "Programs" / "backup.py").read_text().endswith("# mine\n")
    assert (tmp_path / "aios.toml").read_text() == "# my own\n"
    assert (tmp_path / "Programs" / "idle_task.py").exists()


def test_load_without_a_file(tmp_path):
    with pytest.raises(ConfigError, match="aios.toml does not exist"):
        load(tmp_path)


# ---------------------------------------------------------------- errors that stop the load

@pytest.mark.parametrize("text, message", [
    ('[jobs.a]\ntype = "always"\ncommand = ["x"]\n\n[jobs.b]\ntype "daily"\n',
     "aios.toml line 6: expected '=' after a key"),
    ('[jobs.a]\ntype = "always"\ncommand = ["x"\n',
     "aios.toml line 3: unclosed array"),
    ('[web]\nport = 1\n[web]\nport = 2\n',
     "aios.toml line 3: cannot declare [web] twice"),
    ('x = \n', "aios.toml line 1: invalid value"),
])
def test_toml_syntax_errors_name_the_line(tmp_path, text, message):
    assert load_error(tmp_path, text) == message


def test_duplicate_job_is_named_with_both_lines(tmp_path):
    text = ('[jobs.backup]\ntype = "interval"\ninterval = 5\ncommand = ["true"]\n\n'
            '[jobs.other]\ntype = "trigger"\ncommand = ["true"]\n\n'
            '# again\n[jobs."backup"]\ntype = "trigger"\ncommand = ["true"]\n')
    assert load_error(tmp_path, text) == "aios.toml line 11: job 'backup' is defined twice (first at line 1)"


def test_job_names_equal_ignoring_case_collide(tmp_path):
    text = ('[jobs.backup]\ntype = "trigger"\ncommand = ["true"]\n'
            '[jobs.Backup]\ntype = "trigger"\ncommand = ["true"]\n')
    cfg = load(home_with(tmp_path, text))
    assert list(cfg.specs) == ["backup"]
    assert cfg.errors == ["aios.toml line 4: job 'Backup' is defined twice (first at line 1 as "
                          "'backup'; job names must differ in more than letter case)"]


@pytest.mark.parametrize("text, message", [
    ('[web]\nport = 0\n', "aios.toml: [web] port = 0; use a port number from 1 to 65535"),
    ('[web]\nport = "80"\n', "aios.toml: [web] port = '80'; use a port number from 1 to 65535"),
    ('[web]\nhost = ""\n', "aios.toml: [web] host = ''; use a host name or address"),
    ('[web]\ntoken = 5\n', "aios.toml: [web] token = 5; use a non-empty string"),
    ('[logs]\nmax_size = "10XB"\n',
     "aios.toml: [logs] max_size = '10XB'; use a number of bytes or a size like \"512KB\", \"10MB\", \"1GB\""),
    ('[logs]\nmax_size = 0\n',
     "aios.toml: [logs] max_size = 0; use a number of bytes or a size like \"512KB\", \"10MB\", \"1GB\""),
    ('[logs]\nkeep = -1\n', "aios.toml: [logs] keep = -1; use a number of rotated files from 0 to 100"),
    ('[logs]\ntimestamps = "iso"\n', "aios.toml: [logs] timestamps = 'iso'; use \"local\" (each line stamped "
     "with local time and its stream), \"utc\", or \"none\" (raw output)"),
    ('[logs]\ntimestamps = true\n', "aios.toml: [logs] timestamps = True; use \"local\" (each line stamped "
     "with local time and its stream), \"utc\", or \"none\" (raw output)"),
    ('[device]\nid = 7\n', "aios.toml: [device] id = 7; use a non-empty string such as \"lab-pc\""),
    ('[device]\ntags = "gpu"\n',
     "aios.toml: [device] tags = 'gpu': use tag names (letters, digits, '_', '.', '-'), as a list "
     "like [\"gpu\", \"lab\"] or comma-separated in DEVICE_TAGS"),
    ('[python]\npreload = "numpy"\n', "aios.toml: [python] preload = 'numpy' must be a list of at most 64 "
     "module names, like [\"numpy\", \"email.parser\"]"),
    ('[python]\nstart = "fork"\n', "aios.toml: [python] start = 'fork'; use \"zygote\" (forked from a preloaded "
     "interpreter) or \"spawn\" (a fresh interpreter each run)"),
    ('[python]\nenv = { A = 1 }\n', "aios.toml: [python]: env must be a table of string values, like "
     "{ LANG = \"C.UTF-8\" }"),
    ('web = 1\n', "aios.toml: web must be a table [web], got web = 1"),
    ('jobs = 1\n', "aios.toml: jobs must be tables like [jobs.backup], got jobs = 1"),
])
def test_bad_settings_stop_the_load(tmp_path, text, message):
    assert load_error(tmp_path, text) == message


# ---------------------------------------------------------------- bad jobs are skipped

def program_job(program: str, name: str = "x") -> str:
    return f'[jobs.{name}]\ntype = "trigger"\nprogram = "{program}"\n'


def test_missing_program_file(tmp_path):
    assert job_errors(tmp_path, program_job("nope.py:main")) == [
        "job 'x': program 'nope.py:main': Programs/nope.py does not exist"]


def test_missing_function_lists_the_functions_found(tmp_path):
    source = "import os\n\ndef main():\n    pass\n\nclass C:\n    def run(self):\n        pass\n\n" \
             "def prune(days=3):\n    pass\n\nif True:\n    def run():\n        pass\n"
    errors = job_errors(tmp_path, program_job("backup.py:run", "backup"), {"backup.py": source})
    assert errors == ["job 'backup': program 'backup.py:run': Programs/backup.py has no function "
                      "'run' (found: main, prune)"]


def test_program_with_no_functions(tmp_path):
    errors = job_errors(tmp_path, program_job("empty.py:main"), {"empty.py": "X = 1\n"})
    assert errors == ["job 'x': program 'empty.py:main': Programs/empty.py has no function 'main' "
                      "(found: no functions)"]


def test_program_with_a_syntax_error(tmp_path):
    errors = job_errors(tmp_path, program_job("bad.py:main"), {"bad.py": "def main(:\n    pass\n"})
    assert errors == ["job 'x': program 'bad.py:main': Programs/bad.py line 1: invalid syntax"]


def test_program_in_a_subfolder(tmp_path):
    (tmp_path / "Programs" / "tools").mkdir(parents=True)
    cfg = load(home_with(tmp_path, program_job("tools/job.py:main"), {"tools/job.py": "def main(): pass\n"}))
    assert cfg.errors == [] and cfg.specs["x"].program == "tools/job.py:main"


def test_program_is_never_imported(tmp_path):
    marker = tmp_path / "imported"
    source = f"open({str(marker)!r}, 'w').close()\n\ndef main():\n    pass\n"
    cfg = load(home_with(tmp_path, program_job("job.py:main"), {"job.py": source}))
    assert cfg.errors == [] and not marker.exists()


def test_program_escaping_with_dot_dot(tmp_path):
    (tmp_path / "evil.py").write_text("def main(): pass\n")
    assert job_errors(tmp_path, program_job("../evil.py:main")) == [
        "job 'x': program '../evil.py:main' must stay inside Programs/ (a relative path without '..')"]


def test_program_escaping_through_a_symlink(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "evil.py").write_text("def main(): pass\n")
    (tmp_path / "home").mkdir()
    home = home_with(tmp_path / "home", program_job("evil.py:main"))
    (home / "Programs" / "evil.py").symlink_to(outside / "evil.py")
    real = (outside / "evil.py").resolve()
    assert load(home).errors == [
        f"job 'x': program 'evil.py:main': Programs/evil.py resolves to {real}, outside Programs/; "
        "put the program file itself inside Programs/"]


def test_symlink_inside_programs_is_fine(tmp_path):
    home = home_with(tmp_path, program_job("alias.py:main"), {"real.py": "def main(): pass\n"})
    (home / "Programs" / "alias.py").symlink_to("real.py")
    assert load(home).errors == []


def test_symlinked_programs_folder_is_fine(tmp_path):
    elsewhere = tmp_path / "shared"
    elsewhere.mkdir()
    (elsewhere / "job.py").write_text("def main(): pass\n")
    home = tmp_path / "home"
    home.mkdir()
    (home / "aios.toml").write_text(program_job("job.py:main"))
    (home / "Programs").symlink_to(elsewhere)
    assert load(home).errors == []


def test_relative_cwd_is_resolved_against_home(tmp_path):
    (tmp_path / "data").mkdir()
    cfg = load(home_with(tmp_path, '[jobs.x]\ntype = "trigger"\ncommand = ["true"]\ncwd = "data"\n'))
    assert cfg.errors == [] and cfg.specs["x"].cwd == str(tmp_path / "data")
    assert cfg.tables["x"]["cwd"] == "data"


def test_missing_cwd(tmp_path):
    errors = job_errors(tmp_path, '[jobs.x]\ntype = "trigger"\ncommand = ["true"]\ncwd = "nope"\n')
    assert errors == [f"job 'x': cwd 'nope' is not an existing folder ({tmp_path / 'nope'}); "
                      "relative paths are taken from AIOS_HOME"]


def test_absolute_cwd_must_exist(tmp_path):
    errors = job_errors(tmp_path, f'[jobs.x]\ntype = "trigger"\ncommand = ["true"]\ncwd = "{tmp_path}/no"\n')
    assert errors == [f"job 'x': cwd '{tmp_path}/no' is not an existing folder ({tmp_path}/no); "
                      "relative paths are taken from AIOS_HOME"]


@pytest.mark.parametrize("text, message", [
    ('[webb]\nport = 1\n',
     "aios.toml: unknown table [webb] (did you mean [web]?); use [device], [web], [logs], [retention], [store], "
     "[python] or [jobs.NAME]"),
    ('[job.x]\ntype = "always"\n',
     "aios.toml: unknown table [job] (did you mean [jobs]?); use [device], [web], [logs], [retention], [store], "
     "[python] or [jobs.NAME]"),
    ('[backup]\ntype = "always"\n',
     "aios.toml: unknown table [backup] (did you mean [jobs.backup]?); use [device], [web], [logs], "
     "[retention], [store], [python] or [jobs.NAME]"),
    ('[zzz]\n',
     "aios.toml: unknown table [zzz]; use [device], [web], [logs], [retention], [store], [python] or [jobs.NAME]"),
    ('[web]\nprot = 80\n', "aios.toml: unknown key 'prot' in [web] (did you mean 'port'?); use host, port, token"),
])
def test_unknown_tables_and_keys_are_reported_not_fatal(tmp_path, text, message):
    assert job_errors(tmp_path, text) == [message]


def test_one_bad_job_is_skipped_and_the_others_load(tmp_path):
    text = ('[jobs.good1]\ntype = "always"\ncommand = ["sleep", "60"]\n\n'
            '[jobs.bad]\ntype = "daily"\ntime = "25:00"\ncommand = ["true"]\n\n'
            '[jobs.good2]\ntype = "trigger"\nprogram = "job.py:main"\n\n'
            '[jobs.worse]\ntype = "trigger"\nprogram = "job.py:other"\n')
    cfg = load(home_with(tmp_path, text, {"job.py": "def main(*args):\n    print(args)\n"}))
    assert list(cfg.specs) == ["good1", "good2"]
    assert list(cfg.tables) == ["good1", "good2"]
    assert cfg.errors == [
        "job 'bad': time: '25:00' is not a time of day; use \"HH:MM\" from 00:00 to 23:59",
        "job 'worse': program 'job.py:other': Programs/job.py has no function 'other' (found: main)"]


def test_bad_job_name_is_skipped(tmp_path):
    errors = job_errors(tmp_path, '[jobs."-x"]\ntype = "trigger"\ncommand = ["true"]\n')
    assert errors == ["job name '-x' is not valid: use 1-64 letters, digits, '_', '.' or '-', "
                      "starting with a letter or digit"]


def test_toml_times_become_strings_in_tables(tmp_path):
    cfg = load(home_with(tmp_path, '[jobs.x]\ntype = "daily"\ntime = 09:30:00\ncommand = ["true"]\n'))
    assert cfg.errors == [] and cfg.tables["x"]["time"] == "09:30"
    assert str(cfg.specs["x"].time) == "09:30:00"


def test_calendar_fields_load_and_survive_the_cache(tmp_path):
    text = ('[jobs.weekdays]\ntype = "daily"\ncron = "*/5 9-17 * * mon-fri"\ntimezone = "Europe/Berlin"\n'
            'command = ["true"]\n\n'
            '[jobs.mornings]\ntype = "daily"\ntime = 07:30:00\ndays = ["sat-sun"]\ncommand = ["true"]\n\n'
            '[jobs.typo]\ntype = "daily"\ncron = "*/5 * * * mon-fry"\ncommand = ["true"]\n')
    home = home_with(tmp_path, text)
    first, cached = load(home, cache=True), load(home, cache=True)
    for cfg in (first, cached):
        assert list(cfg.specs) == ["weekdays", "mornings"]
        assert cfg.specs["weekdays"].cron.dows == (1, 2, 3, 4, 5) and cfg.specs["weekdays"].timezone == "Europe/Berlin"
        assert cfg.specs["mornings"].days == (5, 6) and cfg.tables["mornings"]["time"] == "07:30"
        assert cfg.errors == ["job 'typo': cron = '*/5 * * * mon-fry': day-of-week field 'mon-fry': 'fry' is not a "
                              "number or a name; use 0-7 or sun..sat"]
    assert cached == first


def test_toml_dates_in_arguments_are_refused(tmp_path):
    errors = job_errors(tmp_path, '[jobs.x]\ntype = "trigger"\ncommand = ["true"]\nargs = [1979-05-27]\n')
    assert errors == ["job 'x': args = 1979-05-27 is a TOML date or time; quote it as a string"]


# ---------------------------------------------------------------- settings

def test_settings_from_the_file(tmp_path):
    text = ('[device]\nid = "lab-pc"\ntags = ["gpu", "lab"]\n[web]\nhost = "0.0.0.0"\nport = 9000\n'
            'token = "s3cret"\n[logs]\nmax_size = "512KB"\nkeep = 5\n')
    s = load(home_with(tmp_path, text)).settings
    assert (s.device_id, s.tags) == ("lab-pc", frozenset({"gpu", "lab"}))
    assert (s.web_host, s.web_port, s.web_token) == ("0.0.0.0", 9000, "s3cret")
    assert (s.log_max_bytes, s.log_keep) == (512 * 1024, 5)


@pytest.mark.parametrize("value, size", [
    ("10MB", 10 * 1024 ** 2), ("10 mb", 10 * 1024 ** 2), ("1GiB", 1024 ** 3), ("2k", 2048),
    ("100", 100), ("1.5MB", 3 * 512 * 1024), (4096, 4096)])
def test_log_sizes(tmp_path, value, size):
    text = f"[logs]\nmax_size = {value!r}\n".replace("'", '"')
    assert load(home_with(tmp_path, text)).settings.log_max_bytes == size


def test_settings_defaults(tmp_path):
    s = load(home_with(tmp_path, "")).settings
    assert s.device_id == socket.gethostname() and s.tags == frozenset()
    assert (s.web_host, s.web_port, s.web_token, s.log_max_bytes, s.log_keep) == (
        "127.0.0.1", 8787, None, 10 * 1024 ** 2, 3)
    assert (s.python_preload, s.python_env, s.python_start) == ((), {}, "zygote")


def test_python_settings_survive_the_cache(tmp_path):
    text = ('[python]\npreload = ["json", "email.parser", "json"]\nenv = { OPENBLAS_NUM_THREADS = "1" }\n'
            'start = "spawn"\n')
    home = home_with(tmp_path, text)
    for _ in range(2):      # parsed, then from .aios.toml.cache
        s = load(home, cache=True).settings
        assert (s.python_preload, s.python_env, s.python_start) == (
            ("json", "email.parser"), {"OPENBLAS_NUM_THREADS": "1"}, "spawn")


# ---------------------------------------------------------------- [store]

def test_store_url_and_password_file_from_the_file(tmp_path, monkeypatch):
    for name in ("AIOS_DB", "AIOS_DB_PASSWORD_FILE"):
        monkeypatch.delenv(name, raising=False)
    assert (load(home_with(tmp_path, "")).settings.store_url is None)
    text = '[store]\nurl = "postgresql://aios@db.lan:5432/fleet"\npassword_file = "~/.aios-db"\n'
    s = load(home_with(tmp_path, text)).settings
    assert (s.store_url, s.store_password_file) == ("postgresql://aios@db.lan:5432/fleet", "~/.aios-db")


def test_store_environment_wins_over_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("AIOS_DB", "postgresql://other@db2/fleet")
    monkeypatch.setenv("AIOS_DB_PASSWORD_FILE", "/run/secrets/db")
    s = load(home_with(tmp_path, '[store]\nurl = "/var/lib/aios/state.db"\n')).settings
    assert (s.store_url, s.store_password_file) == ("postgresql://other@db2/fleet", "/run/secrets/db")


@pytest.mark.parametrize("url", ["postgresql://aios:hunter2-pw@db/fleet",
                                 "postgres://db/fleet?sslmode=require&password=hunter2-pw"])
def test_a_password_in_the_store_url_is_refused_without_showing_it(tmp_path, monkeypatch, url):
    monkeypatch.delenv("AIOS_DB", raising=False)
    message = load_error(tmp_path, f'[store]\nurl = "{url}"\n')
    assert message.startswith("aios.toml: [store] url holds a password; remove it from the URL")
    assert "hunter2" not in message
    monkeypatch.setenv("AIOS_DB", url)
    message = load_error(tmp_path, "")
    assert message.startswith("AIOS_DB holds a password") and "hunter2" not in message


@pytest.mark.parametrize("text, message", [
    ('[store]\nurl = 5\n',
     "aios.toml: [store] url = 5; use a postgresql://user@host/db URL or a SQLite file path"),
    ('[store]\nurl = "postgresql://db/x\\nDROP"\n',
     "aios.toml: [store] url holds control characters; write the URL on one line"),
    ('[store]\npassword_file = ""\n',
     "aios.toml: [store] password_file = ''; use the path of a file holding only the password"),
])
def test_bad_store_settings(tmp_path, monkeypatch, text, message):
    monkeypatch.delenv("AIOS_DB", raising=False)
    monkeypatch.delenv("AIOS_DB_PASSWORD_FILE", raising=False)
    assert load_error(tmp_path, text) == message


def test_unknown_store_key_is_reported(tmp_path):
    assert job_errors(tmp_path, '[store]\npassword = "x"\n') == [
        "aios.toml: unknown key 'password' in [store] (did you mean 'password_file'?); "
        "use url, password_file, lease_ttl"]


def test_environment_wins_over_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("DEVICE_ID", "from-env")
    monkeypatch.setenv("DEVICE_TAGS", " gpu , ,lab,")
    s = load(home_with(tmp_path, '[device]\nid = "from-file"\ntags = ["cpu"]\n')).settings
    assert (s.device_id, s.tags) == ("from-env", frozenset({"gpu", "lab"}))


def test_empty_device_tags_means_no_tags(tmp_path, monkeypatch):
    monkeypatch.setenv("DEVICE_TAGS", "")
    assert load(home_with(tmp_path, '[device]\ntags = ["cpu"]\n')).settings.tags == frozenset()


def test_empty_device_id_falls_back(tmp_path, monkeypatch):
    monkeypatch.setenv("DEVICE_ID", "  ")
    assert load(home_with(tmp_path, '[device]\nid = "from-file"\n')).settings.device_id == "from-file"


def test_bad_device_tags_in_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DEVICE_TAGS", "gpu,a b")
    assert load_error(tmp_path, "") == (
        "DEVICE_TAGS = ['gpu', 'a b']: use tag names (letters, digits, '_', '.', '-'), as a list like "
        "[\"gpu\", \"lab\"] or comma-separated in DEVICE_TAGS")


# ---------------------------------------------------------------- dump_toml

_scalars = (st.text(max_size=20) | st.integers(-2 ** 63, 2 ** 63 - 1) | st.booleans()
            | st.floats(allow_nan=False))
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,15}", fullmatch=True)
_tables = st.dictionaries(_names, st.dictionaries(st.text(min_size=1, max_size=12), _values, max_size=6),
                          max_size=4)


@given(_tables)
@hsettings(max_examples=300, deadline=None)
def test_dump_toml_round_trips(tables):
    assert tomllib.loads(dump_toml(tables)).get("jobs", {}) == tables


_job_tables = st.fixed_dictionaries(
    {"type": st.sampled_from(["always", "trigger"]), "program": st.just("job.py:main")},
    optional={"tags": st.lists(_names, max_size=3),
              "env": st.dictionaries(st.from_regex(r"[A-Z_]{1,8}", fullmatch=True),   # exec-able text
                                     st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                                             max_size=10)),
              "kwargs": st.dictionaries(st.text(min_size=1, max_size=8), _scalars, max_size=3),
              "args": st.lists(_scalars, max_size=3), "priority": st.integers(-10, 10),
              "enabled": st.booleans()})


@given(st.dictionaries(_names, _job_tables, max_size=3))
@hsettings(max_examples=100, deadline=None)
def test_dumped_job_tables_parse_to_the_same_specs(tables):
    parsed = tomllib.loads(dump_toml(tables)).get("jobs", {})
    for name, table in tables.items():
        assert parse_job(name, parsed[name]) == parse_job(name, table)


def test_dump_toml_is_readable():
    text = dump_toml({"my.job": {"type": "trigger", "command": ["echo", "hi \"there\""],
                                 "env": {"LANG": "C.UTF-8"}, "kwargs": {}, "timeout": 1.5}})
    assert text == ('[jobs."my.job"]\ntype = "trigger"\ncommand = ["echo", "hi \\"there\\""]\n'
                    'env = { LANG = "C.UTF-8" }\nkwargs = {}\ntimeout = 1.5\n')


def test_dump_toml_refuses_values_toml_cannot_hold():
    with pytest.raises(TypeError):
        dump_toml({"x": {"cwd": None}})


# ---------------------------------------------------------------- local_zone: the same time as `date`

def _changes(*utc: str) -> list[float]:
    return [datetime.fromisoformat(moment).replace(tzinfo=timezone.utc).timestamp() for moment in utc]


# the 2024 and 2030 DST changes of the EU, the US, New Zealand and Lord Howe, at UTC
_CHANGES = _changes("2024-03-31T01:00", "2024-10-27T01:00", "2024-03-10T07:00", "2024-11-03T06:00",
                    "2030-03-31T01:00", "2030-10-27T01:00", "2030-03-10T07:00", "2030-11-03T06:00",
                    "2024-04-06T14:00", "2024-09-28T14:00", "2024-04-06T15:00", "2024-10-05T15:30")
INSTANTS = sorted({change + delta for change in _CHANGES for delta in (-3601, -1800, -1, 0, 1, 1799, 3600, 7201)}
                  | {0.0, 1e9, 1.72e9, 2.2e9})


def date_says(tz: str | None, instants, tzdir: str | None = None) -> list[str]:
    """What `date` prints for each instant under TZ=tz (None: TZ unset)."""
    import subprocess

    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    env.update({} if tz is None else {"TZ": tz})
    env.update({} if tzdir is None else {"TZDIR": tzdir})
    lines = "".join(f"@{int(ts)}\n" for ts in instants)
    out = subprocess.run(["date", "-f", "-", "+%Y-%m-%d %H:%M:%S %z"], input=lines, env=env,
                         capture_output=True, text=True, check=True).stdout
    return out.splitlines()


def we_say(zone, instants) -> list[str]:
    return [datetime.fromtimestamp(ts, zone).strftime("%Y-%m-%d %H:%M:%S %z") for ts in instants]


SINCE_2007 = [ts for ts in INSTANTS if ts >= 1.2e9]


SAME_AS_DATE = [
    (None, INSTANTS), ("", INSTANTS), (":", INSTANTS),
    (":Europe/Berlin", INSTANTS), ("Europe/Berlin", INSTANTS), ("America/New_York", INSTANTS),
    ("/usr/share/zoneinfo/Australia/Lord_Howe", INSTANTS), ("../zoneinfo/Pacific/Auckland", INSTANTS),
    ("EST5EDT", INSTANTS), ("UTC", INSTANTS),
    # POSIX rules without DST
    ("JST-9", INSTANTS), ("<+0330>-3:30", INSTANTS), ("UTC0", INSTANTS), ("<-03>3", INSTANTS),
    ("GMT+3", INSTANTS), ("JST-9:5", INSTANTS), ("XXX-22", INSTANTS),
    # POSIX rules with DST rules: M, J and zero-based days, times past 24 h and negative
    ("EST5EDT,M3.2.0,M11.1.0", INSTANTS), ("CET-1CEST,M3.5.0,M10.5.0/3", INSTANTS),
    ("<+1030>-10:30<+11>-11,M10.1.0,M4.1.0", INSTANTS), ("NZST-12NZDT,M9.5.0,M4.1.0/3", INSTANTS),
    ("EST5EDT4,M3.2.0/-1,M11.1.0/26", INSTANTS), ("EST5EDT,J60,300", INSTANTS),
    ("AAA3BBB,5/0,300/23", INSTANTS), ("AAA-3BBB,59,J59/1", INSTANTS),
    ("<+0530>-5:30<+0630>-6:30,J91/0:30,J274/23:59:59", INSTANTS), ("XXX-22YYY,M3.2.0,M11.1.0", INSTANTS),
    # only the start rule: glibc ends DST by M11.1.0
    ("EST5EDT,M3.2.0", INSTANTS), ("EST5EDT,M3.2.0,", INSTANTS),
]


@pytest.mark.parametrize("tz, instants", SAME_AS_DATE, ids=[repr(tz) for tz, _ in SAME_AS_DATE])
def test_local_zone_tells_the_same_time_as_date(monkeypatch, tz, instants):
    if tz is None:
        monkeypatch.delenv("TZ", raising=False)
    else:
        monkeypatch.setenv("TZ", tz)
    assert we_say(local_zone(), instants) == date_says(tz, instants)


def test_local_zone_reads_relative_names_under_tzdir(monkeypatch):
    monkeypatch.setenv("TZ", "Berlin")
    monkeypatch.setenv("TZDIR", "/usr/share/zoneinfo/Europe")
    assert we_say(local_zone(), INSTANTS) == date_says("Berlin", INSTANTS, tzdir="/usr/share/zoneinfo/Europe")


def test_local_zone_keeps_the_zone_name(monkeypatch):
    monkeypatch.setenv("TZ", ":Europe/Berlin")
    assert str(local_zone()) == "Europe/Berlin"
    monkeypatch.setenv("TZ", "JST-9")
    assert str(local_zone()) == "JST-9"


REFUSAL = "is not a time zone glibc understands; use e.g. Europe/Berlin or a POSIX rule like JST-9"
# glibc reads these as UTC: no zone file, and no rule (a name of 3+ letters and an offset)
GLIBC_FALLS_BACK_TO_UTC = ["No/Such_Zone", "garbage", "JST", "Europe", "<ab>3", "JS-9", "A-B-9",
                           "foo/../Europe/Berlin", "/etc/passwd", "-9", "<JST-9"]
# glibc reads a part of these, or clamps them: refused rather than half-read
GLIBC_HALF_READS = ["JST-24", "JST-25", "EST-24:59:59", "JST-9:60", "JST-9 ", "JST-9,", "JST-9xyz1,M3.2.0x",
                    "EST5EDT,M13.2.0,M11.1.0", "EST5EDT,,M11.1.0", "EST5EDT,M3.2.0/168,M11.1.0",
                    "EST5EDT,J0,J365", "XXX-23YYY,M3.2.0,M11.1.0", "EST5EDT,M3.2.0,365"]


@pytest.mark.parametrize("tz", GLIBC_FALLS_BACK_TO_UTC + GLIBC_HALF_READS)
def test_local_zone_refuses_what_glibc_does_not_understand(monkeypatch, tz):
    monkeypatch.setenv("TZ", tz)
    with pytest.raises(config.TimeZoneError) as caught:
        local_zone()
    assert str(caught.value) == f"TZ={tz!r} {REFUSAL}"
    assert isinstance(caught.value, ConfigError)


@pytest.mark.parametrize("tz", ["CET-1CEST", "AAA3BBB", "JST-9EDT,", "XXX-22YYY", "EST5EDT4", "<+01>-1<+02>"])
def test_local_zone_refuses_dst_without_its_rules(monkeypatch, tz):
    """glibc would take the transition instants of its posixrules file (New York's) and,
    after 2037, New York's offsets: shown here for CET-1CEST in 2039."""
    monkeypatch.setenv("TZ", tz)
    with pytest.raises(config.TimeZoneError) as caught:
        local_zone()
    assert str(caught.value) == (
        f"TZ={tz!r} names daylight saving time without its rules (glibc would take New York's); "
        "add them, e.g. CET-1CEST,M3.5.0,M10.5.0/3, or use e.g. Europe/Berlin")
    assert date_says("CET-1CEST", [2.2e9]) == ["2039-09-18 19:06:40 -0400"]


@pytest.mark.parametrize("tz", GLIBC_FALLS_BACK_TO_UTC)
def test_glibc_reads_the_refused_values_as_utc(tz):
    """The refusals are what they claim: `date` shows UTC for each of them."""
    assert {line[-5:] for line in date_says(tz, INSTANTS)} == {"+0000"}


@pytest.mark.parametrize("tz, shown", [("\x00", "'\\x00'"), ("x" * 5000, "'" + "x" * 36 + "..."),
                                       ("\udc80abc-1", "'\\udc80abc-1'"), ("Europe/\nBerlin", "'Europe/\\nBerlin'")])
def test_local_zone_refuses_hostile_values_in_one_short_line(monkeypatch, tz, shown):
    monkeypatch.setattr(os, "environ", {**os.environ, "TZ": tz})
    with pytest.raises(config.TimeZoneError) as caught:
        local_zone()
    assert str(caught.value) == f"TZ={shown} {REFUSAL}" and "\n" not in str(caught.value)


# ---------------------------------------------------------------- the cache of the last load

def _cached_home(tmp_path):
    home = tmp_path / "home"
    write_default(home)
    first = load(home, cache=True)
    assert (home / ".aios.toml.cache").exists()
    return home, first


def test_cached_load_gives_the_same_config(tmp_path):
    home, first = _cached_home(tmp_path)
    again = load(home, cache=True)
    assert again == first and again.specs == load(home).specs


def test_cache_is_not_used_once_aios_toml_changes(tmp_path):
    home, _ = _cached_home(tmp_path)
    text = (home / "aios.toml").read_text()
    (home / "aios.toml").write_text(text + '\n[jobs.extra]\ntype = "always"\ncommand = ["sleep", "1"]\n')
    assert "extra" in load(home, cache=True).specs


def test_cache_is_not_used_once_a_program_changes_or_appears(tmp_path):
    home, _ = _cached_home(tmp_path)
    (home / "Programs" / "backup.py").write_text("def other():\n    pass\n")
    broken = load(home, cache=True)
    assert "backup" not in broken.specs
    assert any("backup.py has no function 'main'" in e for e in broken.errors)
    (home / "aios.toml").write_text('[jobs.late]\ntype = "always"\nprogram = "late.py:main"\n')
    assert load(home, cache=True).specs == {}
    (home / "Programs" / "late.py").write_text("def main():\n    pass\n")
    assert list(load(home, cache=True).specs) == ["late"]


def test_cache_is_not_used_once_the_environment_changes(tmp_path, monkeypatch):
    home, first = _cached_home(tmp_path)
    monkeypatch.setenv("DEVICE_TAGS", "gpu")
    monkeypatch.setenv("DEVICE_ID", "elsewhere")
    settings = load(home, cache=True).settings
    assert settings.tags == frozenset({"gpu"}) and settings.device_id == "elsewhere"


def test_a_corrupt_cache_is_ignored(tmp_path):
    home, first = _cached_home(tmp_path)
    (home / ".aios.toml.cache").write_text("{not json")
    assert load(home, cache=True) == first


def test_write_config_keeps_the_file_it_replaces_as_prev(tmp_path):
    config.write_config(tmp_path, "# one\n", backup=True)
    assert not (tmp_path / "aios.toml.prev").exists(), "nothing was replaced"
    config.write_config(tmp_path, "# two\n", backup=True)
    assert (tmp_path / "aios.toml.prev").read_text() == "# one\n"
    config.write_config(tmp_path, "# two\n", backup=True)
    assert (tmp_path / "aios.toml.prev").read_text() == "# one\n", "the same text keeps the older backup"
    config.write_config(tmp_path, "# three\n")
    assert (tmp_path / "aios.toml").read_text() == "# three\n"
    assert (tmp_path / "aios.toml.prev").read_text() == "# one\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aios.toml", "aios.toml.prev"], "no temporary file left"


def test_require_valid_lists_every_error(tmp_path):
    home = home_with(tmp_path, "")
    cfg = load(home, '[jobs.a]\ntype = "daily"\ntime = "25:00"\ncommand = ["true"]\n'
                     '[jobs.b]\ntype = "always"\n[jobs.c]\ntype = "always"\ncommand = ["true"]\n')
    with pytest.raises(ConfigError) as refused:
        config.require_valid(cfg)
    lines = str(refused.value).splitlines()
    assert lines[0] == "2 errors; aios.toml left as it was:"
    assert lines[1].startswith("  job 'a': time:") and lines[2].startswith("  job 'b':") and len(lines) == 3
    config.require_valid(load(home, '[jobs.c]\ntype = "always"\ncommand = ["true"]\n'))


@pytest.mark.parametrize("value, error", [
    ('"1s"', 'aios.toml: [store] lease_ttl = \'1s\'; use from "2s" to "5m"'),
    ("600", 'aios.toml: [store] lease_ttl = 600; use from "2s" to "5m"'),
    ('"soon"', "aios.toml: [store] lease_ttl: 'soon' is not a duration; use seconds or e.g. '30s', '5m', '1h30m'"),
])
def test_a_lease_ttl_outside_2_s_to_5_min_is_refused(tmp_path, value, error):
    with pytest.raises(ConfigError) as raised:
        load(home_with(tmp_path, f"[store]\nlease_ttl = {value}\n"))
    assert str(raised.value) == error


def test_the_fleets_jobs_and_this_devices_own(tmp_path):
    from aios.config import with_fleet

    cfg = load(home_with(tmp_path, """
        [jobs.mine]
        type = "always"
        command = ["sleep", "1"]
        local = true

        [jobs.old]
        type = "always"
        command = ["sleep", "2"]
    """))
    merged = with_fleet(cfg, {"web": {"type": "always", "command": ["web"], "scope": "fleet"},
                              "broken": {"type": "always"}})
    assert list(merged.specs) == ["web", "mine"], "the published jobs, then this device's own"
    assert merged.specs["web"].scope == "fleet" and "old" not in merged.specs
    assert merged.invalid == {"broken": "job 'broken': give exactly one of 'program' (\"file.py:func\") or "
                                        "'command' (argv list)"}


# ---------------------------------------------------------------- across jobs: hooks, after, instances

LINKED = """
[jobs.web]
type = "always"
command = ["sleep", "9"]
instances = 2
on_failure = "notify"

[jobs.notify]
type = "trigger"
command = ["true"]

[jobs.nightly]
type = "daily"
time = "03:00"
command = ["true"]
after = ["notify"]
"""


def test_instances_load_as_copies_and_survive_the_cache(tmp_path):
    home = home_with(tmp_path, LINKED)
    first, cached = load(home, cache=True), load(home, cache=True)
    assert first.errors == [] and list(first.specs) == ["web.0", "web.1", "notify", "nightly"]
    assert cached == first
    assert [(s.instance_of, s.instance, s.on_failure) for s in list(cached.specs.values())[:2]] == [
        ("web", 0, "notify"), ("web", 1, "notify")]
    assert list(cached.sources) == ["web", "notify", "nightly"] and cached.sources["web"]["instances"] == 2


def test_a_cycle_is_refused_at_load_in_one_line_and_the_other_jobs_load(tmp_path):
    errors = job_errors(tmp_path, LINKED + 'on_success = "notify"\n')
    assert errors == ["jobs notify -> nightly -> notify trigger each other in a cycle (nightly after notify; "
                      "nightly on_success = notify); remove one of these links"]
    assert list(load(tmp_path).specs) == ["web.0", "web.1", "notify"]


def test_a_hook_naming_an_always_job_or_no_job_is_refused(tmp_path):
    errors = job_errors(tmp_path, LINKED.replace('on_failure = "notify"', 'on_failure = "notfy"')
                        + 'on_success = "web"\n')
    assert errors == [
        "job 'web': on_failure names 'notfy', which is not a job of aios.toml (jobs: nightly, notify)",
        "job 'nightly': on_success names 'web', an always job; it cannot be triggered: name a trigger job"]
