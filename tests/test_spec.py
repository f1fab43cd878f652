"""aios.jobtable.parse_job: one table of valid jobs of every type, one table of every
validation rule with its exact message, and a property: only SpecError ever escapes."""
from __future__ import annotations

import signal
from datetime import time as Clock

import pytest
from hypothesis import given, settings, strategies as st

from aios.cron import parse as parse_cron
from aios.jobtable import check_name, parse_job
from aios.spec import JobType, SpecError, parse_duration

CMD = {"command": ["true"]}
TYPES = "use one of always, daily, interval, random_daily, trigger, idle"
DURATION = "is not a duration; use seconds or e.g. '30s', '5m', '1h30m'"
CLOCK = 'is not a time of day; use "HH:MM" from 00:00 to 23:59'
SIGNAL = 'is not a signal name; use e.g. "TERM", "INT", "HUP", "QUIT"'
EXACTLY_ONE = 'daily jobs need exactly one of time = "HH:MM" or cron = "M H DOM MON DOW"'
DAYS = 'use mon, tue, wed, thu, fri, sat, sun or a range like "mon-fri"'
ZONE = 'use a name like "Europe/Berlin" or "UTC"'
EXECABLE = "every string a job is started with must be exec-able text"
ACCOUNT = 'use a name like "www-data" or a numeric id'
MEMORY = 'must be a size from 1M to 1P, like "512M" or "2G" (or a number of bytes)'
QUOTA = 'must be a percentage of one CPU from "1%" to "100000%", like "50%" or "200%"'


# ---------------------------------------------------------------- valid jobs

