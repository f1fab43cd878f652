"""NUL bytes and lone surrogates in every field that reaches exec, from every way in: the
CLI, the control socket, the dashboard's API (with its token) and a row another program
inserts into `triggers`. Against the live daemon of conftest.py: a field that can never
be exec'd is refused when it is submitted, with one line naming it (nothing is stored);
a row written by another program is done as `rejected: ...`; what a program job gets as
JSON arrives exactly as sent. After every case the daemon is up and its always jobs are
the same processes."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

from aios import control
from tests.integration.conftest import ROOT, insert_trigger
from tests.web.conftest import BEARER, Served, request

from .conftest import BASE

NUL, SURROGATE = "a\x00b", "\ud800"
EXECABLE = "every string a job is started with must be exec-able text"
# A job of BASE's plus one poisoned field: the field's place in the table, the TOML, the error.
FIELDS = [
    ("command", 'command = ["sleep", "{v}"]', "command[1] {p}"),
    ("shell command", 'shell = true\ncommand = "echo {v}"', "command {p}"),
    ("args", 'command = ["sleep"]\nargs = ["{v}"]', "args[0] {p}"),
    ("env value", 'command = ["sleep", "1"]\nenv = {{ LANG = "{v}" }}', "env 'LANG' {p}"),
    ("cwd", 'command = ["sleep", "1"]\ncwd = "/tmp{v}"', "cwd {p}"),
    ("env_file", 'command = ["sleep", "1"]\nenv_file = "x{v}"', "env_file {p}"),
]
PROBLEMS = {NUL: "contains a NUL byte", SURROGATE: "cannot be encoded for exec: lone surrogate '\\ud800'"}


@pytest.fixture(scope="module")
def web(live):
    served = Served(live.home)
    yield served
    served.close()


def toml_of(field: str, value: str) -> str:
    """BASE plus a job `bad` whose field holds value (NUL as TOML's \\u0000 escape: TOML
    text may not hold a raw NUL; a lone surrogate as the character itself: no escape may
    name one)."""
    template = next(t for name, t, _ in FIELDS if name == field)
    shown = value.replace("\x00", "\\u0000")
    return BASE + '\n[jobs.bad]\ntype = "always"\n' + template.format(v=shown) + "\n"


def expected(field: str, value: str) -> str:
    """A NUL is the field's problem; a lone surrogate is the text's, before it is TOML."""
    if value == SURROGATE:
        line = toml_of(field, value).split(SURROGATE)[0].count("\n") + 1
        return f"aios.toml line {line}: '\\ud800' is a lone surrogate, not a character UTF-8 can hold; remove it"
    where = next(e for name, _, e in FIELDS if name == field).format(p=PROBLEMS[value])
    return f"1 error; aios.toml left as it was:\n  job 'bad': {where}; {EXECABLE}"


def trigger_count(home) -> int:
    with sqlite3.connect(home / "orchestrator.db") as db:
        return db.execute("SELECT COUNT(*) FROM triggers").fetchone()[0]


def aios(home, *argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aios", "--home", str(home), *argv], capture_output=True,
                          cwd=ROOT, timeout=60)


# ---------------------------------------------------------------- aios.toml, three ways in

@pytest.mark.parametrize("value", [NUL, SURROGATE], ids=["nul", "surrogate"])
@pytest.mark.parametrize("field", [name for name, _, _ in FIELDS])
def test_a_poisoned_field_of_aios_toml_is_refused_over_the_socket_and_the_api(live, web, field, value):
    text = toml_of(field, value)
    with pytest.raises(control.AiosError) as refused:
        control.call(live.home, "apply", text=text)
    assert str(refused.value) == expected(field, value)
    code, _, reply = request(f"{web.url}/api/apply", "POST", {"text": text}, BEARER)
    assert (code, reply) == (400, {"ok": False, "error": expected(field, value)})
    assert "bad" not in {job["name"] for job in control.call(live.home, "status")}
    live.unharmed()


def test_a_poisoned_aios_toml_is_refused_from_the_cli(live, tmp_path):
    nul = tmp_path / "nul.toml"
    nul.write_text(toml_of("command", NUL))
    done = aios(live.home, "apply", str(nul))
    assert done.returncode == 1
    assert done.stderr.decode() == f"aios: {nul} (applied as aios.toml): " + expected("command", NUL) + "\n"
    raw = tmp_path / "raw-nul.toml"
    raw.write_bytes(BASE.encode() + b'\n[jobs.bad]\ntype = "always"\ncommand = ["sleep", "a\x00"]\n')
    done = aios(live.home, "apply", str(raw))
    assert done.returncode == 1 and done.stderr.decode().count("\n") == 1
    assert "illegal character '\\x00'" in done.stderr.decode()
    surrogate = tmp_path / "surrogate.toml"     # what a lone surrogate becomes in a file: bytes no UTF-8 decoder takes
    surrogate.write_bytes(toml_of("command", "X").replace('"X"', '"\udcff"').encode("utf-8", "surrogateescape"))
    done = aios(live.home, "apply", str(surrogate))
    assert done.returncode == 1 and done.stderr.decode().startswith(f"aios: cannot read {surrogate}: ")
    assert done.stderr.decode().count("\n") == 1
    live.unharmed()


@pytest.mark.parametrize("text", ["# \ud800\n", 'x = "\ud800"\n'], ids=["in-a-comment", "in-a-setting"])
def test_a_lone_surrogate_anywhere_in_applied_text_is_refused_with_its_line(live, web, text):
    message = "aios.toml line 2: '\\ud800' is a lone surrogate, not a character UTF-8 can hold; remove it"
    with pytest.raises(control.AiosError, match="^" + message.replace("\\", "\\\\") + "$"):
        control.call(live.home, "apply", text="\n" + text + BASE)
    code, _, reply = request(f"{web.url}/api/apply", "POST", {"text": "\n" + text + BASE}, BEARER)
    assert (code, reply["error"]) == (400, message)
    live.unharmed()


# ---------------------------------------------------------------- a trigger's arguments

@pytest.mark.parametrize("value, index", [(NUL, 1), (SURROGATE, 2)], ids=["nul", "surrogate"])
def test_a_poisoned_argument_of_a_command_job_is_refused_and_never_stored(live, web, value, index):
    before = trigger_count(live.home)
    args = ["ok", value][-index:] if index == 2 else [value]
    message = f"trigger of 'work': argument {index} {PROBLEMS[value]}"
    with pytest.raises(control.AiosError, match=r"^trigger of 'work': argument"):
        control.call(live.home, "trigger", job="work", args=args)
    code, _, reply = request(f"{web.url}/api/trigger", "POST", {"job": "work", "args": args}, BEARER)
    assert (code, reply) == (400, {"ok": False, "error": message})
    assert trigger_count(live.home) == before, "a refused trigger is never stored"
    live.unharmed()


@pytest.mark.parametrize("raw, why", [
    (json.dumps([SURROGATE]), "trigger of 'work': argument 1 cannot be encoded for exec: lone surrogate '\\ud800'"),
    (json.dumps(["ok", NUL]), "trigger of 'work': argument 2 contains a NUL byte"),
    (json.dumps(["x" * 200_000]), "trigger of 'work': argument 1 is 200000 bytes; exec takes less than 128 KiB "
                                  "per string"),
], ids=["surrogate", "nul", "huge"])
def test_a_row_with_a_poisoned_argument_is_rejected_with_the_reason(live, raw, why):
    row = insert_trigger(live.home, "work", raw)
    assert control.call(live.home, "wait", trigger=row)["outcome"] == f"rejected: {why}"
    live.unharmed()


def test_a_row_whose_kwargs_are_not_an_object_is_rejected_and_its_waiter_hears_it(live):
    for kwargs in (b"\xff\xfe", "[1, 2]"):     # a BLOB that is not UTF-8, a JSON list
        with sqlite3.connect(live.home / "orchestrator.db") as db:
            row = db.execute("INSERT INTO triggers (job, args, kwargs) VALUES ('prog', '[]', ?)", (kwargs,)).lastrowid
        assert control.call(live.home, "wait", trigger=row)["outcome"] == "rejected: kwargs is not a JSON object"
    live.unharmed()


def test_bytes_that_are_not_utf8_reach_a_command_exactly(live):
    """From a BLOB row and from the CLI's argv alike (Python reads both as the file system
    does), a command job gets the very bytes."""
    (live.home / "work.txt").unlink(missing_ok=True)
    with sqlite3.connect(live.home / "orchestrator.db") as db:
        row = db.execute("INSERT INTO triggers (job, args) VALUES ('work', ?)", (b"\xff\xfe raw",)).lastrowid
    assert control.call(live.home, "wait", trigger=row)["outcome"] == "ok"
    done = aios(live.home, "trigger", "work", "--arg", "\udcffcli".encode("utf-8", "surrogateescape"), "--wait")
    assert done.returncode == 0, done.stderr
    assert (live.home / "work.txt").read_bytes() == b"\xff\xfe raw\n\xffcli\n"
    (live.home / "work.txt").unlink()
    live.unharmed()


def test_a_row_for_a_job_name_that_is_not_text_waits_with_its_reason_and_breaks_nothing(live):
    with sqlite3.connect(live.home / "orchestrator.db") as db:
        db.execute("INSERT INTO triggers (job, args) VALUES (?, '[]')", (b"wo\xffrk",))
        db.execute("INSERT INTO triggers (job, args) VALUES (?, '[]')", ("wo\x00rk",))
    whys = {t["job"]: t["why"] for t in control.call(live.home, "triggers")}
    assert whys["wo\udcffrk"] == "no job named 'wo\\udcffrk' in aios.toml"
    assert whys["wo\x00rk"] == "no job named 'wo\\x00rk' in aios.toml"
    assert control.call(live.home, "wait", trigger=insert_trigger(live.home, "work", '["after"]'))["outcome"] == "ok"
    assert control.call(live.home, "drop", job="wo\x00rk") == 1
    live.unharmed()


# ---------------------------------------------------------------- a program job gets JSON

def test_a_program_job_gets_nul_and_surrogates_exactly_from_every_way_in(live, web):
    args, kwargs = [NUL, SURROGATE, "\udcff"], {"k\x00": SURROGATE}
    echo = live.home / "echo.jsonl"
    echo.unlink(missing_ok=True)
    trigger = control.call(live.home, "trigger", job="prog", args=args, kwargs=kwargs)
    assert control.call(live.home, "wait", trigger=trigger)["outcome"] == "ok"
    code, _, reply = request(f"{web.url}/api/trigger", "POST", {"job": "prog", "args": args, "kwargs": kwargs}, BEARER)
    assert code == 200
    assert control.call(live.home, "wait", trigger=reply["result"])["outcome"] == "ok"
    row = insert_trigger(live.home, "prog", json.dumps(args), json.dumps(kwargs))
    assert control.call(live.home, "wait", trigger=row)["outcome"] == "ok"
    received = [json.loads(line) for line in echo.read_text().splitlines()]
    assert received == [{"args": args, "kwargs": kwargs}] * 3
    echo.unlink()
    live.unharmed()
