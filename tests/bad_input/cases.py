"""The bad-input corpus: each case and the exact error it must produce.

CONFIG: an aios.toml (the case's lines, then the good jobs of conftest.BASE), applied to
the live daemon with `{"op": "apply", "text": ...}`. "file" cases make the whole file
unusable; "job" cases make one job invalid: a text with either is refused whole (nothing
changes), and `{"op": "apply", "text": ..., "check": true}` lists a job case's error alone.
`{home}` stands for the daemon's home.

CLI: `aios --home HOME ARGS...` against the live daemon: exit code and exact stderr.

SOCKET: one raw line sent on the control socket and the exact reply line.
"""
from __future__ import annotations

import json

from aios import cli, control

NAME_RULE = "is not valid: use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
KNOWN = "known: prog, svc, svc2, work"
OPS = ", ".join(sorted({*control.COMMANDS, *control.DEFERRED, *control.STREAMING}))   # the protocol's table


def _command_choices() -> str:
    """The `aios` commands as argparse lists them in its usage error."""
    import argparse

    parser = cli._parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return ", ".join(repr(name) for name in commands.choices)


TYPES = "use one of always, daily, interval, random_daily, trigger, idle"

CONFIG = [  # (id, kind, aios.toml lines, error)
    ("toml-syntax", "file", '[jobs.a\ntype = "always"',
     "aios.toml line 1: expected ']' at the end of a table declaration"),
    ("job-defined-twice", "file", '[jobs.a]\ntype = "always"\ncommand = ["true"]\n[jobs.a]\ntype = "always"\n',
     "aios.toml line 4: job 'a' is defined twice (first at line 1)"),
    ("jobs-not-a-table", "file", "jobs = 5",
     "aios.toml: jobs must be tables like [jobs.backup], got jobs = 5"),
    ("web-port-huge", "file", "[web]\nport = 70000",
     "aios.toml: [web] port = 70000; use a port number from 1 to 65535"),
    ("logs-keep-negative", "file", "[logs]\nkeep = -1",
     "aios.toml: [logs] keep = -1; use a number of rotated files from 0 to 100"),
    ("logs-size-words", "file", '[logs]\nmax_size = "lots"',
     "aios.toml: [logs] max_size = 'lots'; use a number of bytes or a size like \"512KB\", \"10MB\", \"1GB\""),
    ("logs-timestamps-words", "file", '[logs]\ntimestamps = "iso8601"',
     "aios.toml: [logs] timestamps = 'iso8601'; use \"local\" (each line stamped with local time and its "
     "stream), \"utc\", or \"none\" (raw output)"),
    ("device-tag-with-space", "file", '[device]\ntags = ["a b"]',
     "aios.toml: [device] tags = ['a b']: use tag names (letters, digits, '_', '.', '-'), as a list like "
     "[\"gpu\", \"lab\"] or comma-separated in DEVICE_TAGS"),
    ("device-not-a-table", "file", 'device = "x"',
     "aios.toml: device must be a table [device], got device = 'x'"),
    ("program-path-traversal", "job", '[jobs.a]\ntype = "always"\nprogram = "../../x.py:f"',
     "job 'a': program '../../x.py:f' must stay inside Programs/ (a relative path without '..')"),
    ("program-absolute-path", "job", '[jobs.a]\ntype = "always"\nprogram = "/etc/x.py:f"',
     "job 'a': program '/etc/x.py:f' must stay inside Programs/ (a relative path without '..')"),
    ("program-symlink-escapes", "job", '[jobs.a]\ntype = "always"\nprogram = "escape.py:main"',
     "job 'a': program 'escape.py:main': Programs/escape.py resolves to /etc/passwd, outside Programs/; "
     "put the program file itself inside Programs/"),
    ("program-symlinked-folder-escapes", "job", '[jobs.a]\ntype = "always"\nprogram = "linked/evil.py:main"',
     "job 'a': program 'linked/evil.py:main': Programs/linked/evil.py resolves to {home}/outside/evil.py, "
     "outside Programs/; put the program file itself inside Programs/"),
    ("program-with-shell-characters", "job", '[jobs.a]\ntype = "always"\nprogram = "ok.py:main;ls"',
     "job 'a': program 'ok.py:main;ls' is not \"file.py:function\" (a file inside Programs/)"),
    ("program-without-function", "job", '[jobs.a]\ntype = "always"\nprogram = "ok.py"',
     "job 'a': program 'ok.py' is not \"file.py:function\" (a file inside Programs/)"),
    ("program-missing-function", "job", '[jobs.a]\ntype = "always"\nprogram = "ok.py:nope"',
     "job 'a': program 'ok.py:nope': Programs/ok.py has no function 'nope' (found: main)"),
    ("program-missing-file", "job", '[jobs.a]\ntype = "always"\nprogram = "nope.py:main"',
     "job 'a': program 'nope.py:main': Programs/nope.py does not exist"),
    ("name-with-slash", "job", '[jobs."a/b"]\ntype = "always"\ncommand = ["true"]',
     f"job name 'a/b' {NAME_RULE}"),
    ("name-with-shell-characters", "job", '[jobs."a;rm -rf ~"]\ntype = "always"\ncommand = ["true"]',
     f"job name 'a;rm -rf ~' {NAME_RULE}"),
    ("name-unicode", "job", '[jobs."jöb"]\ntype = "always"\ncommand = ["true"]',
     f"job name 'jöb' {NAME_RULE}"),
    ("name-dot-dot", "job", '[jobs.".."]\ntype = "always"\ncommand = ["true"]',
     f"job name '..' {NAME_RULE}"),
    ("name-too-long", "job", f'[jobs.{"a" * 65}]\ntype = "always"\ncommand = ["true"]',
     f"job name 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa... {NAME_RULE}"),
    ("type-misspelt", "job", '[jobs.a]\ntype = "alwayz"\ncommand = ["true"]',
     f"job 'a': unknown type 'alwayz' (did you mean 'always'?); {TYPES}"),
    ("type-missing", "job", '[jobs.a]\ncommand = ["true"]',
     f"job 'a': missing field 'type'; {TYPES}"),
    ("type-huge-string", "job", f'[jobs.a]\ntype = "{"x" * 100_000}"\ncommand = ["true"]',
     f"job 'a': unknown type 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...; {TYPES}"),
    ("field-misspelt", "job", '[jobs.a]\ntype = "interval"\nintervall = 5\ncommand = ["true"]',
     "job 'a': unknown field 'intervall' (did you mean 'interval'?)"),
    ("field-wrong-type", "job", '[jobs.a]\ntype = "always"\nretries = "5"\ncommand = ["true"]',
     "job 'a': retries = '5' must be an integer"),
    ("field-huge-integer", "job", '[jobs.a]\ntype = "always"\nretries = 99999999999999999999\ncommand = ["true"]',
     "job 'a': retries = 99999999999999999999 must be an integer from 0 to 1000"),
    ("interval-huge-float", "job", '[jobs.a]\ntype = "interval"\ninterval = 1e300\ncommand = ["true"]',
     "job 'a': interval = 1e+300 must be a number of minutes (or use every = \"30s\")"),
    ("timeout-nan", "job", '[jobs.a]\ntype = "trigger"\ntimeout = nan\ncommand = ["true"]',
     "job 'a': timeout: nan is not a usable duration; use at most a year"),
    ("stop-timeout-negative", "job", '[jobs.a]\ntype = "always"\nstop_timeout = -1\ncommand = ["true"]',
     "job 'a': stop_timeout = -1 must be more than zero and at most a year"),
    ("command-string-without-shell", "job", '[jobs.a]\ntype = "always"\ncommand = "sleep 1; rm -rf /"',
     "job 'a': 'command' is a string; give an argv list like [\"sleep\", \"60\"] or set shell = true"),
    ("command-empty", "job", '[jobs.a]\ntype = "always"\ncommand = []',
     "job 'a': 'command' must be a non-empty list of strings, got []"),
    ("program-and-command", "job", '[jobs.a]\ntype = "always"\ncommand = ["true"]\nprogram = "ok.py:main"',
     "job 'a': give exactly one of 'program' (\"file.py:func\") or 'command' (argv list)"),
    ("time-out-of-range", "job", '[jobs.a]\ntype = "daily"\ntime = "25:00"\ncommand = ["true"]',
     "job 'a': time: '25:00' is not a time of day; use \"HH:MM\" from 00:00 to 23:59"),
    ("time-as-toml-date", "job", '[jobs.a]\ntype = "daily"\ntime = 1979-05-27\ncommand = ["true"]',
     "job 'a': time = 1979-05-27 is a TOML date or time; quote it as a string"),
    ("signal-unknown", "job", '[jobs.a]\ntype = "always"\nstop_signal = "KILLALL"\ncommand = ["true"]',
     "job 'a': stop_signal: 'KILLALL' is not a signal name; use e.g. \"TERM\", \"INT\", \"HUP\", \"QUIT\""),
    ("cwd-missing", "job", '[jobs.a]\ntype = "always"\ncwd = "no/such/dir"\ncommand = ["true"]',
     "job 'a': cwd 'no/such/dir' is not an existing folder ({home}/no/such/dir); relative paths are taken "
     "from AIOS_HOME"),
    ("env-not-strings", "job", '[jobs.a]\ntype = "always"\nenv = { A = 1 }\ncommand = ["true"]',
     "job 'a': env must be a table of string values, like { LANG = \"C.UTF-8\" }"),
    ("field-of-another-type", "job", '[jobs.a]\ntype = "always"\ntimeout = 5\ncommand = ["true"]',
     "job 'a': field 'timeout' does not apply to always jobs"),
    ("window-backwards", "job",
     '[jobs.a]\ntype = "random_daily"\nafter = "18:00"\nbefore = "14:00"\ncommand = ["true"]',
     "job 'a': after = '18:00' is not earlier than before = '14:00'; the window must lie within one day"),
    ("names-differ-in-case-only", "job",
     '[jobs.Tick]\ntype = "trigger"\ncommand = ["true"]\n[jobs.TICK]\ntype = "trigger"\ncommand = ["true"]',
     "aios.toml line 4: job 'TICK' is defined twice (first at line 1 as 'Tick'; job names must differ in more "
     "than letter case)"),
    ("section-misspelt", "job", '[job.a]\ntype = "always"\ncommand = ["true"]',
     "aios.toml: unknown table [job] (did you mean [jobs]?); use [device], [web], [logs], [retention], [store], "
     "[python] or [jobs.NAME]"),
    ("every-zero", "job", '[jobs.a]\ntype = "interval"\nevery = "0s"\ncommand = ["true"]',
     "job 'a': every = '0s' must be more than zero (at least 10ms) and at most a year"),
    ("shell-not-a-bool", "job", '[jobs.a]\ntype = "always"\nshell = "yes"\ncommand = ["true"]',
     "job 'a': shell = 'yes' must be true or false"),
    ("setting-huge-value", "file", "[device]\nid = [" + '"x", ' * 30_000 + "]",
     "aios.toml: [device] id = ['x', 'x', 'x', 'x', 'x', 'x', 'x', '...; use a non-empty string such as \"lab-pc\""),
    ("jobs-huge-value", "file", "jobs = [" + "1, " * 30_000 + "]",
     "aios.toml: jobs must be tables like [jobs.backup], got jobs = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, ..."),
]