VALID = [
    ({"type": "always", **CMD},
     {"type": JobType.ALWAYS, "command": ("true",), "restart": "always", "retries": 5}),
    ({"type": "always", "program": "web.py:main", "restart": "on-failure", "retries": 2,
      "failed_cooldown": "5m", "min_uptime": "100ms", "backoff": 0.5, "backoff_factor": 3,
      "backoff_max": "1m", "stop_signal": "INT", "stop_timeout": "2s", "adopt": False},
     {"program": "web.py:main", "restart": "on-failure", "retries": 2, "failed_cooldown": 300.0,
      "min_uptime": 0.1, "backoff": 0.5, "backoff_factor": 3.0, "backoff_max": 60.0,
      "stop_signal": int(signal.SIGINT), "stop_timeout": 2.0, "adopt": False}),
    ({"type": "daily", "time": "09:00", **CMD},
     {"type": JobType.DAILY, "time": Clock(9, 0), "catch_up": "once", "retries": 0, "timeout": None}),
    ({"type": "daily", "time": "23:59:30", "catch_up": "all", "catch_up_max": 3, "timeout": "1h30m", **CMD},
     {"time": Clock(23, 59, 30), "catch_up": "all", "catch_up_max": 3, "timeout": 5400.0}),
    ({"type": "daily", "time": Clock(7, 5), "catch_up": "skip", **CMD},
     {"time": Clock(7, 5), "catch_up": "skip"}),
    ({"type": "daily", "time": "0:00", **CMD}, {"time": Clock(0, 0), "cron": None, "days": None, "timezone": None}),
    ({"type": "daily", "time": "09:00", "days": ["mon", "Wed", "friday"], **CMD}, {"days": (0, 2, 4)}),
    ({"type": "daily", "time": "09:00", "days": ["mon-fri"], **CMD}, {"days": (0, 1, 2, 3, 4)}),
    ({"type": "daily", "time": "09:00", "days": "sat-sun", **CMD}, {"days": (5, 6)}),
    ({"type": "daily", "time": "09:00", "days": ["fri-mon", "wed"], **CMD}, {"days": (0, 2, 4, 5, 6)}),
    ({"type": "daily", "time": "09:00", "days": ["sun-sat"], **CMD}, {"days": (0, 1, 2, 3, 4, 5, 6)}),
    ({"type": "daily", "time": "09:00", "days": ["tue-tue"], **CMD}, {"days": (1,)}),
    ({"type": "daily", "cron": "*/5 * * * 1-5", **CMD},
     {"time": None, "cron": parse_cron("*/5 * * * 1-5"), "days": None}),
    ({"type": "daily", "cron": "@daily", "timezone": "Europe/Berlin", **CMD},
     {"cron": parse_cron("@daily"), "timezone": "Europe/Berlin"}),
    ({"type": "daily", "time": "09:00", "timezone": "UTC", **CMD}, {"timezone": "UTC"}),
    ({"type": "random_daily", "after": "14:00", "before": "18:00", "timezone": "Asia/Tokyo", **CMD},
     {"timezone": "Asia/Tokyo"}),
    ({"type": "interval", "interval": 30, **CMD}, {"type": JobType.INTERVAL, "interval": 1800.0}),
    ({"type": "interval", "interval": 0.5, **CMD}, {"interval": 30.0}),
    ({"type": "interval", "every": "30s", **CMD}, {"interval": 30.0}),
    ({"type": "interval", "every": "100ms", **CMD}, {"interval": 0.1}),
    ({"type": "interval", "every": "10ms", **CMD}, {"interval": 0.01}),
    ({"type": "interval", "every": 45, **CMD}, {"interval": 45.0}),
    ({"type": "interval", "every": "1h 30m", **CMD}, {"interval": 5400.0}),
    ({"type": "random_daily", "after": "14:00", "before": "18:00", **CMD},
     {"type": JobType.RANDOM_DAILY, "after": Clock(14, 0), "before": Clock(18, 0)}),
    ({"type": "trigger", "program": "llm.py:main", "max_parallel": 4, "timeout": 60, "args": ["a", 1],
      "kwargs": {"model": "small"}},
     {"type": JobType.TRIGGER, "max_parallel": 4, "timeout": 60.0, "args": ("a", 1),
      "kwargs": {"model": "small"}}),
    ({"type": "trigger", **CMD}, {"max_parallel": 1}),
    ({"type": "idle", "idle_after": "10m", "cooldown": "6h", **CMD},
     {"type": JobType.IDLE, "idle_after": 600.0, "cooldown": 21600.0}),
    ({"type": "idle", **CMD}, {"idle_after": 300.0, "cooldown": 3600.0}),
    ({"type": "trigger", "command": "echo $HOME | wc -c", "shell": True},
     {"command": ("echo $HOME | wc -c",), "shell": True}),
    ({"type": "trigger", "program": "tools/sub-dir/job_1.py:run_it"}, {"program": "tools/sub-dir/job_1.py:run_it"}),
    ({"type": "trigger", "tags": ["gpu", "lab-2"], "enabled": False, "priority": -3,
      "env": {"LANG": "C.UTF-8", "EMPTY": ""}, "cwd": "data", **CMD},
     {"tags": ("gpu", "lab-2"), "enabled": False, "priority": -3,
      "env": {"LANG": "C.UTF-8", "EMPTY": ""}, "cwd": "data"}),
    ({"type": "trigger", "stop_signal": "SIGHUP", **CMD}, {"stop_signal": int(signal.SIGHUP)}),
    ({"type": "trigger", "stop_signal": "quit", **CMD}, {"stop_signal": int(signal.SIGQUIT)}),
    ({"type": "trigger", "retries": 1000, "min_uptime": 0, **CMD}, {"retries": 1000, "min_uptime": 0.0}),
]


@pytest.mark.parametrize("table, expected", VALID, ids=[str(i) for i in range(len(VALID))])
def test_valid_jobs(table, expected):
    spec = parse_job("job", table)
    assert spec.name == "job"
    assert {key: getattr(spec, key) for key in expected} == expected


@pytest.mark.parametrize("text, seconds", [
    (5, 5.0), (2.5, 2.5), ("100ms", 0.1), ("30s", 30.0), ("5m", 300.0), ("2h", 7200.0),
    ("1d", 86400.0), ("1h30m", 5400.0), ("1m30s500ms", 90.5), ("1.5s", 1.5), (" 1h 30m ", 5400.0)])
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("name", ["a", "web_server", "A.b-c_9", "9lives", "x" * 64])
def test_valid_names(name):
    assert check_name(name) == name


