"""Safe changes of aios.toml on a real daemon: `apply --check` changes nothing, `apply FILE`
with an error is refused whole, the replaced file is kept as aios.toml.prev, parallel
`aios add`s all land, and a running job whose new table is invalid keeps running."""
from __future__ import annotations

import subprocess
import sys

from .conftest import pid_alive, wait_until, write_home
from .test_cli import _ENV, ROOT, aios, always, daemon, ok, running_pids, status, table_rows  # noqa: F401

BAD_TIME = '\n[jobs.late]\ntype = "daily"\ntime = "25:00"\ncommand = ["true"]\n'
NO_COMMAND = '\n[jobs.empty]\ntype = "always"\n'
LATE_ERROR = "job 'late': time: '25:00' is not a time of day; use \"HH:MM\" from 00:00 to 23:59"


def test_check_prints_the_diff_and_every_error_and_changes_nothing(home, daemon):
    write_home(home, always("keep", "sleep", "100000") + always("edit", "sleep", "100000")
               + always("gone", "sleep", "100000"))
    daemon.up()
    before = wait_until(lambda: len(running_pids(home)) == 3 and running_pids(home), what="three jobs running")
    text = (home / "aios.toml").read_text()
    new = home.parent / "new.toml"
    new.write_text(always("keep", "sleep", "100000") + always("edit", "sleep", "100001")
                   + '\n[jobs.tick]\ntype = "interval"\nevery = "1h"\ncommand = ["true"]\n' + BAD_TIME + NO_COMMAND)

    checked = aios(home, "apply", "--check", str(new))
    assert checked.returncode == 1
    assert checked.stdout == "+ tick (added)\n- gone (removed)\n~ edit (changed: command)\n  1 unchanged\n"
    errors = checked.stderr.splitlines()
    assert errors[0] == f"aios: {LATE_ERROR}" and errors[1].startswith("aios: job 'empty': ")
    assert errors[2] == "aios: checked against the running daemon's jobs; nothing was changed" and len(errors) == 3
    assert (home / "aios.toml").read_text() == text and not (home / "aios.toml.prev").exists()
    assert running_pids(home) == before and set(status(home)) == {"keep", "edit", "gone"}

    new.write_text(always("keep", "sleep", "100000"))
    clean = aios(home, "apply", "--check", str(new))
    assert clean.returncode == 0 and clean.stdout == "- edit (removed)\n- gone (removed)\n  1 unchanged\n"

    (home / "aios.toml").write_text(text + always("more", "sleep", "1"))
    assert ok(aios(home, "apply", "--check")) == "+ more (added)\n  3 unchanged\n", "no FILE: aios.toml as edited"
    assert "more" not in status(home)

    daemon.down()
    offline = aios(home, "apply", "--check", str(new))
    assert offline.returncode == 0 and offline.stdout == "- edit (removed)\n- gone (removed)\n  1 unchanged\n"
    assert offline.stderr == ("aios: checked against the jobs the last daemon ran (it is not running); "
                              "nothing was changed\n")
    syntax = home.parent / "syntax.toml"
    syntax.write_text("[jobs.x\n")
    broken = aios(home, "apply", "--check", str(syntax))
    assert broken.returncode == 1
    assert broken.stderr == f"aios: {syntax} (applied as aios.toml): aios.toml line 1: expected ']' at the end of " \
                            "a table declaration\n"