CLI = [  # (id, argv, exit code, stderr)
    ("unknown-command", ["frobnicate"], 2,
     "usage: aios [-h] [--version] [--home HOME] COMMAND ...\n"
     "aios: error: argument COMMAND: invalid choice: 'frobnicate' "
     f"(choose from {_command_choices()})\n"),
    ("trigger-unknown-job", ["trigger", "nosuch"], 1, f"aios: no job named 'nosuch' ({KNOWN})\n"),
    ("trigger-always-job", ["trigger", "svc"], 1,
     "aios: job 'svc' is an always job; it cannot be triggered (use restart)\n"),
    ("trigger-kw-without-value", ["trigger", "work", "--kw", "novalue"], 2, "aios: --kw 'novalue': use KEY=VALUE\n"),
    ("trigger-kw-for-command-job", ["trigger", "work", "--kw", "a=1"], 1,
     "aios: job 'work' runs a command, which takes positional arguments only; keyword arguments are for "
     "program jobs\n"),
    ("start-nothing", ["start"], 2,
     "usage: aios [-h] [--version] [--home HOME] COMMAND ...\n"
     "aios: error: start: name one or more jobs, or give --all\n"),
    ("logs-path-traversal", ["logs", "../../etc/passwd"], 2, "aios: '../../etc/passwd' is not a job name\n"),
    ("history-n-not-a-number", ["history", "-n", "abc"], 2,
     "usage: aios history [-h] [-n N] [--json] [job]\naios history: error: argument -n: 'abc' is not a whole number\n"),
    ("logs-n-zero", ["logs", "work", "-n", "0"], 2,
     "usage: aios logs [-h] [-n N] [-f] [--since WHEN] [--until WHEN]\n                 [--grep PATTERN] "
     "[--stderr] [--json]\n                 [job]\naios logs: error: argument -n: 0 is not at least 1\n"),
    ("logs-since-words", ["logs", "--since", "last tuesday"], 2,
     "aios: --since 'last tuesday': use a duration ago (30s, 10m, 2h, 1d), a local time (18:00, 2026-11-29, "
     "\"2026-11-29 18:00\"), today, yesterday or now\n"),
    ("logs-since-surrogate", ["logs", "--since", "10m\udcff"], 2,
     "aios: --since '10m\\udcff': use a duration ago (30s, 10m, 2h, 1d), a local time (18:00, 2026-11-29, "
     "\"2026-11-29 18:00\"), today, yesterday or now\n"),
    ("logs-grep-bad", ["logs", "--grep", "[x"], 2,
     "aios: --grep '[x' is not a regular expression: unterminated character set at position 0\n"),
    ("stop-shell-characters", ["stop", "a;rm -rf /"], 1, f"aios: a;rm -rf /: no job named 'a;rm -rf /' ({KNOWN})\n"),
    ("restart-command-substitution", ["restart", "$(touch X)"], 1,
     f"aios: $(touch X): no job named '$(touch X)' ({KNOWN})\n"),
    ("status-unicode-name", ["status", "jöb"], 1, f"aios: no job named 'jöb' ({KNOWN})\n"),
    ("run-trigger-job", ["run", "work"], 1, "aios: work: job 'work' is a trigger job; use trigger\n"),
    ("add-bad-name", ["add", "bad/name", "--type", "always", "--", "true"], 2,
     f"aios: job name 'bad/name' {NAME_RULE}\n"),
    ("unknown-option", ["trigger", "work", "--bogus"], 2,
     "usage: aios [-h] [--version] [--home HOME] COMMAND ...\naios: error: unrecognized arguments: --bogus "
     "(put -- before arguments that start with -)\n"),
    ("second-daemon", ["up", "-d"], 1, "aios: a daemon (pid {pid}) is already running for {home}\n"),
    ("apply-missing-file", ["apply", "/nonexistent/aios.toml"], 1,
     "aios: cannot read /nonexistent/aios.toml: No such file or directory\n"),
]