# ---------------------------------------------------------------- every rule, exact message

def job(type_: str, **fields) -> dict:
    return {"type": type_, **CMD, **fields}


INVALID = [
    # type
    ({"type": "alwayz", **CMD}, f"job 'x': unknown type 'alwayz' (did you mean 'always'?); {TYPES}"),
    ({"type": "intervall", **CMD}, f"job 'x': unknown type 'intervall' (did you mean 'interval'?); {TYPES}"),
    ({"type": "cron", **CMD}, f"job 'x': unknown type 'cron'; {TYPES}"),
    ({"type": 5, **CMD}, f"job 'x': unknown type 5; {TYPES}"),
    (dict(CMD), f"job 'x': missing field 'type'; {TYPES}"),
    ("always", "job 'x': expected a table of fields, got 'always'"),
    # daily
    (job("daily", time="25:00"), f"job 'x': time: '25:00' {CLOCK}"),
    (job("daily", time="24:00"), f"job 'x': time: '24:00' {CLOCK}"),
    (job("daily", time="09:60"), f"job 'x': time: '09:60' {CLOCK}"),
    (job("daily", time="9am"), f"job 'x': time: '9am' {CLOCK}"),
    (job("daily", time=900), f"job 'x': time: 900 {CLOCK}"),
    (job("daily"), f"job 'x': {EXACTLY_ONE}"),
    (job("daily", time="09:00", cron="@daily"), f"job 'x': {EXACTLY_ONE}"),
    (job("daily", cron="* * * *"), "job 'x': cron = '* * * *': expected 5 fields (minute hour day-of-month "
                                   "month day-of-week), got 4; e.g. \"*/5 * * * 1-5\" or \"@daily\""),
    (job("daily", cron="61 * * * *"), "job 'x': cron = '61 * * * *': minute field '61': 61 is out of range; use 0-59"),
    (job("daily", cron="@reboot"), "job 'x': cron = '@reboot': @reboot has no slot here: a program to run when "
                                   "AIOS starts is an always job (restart = \"on-failure\" if it exits when done)"),
    (job("daily", cron=5), "job 'x': cron = 5: use five fields like \"*/5 * * * 1-5\" or a macro like \"@daily\""),
    (job("daily", cron="@daily", days=["mon"]),
     "job 'x': days goes with time; with cron, name the days in its fifth field (e.g. \"0 9 * * mon-fri\")"),
    (job("daily", time="09:00", days=["mon", "fry"]),
     f"job 'x': days: 'fry' is not a day (did you mean 'fri'?); {DAYS}"),
    (job("daily", time="09:00", days=["mon-"]), f"job 'x': days: 'mon-' is not a day; {DAYS}"),
    (job("daily", time="09:00", days=["mon-fri-sat"]), f"job 'x': days: 'mon-fri-sat' is not a day; {DAYS}"),
    (job("daily", time="09:00", days=[1]), f"job 'x': days: 1 is not a day; {DAYS}"),
    (job("daily", time="09:00", days=[]), "job 'x': days = [] must be a list of days like [\"mon\", \"wed-fri\"]"),
    (job("daily", time="09:00", days=5), "job 'x': days = 5 must be a list of days like [\"mon\", \"wed-fri\"]"),
    (job("daily", time="09:00", timezone="Europe/Berln"),
     f"job 'x': timezone = 'Europe/Berln' is not a time zone (did you mean 'Europe/Berlin'?); {ZONE}"),
    (job("daily", time="09:00", timezone="../../etc/passwd"),
     f"job 'x': timezone = '../../etc/passwd' is not a time zone; {ZONE}"),
    (job("daily", time="09:00", timezone="Europe"),
     f"job 'x': timezone = 'Europe' is not a time zone (did you mean 'Europe/Rome'?); {ZONE}"),
    (job("daily", time="09:00", timezone="JST-9"), f"job 'x': timezone = 'JST-9' is not a time zone; {ZONE}"),
    (job("daily", time="09:00", timezone=""), f"job 'x': timezone = '' is not a time zone; {ZONE}"),
    (job("daily", time="09:00", timezone="UTC\x00"),
     f"job 'x': timezone = 'UTC\\x00' is not a time zone (did you mean 'UTC'?); {ZONE}"),
    (job("daily", time="09:00", timezone=1), f"job 'x': timezone = 1 is not a time zone; {ZONE}"),
    (job("interval", every="5s", timezone="UTC"), "job 'x': field 'timezone' does not apply to interval jobs"),
    (job("random_daily", after="1:00", before="2:00", days=["mon"]),
     "job 'x': field 'days' does not apply to random_daily jobs"),
    # random_daily
    (job("random_daily", after="18:00", before="14:00"),
     "job 'x': after = '18:00' is not earlier than before = '14:00'; the window must lie within one day"),
    (job("random_daily", after="14:00", before="14:00"),
     "job 'x': after = '14:00' is not earlier than before = '14:00'; the window must lie within one day"),
    (job("random_daily", after="14:00"),
     "job 'x': random_daily jobs need after = \"HH:MM\" and before = \"HH:MM\""),
    (job("random_daily", after="14:00", before="25:00"), f"job 'x': before: '25:00' {CLOCK}"),
    # interval
    (job("interval", interval=0),
     "job 'x': interval = 0 must be more than zero (at least 10ms) and at most a year"),
    (job("interval", interval=-5),
     "job 'x': interval = -5 must be more than zero (at least 10ms) and at most a year"),
    (job("interval", interval=10 ** 6),
     "job 'x': interval = 1000000 must be more than zero (at least 10ms) and at most a year"),
    (job("interval", interval="5"),
     "job 'x': interval = '5' must be a number of minutes (or use every = \"30s\")"),
    (job("interval", interval=True),
     "job 'x': interval = True must be a number of minutes (or use every = \"30s\")"),
    (job("interval", every="0s"),
     "job 'x': every = '0s' must be more than zero (at least 10ms) and at most a year"),
    (job("interval", every="5ms"),
     "job 'x': every = '5ms' must be more than zero (at least 10ms) and at most a year"),
    (job("interval", every="abc"), f"job 'x': every: 'abc' {DURATION}"),
    (job("interval", every="-5s"), f"job 'x': every: '-5s' {DURATION}"),
    (job("interval"), "job 'x': interval jobs need exactly one of interval = MINUTES or every = \"30s\""),
    (job("interval", interval=5, every="5s"),
     "job 'x': interval jobs need exactly one of interval = MINUTES or every = \"30s\""),
    # program / command
    ({"type": "always", "program": "a.py:main", "command": ["x"]},
     "job 'x': give exactly one of 'program' (\"file.py:func\") or 'command' (argv list)"),
    ({"type": "always"}, "job 'x': give exactly one of 'program' (\"file.py:func\") or 'command' (argv list)"),
    ({"type": "always", "command": "sleep 60"},
     "job 'x': 'command' is a string; give an argv list like [\"sleep\", \"60\"] or set shell = true"),
    ({"type": "always", "command": []}, "job 'x': 'command' must be a non-empty list of strings, got []"),
    ({"type": "always", "command": ["a", 1]},
     "job 'x': 'command' must be a non-empty list of strings, got ['a', 1]"),
    ({"type": "always", "command": ["sleep", "1"], "shell": True},
     "job 'x': with shell = true, 'command' must be one non-empty string"),
    ({"type": "always", "command": "  ", "shell": True},
     "job 'x': with shell = true, 'command' must be one non-empty string"),
    ({"type": "always", "command": ["x"], "shell": "yes"}, "job 'x': shell = 'yes' must be true or false"),
    ({"type": "always", "program": "a.py"},
     "job 'x': program 'a.py' is not \"file.py:function\" (a file inside Programs/)"),
    ({"type": "always", "program": "a.py:1main"},
     "job 'x': program 'a.py:1main' is not \"file.py:function\" (a file inside Programs/)"),
    ({"type": "always", "program": 5}, "job 'x': program 5 is not \"file.py:function\" (a file inside Programs/)"),
    ({"type": "always", "program": "../a.py:main"},
     "job 'x': program '../a.py:main' must stay inside Programs/ (a relative path without '..')"),
    ({"type": "always", "program": "/etc/a.py:main"},
     "job 'x': program '/etc/a.py:main' must stay inside Programs/ (a relative path without '..')"),
    ({"type": "always", "program": "a b.py:main"},
     "job 'x': program 'a b.py:main': use letters, digits, '_', '.', '-' and '/' in the file path"),
    # fields
    (job("always", intervall=5), "job 'x': unknown field 'intervall' (did you mean 'interval'?)"),
    (job("always", tag=["gpu"]), "job 'x': unknown field 'tag' (did you mean 'tags'?)"),
    (job("always", zzz=1), "job 'x': unknown field 'zzz'"),
    (job("always", interval=5), "job 'x': field 'interval' does not apply to always jobs"),
    (job("always", timeout=5), "job 'x': field 'timeout' does not apply to always jobs"),
    (job("daily", time="09:00", restart="always"), "job 'x': field 'restart' does not apply to daily jobs"),
    (job("trigger", time="09:00"), "job 'x': field 'time' does not apply to trigger jobs"),
    (job("idle", max_parallel=2), "job 'x': field 'max_parallel' does not apply to idle jobs"),
    (job("interval", interval=5, idle_after=5), "job 'x': field 'idle_after' does not apply to interval jobs"),
    (job("random_daily", after="1:00", before="2:00", every="5s"),
     "job 'x': field 'every' does not apply to random_daily jobs"),
    # tags, env, plain types
    (job("always", tags="gpu"), "job 'x': tags = 'gpu' must be a list of names like [\"gpu\", \"lab\"]"),
    (job("always", tags=["a b"]), "job 'x': tags = ['a b'] must be a list of names like [\"gpu\", \"lab\"]"),
    (job("always", tags=[1]), "job 'x': tags = [1] must be a list of names like [\"gpu\", \"lab\"]"),
    (job("always", env={"A": 1}), "job 'x': env must be a table of string values, like { LANG = \"C.UTF-8\" }"),
    (job("always", env={"A=B": "1"}), "job 'x': env must be a table of string values, like { LANG = \"C.UTF-8\" }"),
    (job("always", env=["A"]), "job 'x': env must be a table of string values, like { LANG = \"C.UTF-8\" }"),
    (job("always", enabled="yes"), "job 'x': enabled = 'yes' must be true or false"),
    (job("always", priority=1.5), "job 'x': priority = 1.5 must be an integer"),
    (job("always", priority=True), "job 'x': priority = True must be an integer"),
    (job("always", args="a"), "job 'x': args = 'a' must be a list"),
    (job("always", kwargs=[]), "job 'x': kwargs = [] must be a table"),
    (job("always", cwd=5), "job 'x': cwd = 5 must be a string"),
    (job("always", adopt=1), "job 'x': adopt = 1 must be true or false"),
    # retries and restart policy
    (job("always", retries=-1), "job 'x': retries = -1 must be an integer from 0 to 1000"),
    (job("always", retries=1001), "job 'x': retries = 1001 must be an integer from 0 to 1000"),
    (job("always", retries="3"), "job 'x': retries = '3' must be an integer"),
    (job("always", retries=2.0), "job 'x': retries = 2.0 must be an integer"),
    (job("always", restart="never"), "job 'x': restart = 'never'; use \"always\" or \"on-failure\""),
    (job("always", backoff_factor=0.5), "job 'x': backoff_factor = 0.5 must be a number from 1 to 100"),
    (job("always", backoff_factor="2"), "job 'x': backoff_factor = '2' must be a number from 1 to 100"),
    (job("always", backoff="abc"), f"job 'x': backoff: 'abc' {DURATION}"),
    (job("always", backoff=True), "job 'x': backoff: True is not a duration; use seconds or e.g. '30s', '5m'"),
    (job("always", backoff_max="1y"), f"job 'x': backoff_max: '1y' {DURATION}"),
    (job("always", min_uptime=-1), "job 'x': min_uptime = -1 must be zero or more and at most a year"),
    (job("always", failed_cooldown="400d"),
     "job 'x': failed_cooldown = '400d' must be zero or more and at most a year"),
    # signals and stopping
    (job("always", stop_signal="TERMX"), f"job 'x': stop_signal: 'TERMX' {SIGNAL}"),
    (job("always", stop_signal=15), f"job 'x': stop_signal: 15 {SIGNAL}"),
    (job("always", stop_signal="SIG_DFL"), f"job 'x': stop_signal: 'SIG_DFL' {SIGNAL}"),
    (job("always", stop_signal=""), f"job 'x': stop_signal: '' {SIGNAL}"),
    (job("always", stop_timeout="0s"), "job 'x': stop_timeout = '0s' must be more than zero and at most a year"),
    (job("always", stop_timeout=0), "job 'x': stop_timeout = 0 must be more than zero and at most a year"),
    # timeout, catch-up, trigger, idle
    (job("daily", time="09:00", timeout="0s"), "job 'x': timeout = '0s' must be more than zero and at most a year"),
    (job("trigger", timeout=-1), "job 'x': timeout = -1 must be more than zero and at most a year"),
    (job("trigger", timeout="abc"), f"job 'x': timeout: 'abc' {DURATION}"),
    (job("daily", time="09:00", catch_up="never"), "job 'x': catch_up = 'never'; use \"once\", \"skip\" or \"all\""),
    (job("interval", every="1s", catch_up_max=0), "job 'x': catch_up_max = 0 must be an integer from 1 to 1000"),
    (job("trigger", max_parallel=0), "job 'x': max_parallel = 0 must be an integer from 1 to 1000"),
    (job("trigger", max_parallel="2"), "job 'x': max_parallel = '2' must be an integer"),
    (job("idle", idle_after="abc"), f"job 'x': idle_after: 'abc' {DURATION}"),
    (job("idle", idle_after="10"), f"job 'x': idle_after: '10' {DURATION}"),
    (job("idle", cooldown="-1s"), f"job 'x': cooldown: '-1s' {DURATION}"),
    (job("idle", cooldown=-1), "job 'x': cooldown = -1 must be zero or more and at most a year"),
    (job("idle", cooldown="1h30"), f"job 'x': cooldown: '1h30' {DURATION}"),
    # strings a job is started with must be exec-able
    ({"type": "always", "command": ["echo", "a\0b"]}, f"job 'x': command[1] contains a NUL byte; {EXECABLE}"),
    ({"type": "always", "command": ["ec\ud800ho"]},
     f"job 'x': command[0] cannot be encoded for exec: lone surrogate '\\ud800'; {EXECABLE}"),
    ({"type": "always", "command": "echo \0", "shell": True}, f"job 'x': command contains a NUL byte; {EXECABLE}"),
    ({"type": "always", "command": ["echo", "x" * 131072]},
     f"job 'x': command[1] is 131072 bytes; exec takes less than 128 KiB per string; {EXECABLE}"),
    (job("always", env={"LANG": "C\0"}), f"job 'x': env 'LANG' contains a NUL byte; {EXECABLE}"),
    (job("always", env={"L\0": "C"}), f"job 'x': env 'L\\x00' contains a NUL byte; {EXECABLE}"),
    (job("always", env={"LANG": "\udcff\ud800"}),
     f"job 'x': env 'LANG' cannot be encoded for exec: lone surrogate '\\ud800'; {EXECABLE}"),
    (job("always", cwd="/tmp\0"), f"job 'x': cwd contains a NUL byte; {EXECABLE}"),
    (job("trigger", args=["ok", 1, "\0"]), f"job 'x': args[2] contains a NUL byte; {EXECABLE}"),
    # privileges and limits
    (job("always", user="bad user"), f"job 'x': user = 'bad user' is not a user or group; {ACCOUNT}"),
    (job("always", user=-1), f"job 'x': user = -1 is not a user or group; {ACCOUNT}"),
    (job("always", group=True), f"job 'x': group = True is not a user or group; {ACCOUNT}"),
    (job("always", groups="adm"), "job 'x': groups = 'adm' must be a list of at most 64 groups"),
    (job("always", groups=["adm", "-x"]), f"job 'x': groups = '-x' is not a user or group; {ACCOUNT}"),
    (job("always", umask=18), "job 'x': umask = 18 must be an octal string like \"027\""),
    (job("always", umask="0o22"), "job 'x': umask = '0o22' must be an octal string like \"027\""),
    (job("always", umask="888"), "job 'x': umask = '888' must be an octal string like \"027\""),
    (job("always", control="yes"), "job 'x': control = 'yes' must be true or false"),
    (job("always", memory_max="lots"), f"job 'x': memory_max = 'lots' {MEMORY}"),
    (job("always", memory_max="512K"), f"job 'x': memory_max = '512K' {MEMORY}"),
    (job("always", memory_max=2 ** 60), f"job 'x': memory_max = 1152921504606846976 {MEMORY}"),
    (job("always", cpu_quota=0.5), f"job 'x': cpu_quota = 0.5 {QUOTA}"),
    (job("always", cpu_quota="0%"), f"job 'x': cpu_quota = '0%' {QUOTA}"),
    (job("always", cpu_weight=0), "job 'x': cpu_weight = 0 must be an integer from 1 to 10000"),
    (job("always", nice=-21), "job 'x': nice = -21 must be an integer from -20 to 19"),
    (job("always", nofile=10), "job 'x': nofile = 10 must be an integer from 16 to 1048576"),
    (job("always", ioclass="rt"), "job 'x': ioclass = 'rt'; use \"realtime\", \"best-effort\" or \"idle\""),
    (job("always", env_file=".env\0"), f"job 'x': env_file contains a NUL byte; {EXECABLE}"),
    (job("always", env_file=5), "job 'x': env_file = 5 must be a string"),
]