def test_apply_file_with_an_error_is_refused_whole_and_a_good_one_keeps_a_backup(home, daemon):
    write_home(home, always("svc", "sleep", "100000"))
    daemon.up()
    pid = wait_until(lambda: running_pids(home).get("svc"), what="svc running")
    text = (home / "aios.toml").read_text()
    bad = home.parent / "bad.toml"
    bad.write_text(always("other", "sleep", "100000") + BAD_TIME + NO_COMMAND)

    refused = aios(home, "apply", str(bad))
    assert refused.returncode == 1 and refused.stdout == ""
    lines = refused.stderr.splitlines()
    assert lines[0] == f"aios: {bad} (applied as aios.toml): 2 errors; aios.toml left as it was:"
    assert lines[1] == f"  {LATE_ERROR}" and lines[2].startswith("  job 'empty': ") and len(lines) == 3
    assert (home / "aios.toml").read_text() == text and not (home / "aios.toml.prev").exists()
    assert running_pids(home) == {"svc": pid} and set(status(home)) == {"svc"}

    good = home.parent / "good.toml"
    good.write_text(always("svc", "sleep", "100000") + always("other", "sleep", "100000"))
    assert ok(aios(home, "apply", str(good))) == "+ other (added)\n  1 unchanged\n"
    assert (home / "aios.toml").read_text() == good.read_text()
    assert (home / "aios.toml.prev").read_text() == text, "the replaced file is kept"
    wait_until(lambda: "other" in running_pids(home), what="other running")

    daemon.down()
    refused = aios(home, "apply", str(bad))
    assert refused.returncode == 1 and "2 errors; aios.toml left as it was:" in refused.stderr
    assert (home / "aios.toml").read_text() == good.read_text()
    back = aios(home, "apply", str(home / "aios.toml.prev"))
    assert ok(back) == "aios.toml updated (no daemon running; it takes effect at the next start)\n"
    assert (home / "aios.toml").read_text() == text and (home / "aios.toml.prev").read_text() == good.read_text()


def _add_in_parallel(home, names: list[str]) -> list[subprocess.CompletedProcess]:
    procs = [subprocess.Popen([sys.executable, "-m", "aios", "--home", str(home), "add", name, "--type", "trigger",
                               "--", "echo", name], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=ROOT, env=_ENV) for name in names]
    return [subprocess.CompletedProcess(p.args, p.wait(60), *p.communicate()) for p in procs]


def test_ten_parallel_adds_all_land_with_the_daemon_up_and_down(home, daemon):
    write_home(home, always("svc", "sleep", "100000"))
    daemon.up()
    up = [f"up{n}" for n in range(10)]
    for done in _add_in_parallel(home, up):
        assert done.returncode == 0 and done.stdout.startswith(f"+ {done.args[6]} (added)\n"), done
    text = (home / "aios.toml").read_text()
    assert all(f"[jobs.{name}]" in text for name in up)
    assert set(status(home)) == {"svc", *up}

    daemon.down()
    down = [f"down{n}" for n in range(10)]
    for done in _add_in_parallel(home, down):
        assert done.returncode == 0, done
        assert done.stdout == "aios.toml updated (no daemon running; it takes effect at the next start)\n"
    text = (home / "aios.toml").read_text()
    assert all(f"[jobs.{name}]" in text for name in up + down)
    daemon.up()
    assert set(status(home)) == {"svc", *up, *down}


def test_a_running_job_whose_new_table_is_invalid_keeps_running_on_its_old_one(home, daemon):
    write_home(home, always("svc", "sleep", "100000") + always("other", "sleep", "100000"))
    daemon.up()
    before = wait_until(lambda: len(running_pids(home)) == 2 and running_pids(home), what="both running")
    text = (home / "aios.toml").read_text()
    (home / "aios.toml").write_text(text.replace('command = ["sleep", "100000"]\n',
                                                 'command = ["sleep", "100000"]\nrestart = "sometimes"\n', 1))

    applied = aios(home, "apply")
    assert applied.returncode == 1
    assert applied.stdout == "! svc (its new table is invalid: it keeps running on the previous one)\n  1 unchanged\n"
    assert applied.stderr == "aios: job 'svc': restart = 'sometimes'; use \"always\" or \"on-failure\"\n"
    assert running_pids(home) == before and pid_alive(before["svc"])
    row = table_rows(ok(aios(home, "status")))["svc"]
    assert row["STATUS"] == "running" and row["PID"] == str(before["svc"])
    assert "its new table is invalid, so it runs on the previous one: job 'svc': restart = " in row["WHY"]

    (home / "aios.toml").write_text(text)
    assert ok(aios(home, "apply")) == "  2 unchanged\n"
    assert running_pids(home) == before and status(home)["svc"]["problem"] is None
