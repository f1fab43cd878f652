"""Hypothesis fuzzing of the two decoders of untrusted input.

The config parser (aios.config.load on generated aios.toml text: random bytes-ish text,
mutated good files, and well-formed TOML with random tables, fields and values) may
only return a Config or raise ConfigError, and every message is one line.

The protocol decoder (arbitrary byte lines, and JSON objects with random fields, sent
into a live daemon's socket) must answer every line with one JSON line, `{"ok": true,
"result": ...}` or `{"ok": false, "error": "<one line>"}`, and the daemon survives with
its jobs untouched.
"""
from __future__ import annotations

import json
import math
import socket
from collections import Counter

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aios import config
from aios.spec import JobSpec

from .conftest import BASE

FIELDS = ["type", "program", "command", "shell", "args", "kwargs", "tags", "enabled", "priority", "env", "cwd",
          "retries", "backoff", "backoff_factor", "backoff_max", "stop_signal", "stop_timeout", "min_uptime",
          "adopt", "restart", "failed_cooldown", "time", "catch_up", "catch_up_max", "timeout", "interval",
          "every", "after", "before", "idle_after", "cooldown", "max_parallel", "intervall", "typ"]
WORDS = ["always", "daily", "interval", "random_daily", "trigger", "idle", "09:00", "25:61", "30s", "1h30m",
         "-5m", "ok.py:main", "../x.py:f", "/etc/x.py:f", "ok.py:nope", "TERM", "KILL", "once", "all", "skip",
         "on-failure", "", " ", "\x00", "jöb", "a/b", "$(touch X)", "1e999"]
SCALARS = (st.booleans() | st.integers(min_value=-2 ** 70, max_value=2 ** 70) | st.floats()
           | st.text(max_size=20) | st.sampled_from(WORDS))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
TYPES = ["always", "daily", "interval", "random_daily", "trigger", "idle"]
NUMBER = st.integers(min_value=-10, max_value=10 ** 7) | st.floats(min_value=-10, max_value=1e8)
DURATION = NUMBER | st.sampled_from(["100ms", "30s", "5m", "1h30m", "2d", "-1s", "0s", "10x", "", "1.5h", "99999d"])
CLOCK = st.sampled_from(["09:00", "00:00", "23:59", "24:00", "9:05", "12:00:30", "noon", "18:00"])
PLAUSIBLE = {   # values of the right kind, at and beyond their limits
    "type": st.sampled_from(TYPES), "program": st.sampled_from(["ok.py:main", "ok.py:nope", "../x.py:f", "ok.py"]),
    "command": st.lists(st.text(max_size=5), max_size=3) | st.sampled_from([["true"], "true"]),
    "shell": st.booleans(), "args": st.lists(SCALARS, max_size=3),
    "kwargs": st.dictionaries(st.text(max_size=5), SCALARS, max_size=3),
    "tags": st.lists(st.sampled_from(["gpu", "lab", "a b", "", "x" * 70]), max_size=3),
    "enabled": st.booleans(), "adopt": st.booleans(),
    "priority": st.integers(-2000, 2000), "retries": st.integers(-5, 2000), "catch_up_max": st.integers(-5, 2000),
    "max_parallel": st.integers(-5, 2000), "backoff": DURATION, "backoff_max": DURATION, "stop_timeout": DURATION,
    "min_uptime": DURATION, "failed_cooldown": DURATION, "timeout": DURATION, "idle_after": DURATION,
    "cooldown": DURATION, "every": DURATION, "interval": NUMBER, "backoff_factor": st.floats(0, 200),
    "stop_signal": st.sampled_from(["TERM", "INT", "SIGHUP", "KILL", "NOPE", "9"]),
    "restart": st.sampled_from(["always", "on-failure", "never"]), "time": CLOCK, "after": CLOCK, "before": CLOCK,
    "catch_up": st.sampled_from(["once", "skip", "all", "some"]),
    "cwd": st.sampled_from([".", "Programs", "nope", "/tmp", ""]),
    "env": st.dictionaries(st.sampled_from(["A", "B", "", "A=B"]), st.text(max_size=5) | st.integers(), max_size=2),
}
TABLE = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES) | VALUES, "command": st.just(["true"]) | VALUES},
    optional={**{f: PLAUSIBLE[f] | PLAUSIBLE[f] | VALUES for f in PLAUSIBLE if f not in ("type", "command")},
              "intervall": VALUES})
NAMES = st.sampled_from(["a", "b", "web", "Web", "a.b-c_d"]) | st.sampled_from(["a/b", "..", "", "jöb", "x" * 65]) \
    | st.text(max_size=12)
SECTIONS = st.fixed_dictionaries({"jobs": st.dictionaries(NAMES, TABLE, max_size=4)}, optional={
    "device": st.fixed_dictionaries({}, optional={"id": st.sampled_from(["lab", ""]) | VALUES,
                                                  "tags": st.lists(st.sampled_from(["gpu", "a b"])) | VALUES}),
    "logs": st.fixed_dictionaries({}, optional={"max_size": st.sampled_from(["1MB", "0", "10 GiB", "x"]) | NUMBER,
                                                "keep": st.integers(-1, 101) | VALUES}),
    "web": st.fixed_dictionaries({}, optional={"port": st.integers(0, 70000) | VALUES, "host": VALUES}),
    "extra": VALUES,
})