@pytest.mark.parametrize("table, message", INVALID, ids=[str(i) for i in range(len(INVALID))])
def test_invalid_jobs(table, message):
    with pytest.raises(SpecError) as caught:
        parse_job("x", table)
    assert str(caught.value) == message


def test_privileges_and_limits():
    spec = parse_job("x", job("always", user="www-data", group=33, groups=["adm", "1000"], umask="0027",
                              memory_max="1.5G", cpu_quota="150%", cpu_weight=50, nice=-5, nofile=4096,
                              ioclass="best-effort", env_file="conf/app.env"))
    assert (spec.user, spec.group, spec.groups, spec.umask) == ("www-data", "33", ("adm", "1000"), 0o027)
    assert (spec.memory_max, spec.cpu_quota, spec.cpu_weight) == (int(1.5 * 2 ** 30), 1.5, 50)
    assert (spec.nice, spec.nofile, spec.ioclass, spec.env_file) == (-5, 4096, "best-effort", "conf/app.env")
    assert parse_job("x", job("always", memory_max=2 ** 20, user="65534")).memory_max == 2 ** 20
    assert [parse_job("x", job("always", memory_max=m)).memory_max for m in ("100MiB", "2gb", "64 M", "1T")] == [
        100 << 20, 2 << 30, 64 << 20, 1 << 40]
    plain = parse_job("x", job("always"))
    assert (plain.user, plain.groups, plain.umask, plain.memory_max, plain.env_file) == (None, (), None, None, None)