def _line(value) -> bytes:
    return json.dumps(value).encode() if not isinstance(value, bytes) else value


def _huge_integer_error() -> str:
    """What the daemon answers to a 5000-digit integer: this Python's own JSON error (its
    wording differs between versions), or the range check where no digit limit exists."""
    try:
        json.loads("9" * 5000)
    except ValueError as exc:
        return f"malformed request: not JSON ({exc}); send one JSON object per line"
    return "op 'history': field 'limit' is out of range (at most 9223372036854775807)"


SOCKET = [  # (id, raw line without its newline, error)
    ("not-json", b"not json", "malformed request: not JSON (Expecting value: line 1 column 1 (char 0)); "
     "send one JSON object per line"),
    ("invalid-utf8", b"\xff\xfe\x00garbage", "malformed request: not JSON (Expecting value: line 1 column 1 "
     "(char 0)); send one JSON object per line"),
    ("unterminated-object", b'{"op": "ping"', "malformed request: not JSON (Expecting ',' delimiter: line 1 "
     "column 14 (char 13)); send one JSON object per line"),
    ("single-quotes", b"{'op': 'ping'}", "malformed request: not JSON (Expecting property name enclosed in "
     "double quotes: line 1 column 2 (char 1)); send one JSON object per line"),
    ("deep-nesting", b"[" * 100_000 + b"]" * 100_000, "malformed request: not JSON (maximum recursion depth "
     "exceeded while decoding a JSON array from a unicode string); send one JSON object per line"),
    ("json-null", b"null", 'malformed request: expected a JSON object like {"op": "status"}'),
    ("json-list", b'["ping"]', 'malformed request: expected a JSON object like {"op": "status"}'),
    ("op-missing", _line({"job": "svc"}), 'malformed request: missing "op" (a string such as "status")'),
    ("op-not-a-string", _line({"op": 5}), 'malformed request: missing "op" (a string such as "status")'),
    ("op-unknown", _line({"op": "frobnicate"}), f"unknown op 'frobnicate'; known ops: {OPS}"),
    ("op-shell-characters", _line({"op": "status; rm -rf /"}), f"unknown op 'status; rm -rf /'; known ops: {OPS}"),
    ("op-huge", _line({"op": "x" * 500_000}), f"unknown op '{'x' * 40}'; known ops: {OPS}"),
    ("job-missing", _line({"op": "start"}), "op 'start': missing field 'job'"),
    ("job-not-a-string", _line({"op": "status", "job": ["svc"]}), "op 'status': field 'job' must be a string"),
    ("job-null", _line({"op": "stop", "job": None}), "op 'stop': field 'job' must be a string"),
    ("job-path-traversal", _line({"op": "start", "job": "../../etc/passwd"}),
     f"no job named '../../etc/passwd' ({KNOWN})"),
    ("job-with-slash", _line({"op": "restart", "job": "svc/../svc"}), f"no job named 'svc/../svc' ({KNOWN})"),
    ("job-command-substitution", _line({"op": "disable", "job": "$(touch X)"}), f"no job named '$(touch X)' ({KNOWN})"),
    ("job-unicode", _line({"op": "stop", "job": "jöb"}), f"no job named 'jöb' ({KNOWN})"),
    ("job-nul", _line({"op": "stop", "job": "svc\x00"}), f"no job named 'svc\\x00' ({KNOWN})"),
    ("job-huge", _line({"op": "trigger", "job": "w" * 100_000}), f"no job named '{'w' * 60}'... ({KNOWN})"),
    ("args-not-a-list", _line({"op": "trigger", "job": "work", "args": {"a": 1}}),
     "op 'trigger': field 'args' must be a list"),
    ("kwargs-not-an-object", _line({"op": "trigger", "job": "prog", "kwargs": []}),
     "op 'trigger': field 'kwargs' must be an object"),
    ("kwargs-for-a-command", _line({"op": "trigger", "job": "work", "kwargs": {"a": 1}}),
     "job 'work' runs a command, which takes positional arguments only; keyword arguments are for program jobs"),
    ("args-too-large", _line({"op": "trigger", "job": "prog", "args": ["x" * 200_000]}),
     "trigger of 'prog': arguments are 200025 bytes as JSON; a program job takes less than 128 KiB (pass a file "
     "path instead)"),
    ("trigger-always-job", _line({"op": "trigger", "job": "svc"}),
     "job 'svc' is an always job; it cannot be triggered (use restart)"),
    ("run-always-job", _line({"op": "run", "job": "svc2"}), "job 'svc2' is an always job; use start or restart"),
    ("limit-a-string", _line({"op": "history", "limit": "10"}), "op 'history': field 'limit' must be an integer"),
    ("limit-a-bool", _line({"op": "history", "limit": True}), "op 'history': field 'limit' must be an integer"),
    ("limit-nan", b'{"op": "history", "limit": NaN}', "op 'history': field 'limit' must be an integer"),
    ("trigger-id-a-float", _line({"op": "wait", "trigger": 1e3}), "op 'wait': field 'trigger' must be an integer"),
    ("trigger-id-negative", _line({"op": "wait", "trigger": -1}), "no trigger with id -1"),
    ("trigger-id-beyond-64-bits", _line({"op": "wait", "trigger": 10 ** 20}),
     "op 'wait': field 'trigger' is out of range (at most 9223372036854775807)"),
    ("after-id-beyond-64-bits", _line({"op": "events", "after_id": -10 ** 30}),
     "op 'events': field 'after_id' is out of range (at most 9223372036854775807)"),
    ("integer-of-5000-digits", b'{"op": "history", "limit": ' + b"9" * 5000 + b"}", _huge_integer_error()),
    ("apply-text-not-a-string", _line({"op": "apply", "text": 5}), "op 'apply': field 'text' must be a string"),
    ("apply-bad-toml", _line({"op": "apply", "text": "[jobs.a\n"}),
     "aios.toml line 1: expected ']' at the end of a table declaration"),
]