def toml_str(text: str) -> str:
    """A TOML basic string (JSON's escapes, but astral characters as themselves)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return toml_str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{ " + ", ".join(f"{toml_str(k)} = {toml_value(v)}" for k, v in value.items()) + " }"


def toml_document(doc: dict) -> str:
    lines = []
    for section, body in doc.items():
        if section == "jobs":
            for name, table in body.items():
                lines.append(f"[jobs.{toml_str(name)}]")
                lines += [f"{toml_str(k)} = {toml_value(v)}" for k, v in table.items()]
        elif isinstance(body, dict):
            lines.append(f"[{section}]")
            lines += [f"{toml_str(k)} = {toml_value(v)}" for k, v in body.items()]
        else:
            lines.insert(0, f"{section} = {toml_value(body)}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def config_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("fuzz_config")
    (home / "Programs").mkdir()
    (home / "Programs" / "ok.py").write_text("def main():\n    pass\n")
    return home


TALLY: Counter = Counter()   # what the fuzzing tried, for the figures


def check_load(home, text: str) -> None:
    try:
        cfg = config.load(home, text)
    except config.ConfigError as exc:
        TALLY["aios.toml refused whole (ConfigError)"] += 1
        assert "\n" not in str(exc) and str(exc), repr(str(exc))
        return
    TALLY["aios.toml loaded"] += 1
    TALLY["jobs accepted"] += len(cfg.specs)
    TALLY["jobs refused with a one-line error"] += len(cfg.errors)
    assert all(isinstance(spec, JobSpec) for spec in cfg.specs.values())
    assert all(isinstance(e, str) and e and "\n" not in e for e in cfg.errors), cfg.errors
    json.dumps(cfg.tables, default=str)


FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(doc=SECTIONS)
def test_config_parser_on_generated_toml(config_home, doc):
    check_load(config_home, toml_document(doc))


@FUZZ
@given(text=st.text(max_size=300))
@example(text="[jobs.a]\ntype = 'always'\ncommand = ['true']\n[jobs.A]\n")
@example(text='[jobs."\\u0000"]\ntype = "always"\n')
def test_config_parser_on_random_text(config_home, text):
    check_load(config_home, text)


@FUZZ
@given(position=st.integers(min_value=0, max_value=len(BASE)), junk=st.text(min_size=1, max_size=8),
       cut=st.integers(min_value=0, max_value=20))
def test_config_parser_on_mutated_good_files(config_home, position, junk, cut):
    check_load(config_home, BASE[:position] + junk + BASE[position + cut:])


# ---------------------------------------------------------------- the protocol decoder

class Line:
    """One connection to the live daemon; `ask` sends a line and returns its reply."""

    def __init__(self, home):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(30)
        self.sock.connect(str(home / "aios.sock"))
        self.buffer = b""

    def ask(self, line: bytes) -> bytes:
        self.sock.sendall(line + b"\n")
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            assert chunk, "the daemon hung up"
            self.buffer += chunk
        reply, self.buffer = self.buffer.split(b"\n", 1)
        return reply


@pytest.fixture(scope="module")
def line(live):
    conn = Line(live.home)
    yield conn
    conn.sock.close()


def check_reply(raw: bytes) -> None:
    reply = json.loads(raw)
    assert isinstance(reply, dict) and isinstance(reply.get("ok"), bool), reply
    TALLY["socket lines answered ok" if reply["ok"] else "socket lines answered with an error"] += 1
    if reply["ok"]:
        assert "result" in reply
    else:
        assert isinstance(reply["error"], str) and reply["error"] and "\n" not in reply["error"], reply


PROTO = settings(max_examples=300, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SAFE_OPS = ["ping", "status", "job", "history", "events", "wait", "start", "enable", "run", "STATUS", "", "op",
            "trigger ", "stat\x00us"]   # no op that stops, replaces or re-executes anything
JSON = st.recursive(st.none() | st.booleans() | st.integers(min_value=-2 ** 80, max_value=2 ** 80) | st.floats()
                    | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                    max_leaves=6)
REQUEST = st.fixed_dictionaries({"op": st.sampled_from(SAFE_OPS)}, optional={
    "job": st.sampled_from(["svc", "work", "prog", "nosuch", "../svc"]) | JSON,
    "limit": JSON, "after_id": JSON, "trigger": JSON, "id": JSON, "args": JSON, "kwargs": JSON, "x": JSON})


@PROTO
@given(raw=st.binary(max_size=300).map(lambda b: b.replace(b"\n", b"")).filter(lambda b: b.strip()))
def test_protocol_decoder_on_random_bytes(live, line, raw):
    check_reply(line.ask(raw))


@PROTO
@given(request=REQUEST)
def test_protocol_decoder_on_random_requests(live, line, request):
    check_reply(line.ask(json.dumps(request).encode()))


def test_the_daemon_survived_the_fuzzing(live):
    live.unharmed()
    print(f"\n[bad input figures] fuzzing: {dict(TALLY)}")