def test_strings_that_exec_takes_are_accepted():
    """Escaped surrogates (undecodable bytes of a file name) and 128 KiB less one byte pass;
    program jobs get their args as JSON, where NUL and surrogates are escaped."""
    spec = parse_job("x", {"type": "always", "command": ["ls", "caf\udce9", "x" * 131071], "env": {"A": ""}})
    assert spec.command[1] == "caf\udce9"
    assert parse_job("x", {"type": "always", "program": "a.py:f", "args": ["\0", "\ud800"]}).args == ("\0", "\ud800")


@pytest.mark.parametrize("name", ["", "-x", ".x", "a b", "x" * 65, "é", 5, None, "a/b"])
def test_invalid_names(name):
    with pytest.raises(SpecError) as caught:
        parse_job(name, {"type": "always", **CMD})
    shown = repr(name) if len(repr(name)) <= 40 else repr(name)[:37] + "..."
    assert str(caught.value) == (
        f"job name {shown} is not valid: use 1-64 letters, digits, '_', '.' or '-', "
        "starting with a letter or digit")


@pytest.mark.parametrize("value", ["", "abc", "5x", "1h30", "-1s", "1.s", True, None, [1]])
def test_bad_durations(value):
    with pytest.raises(SpecError, match="is not a duration"):
        parse_duration(value, "timeout")


