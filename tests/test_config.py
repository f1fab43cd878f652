"""aios.config: AIOS_HOME discovery, aios.toml loading and its error messages, the default
configuration and Programs/, settings from file and environment, dump_toml, local_zone."""
from __future__ import annotations

import os
import socket
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from aios import config
from aios.config import ConfigError, dump_toml, load, local_zone, write_default
from aios.spec import JobType, parse_job

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
    ('[device]\nid = 7\n', "aios.toml: [device] id = 7; use a non-empty string such as \"lab-pc\""),
    ('[device]\ntags = "gpu"\n',
     "aios.toml: [device] tags = 'gpu': use tag names (letters, digits, '_', '.', '-'), as a list "
     "like [\"gpu\", \"lab\"] or comma-separated in DEVICE_TAGS"),
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
     "aios.toml: unknown table [webb] (did you mean [web]?); use [device], [web], [logs] or [jobs.NAME]"),
    ('[job.x]\ntype = "always"\n',
     "aios.toml: unknown table [job] (did you mean [jobs]?); use [device], [web], [logs] or [jobs.NAME]"),
    ('[backup]\ntype = "always"\n',
     "aios.toml: unknown table [backup] (did you mean [jobs.backup]?); use [device], [web], [logs] or "
     "[jobs.NAME]"),
    ('[zzz]\n', "aios.toml: unknown table [zzz]; use [device], [web], [logs] or [jobs.NAME]"),
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
              "env": st.dictionaries(st.from_regex(r"[A-Z_]{1,8}", fullmatch=True), st.text(max_size=10)),
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


# ---------------------------------------------------------------- local_zone

def test_local_zone_from_tz(monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")
    zone = local_zone()
    assert str(zone) == "America/New_York"
    winter = datetime(2024, 1, 15, 12, tzinfo=zone)
    summer = datetime(2024, 7, 15, 12, tzinfo=zone)
    assert winter.utcoffset() == timedelta(hours=-5) and summer.utcoffset() == timedelta(hours=-4)


def test_local_zone_accepts_a_leading_colon(monkeypatch):
    monkeypatch.setenv("TZ", ":Europe/Berlin")
    assert str(local_zone()) == "Europe/Berlin"


def test_local_zone_from_a_file_path(monkeypatch):
    path = "/usr/share/zoneinfo/Australia/Lord_Howe"
    if not os.path.exists(path):
        pytest.skip("no system zoneinfo")
    monkeypatch.setenv("TZ", path)
    zone = local_zone()
    assert datetime(2024, 1, 15, 12, tzinfo=zone).utcoffset() == timedelta(hours=11)


def test_local_zone_ignores_a_tz_that_names_no_zone(monkeypatch):
    monkeypatch.setenv("TZ", "No/Such_Zone")
    zone = local_zone()
    assert datetime(2024, 1, 1, tzinfo=zone).utcoffset() is not None


def test_local_zone_without_tz_is_a_usable_zone():
    zone = local_zone()
    now = datetime.now(timezone.utc).astimezone(zone)
    assert now.utcoffset() is not None


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