# ---------------------------------------------------------------- values TOML allows but no duration is

@pytest.mark.parametrize("field, type_", [("timeout", "trigger"), ("idle_after", "idle"),
                                          ("backoff", "always"), ("stop_timeout", "always")])
def test_nan_durations_are_refused(field, type_):
    with pytest.raises(SpecError, match="nan is not a usable duration"):
        parse_job("x", job(type_, **{field: float("nan")}))


@pytest.mark.parametrize("table", [job("trigger", timeout=10 ** 400), job("interval", interval=10 ** 400)])
def test_huge_integers_are_refused_with_spec_error(table):
    with pytest.raises(SpecError):
        parse_job("x", table)


# ---------------------------------------------------------------- property: only SpecError

FIELDS = ["type", "program", "command", "shell", "args", "kwargs", "tags", "enabled", "priority",
          "env", "cwd", "time", "cron", "days", "timezone", "after", "before", "interval", "every", "catch_up",
          "catch_up_max",
          "idle_after", "cooldown", "max_parallel", "restart", "min_uptime", "retries", "backoff",
          "backoff_factor", "backoff_max", "failed_cooldown", "timeout", "stop_signal",
          "stop_timeout", "adopt", "user", "group", "groups", "umask", "memory_max", "cpu_quota", "cpu_weight",
          "nice", "nofile", "ioclass", "env_file"]
_scalars = (st.none() | st.booleans() | st.integers(-2 ** 63, 2 ** 63 - 1) | st.floats() | st.text(max_size=12)
            | st.sampled_from(["always", "daily", "interval", "random_daily", "trigger", "idle", "09:00",
                               "25:00", "30s", "1h30m", "0s", "TERM", "a.py:main", "../a.py:main", "once",
                               "*/5 * * * 1-5", "@daily", "@reboot", "61 * * * *", "mon-fri", "fri", "Europe/Berlin",
                               "Europe", "../x"])
            | st.times())
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)
_keys = st.sampled_from(FIELDS) | st.text(max_size=10)


@given(st.one_of(st.text(max_size=10), st.from_regex(r"[a-z][a-z_]{0,8}", fullmatch=True)),
       st.dictionaries(_keys, _values, max_size=8) | _values)
@settings(max_examples=500, deadline=None)
def test_parse_job_raises_only_spec_error(name, table):
    try:
        parse_job(name, table)
    except SpecError:
        pass


@given(st.sampled_from(["always", "daily", "interval", "random_daily", "trigger", "idle"]),
       st.sampled_from(["program", "command"]),
       st.dictionaries(st.sampled_from(FIELDS[3:]), _values, max_size=5))
@settings(max_examples=500, deadline=None)
def test_parse_job_raises_only_spec_error_for_typed_tables(type_, how, fields):
    table = {"type": type_, how: "a.py:main" if how == "program" else ["true"], **fields}
    try:
        spec = parse_job("job", table)
    except SpecError:
        return
    assert spec.type.value == type_
