"""Jobs' privileges: a job runs as its configured user and groups with its umask, and
HOME, USER and LOGNAME follow the user. Real processes as uid nobody (we are root in
CI); launch.identity is checked against this machine's user and group databases."""
from __future__ import annotations

import grp
import os
import pwd
import subprocess
from pathlib import Path

import pytest

from aios import config, launch, supervisor
from aios.spec import Settings, SpecError, parse_job
from aios.supervisor import SpawnError
from tests.processes import (NOBODY, PY, REPO, log, log_text, our_zombies, procs, require_root, run_driver,
                             start, wait_until)

SETTINGS = Settings(device_id="lab-1")
REPORT = 'echo "$(id -u) $(id -g) $(id -G) $(umask) $HOME $USER $LOGNAME"'
ROOT_GROUP = grp.getgrgid(0).gr_name
NOBODY_ENTRY = pwd.getpwuid(NOBODY)


def spec_of(**fields):
    return parse_job("p", {"type": "trigger", "command": ["sh", "-c", REPORT], "cwd": "/", **fields})


def run(procs, log, spec) -> list[str]:
    """Start a run of spec as the engine does (launch.plan, then spawn); its report."""
    plan = launch.plan(spec, None, 1, dict(os.environ), Path("/srv/aios"), SETTINGS)
    proc = start(procs, plan.argv, log, env=plan.env, cwd=plan.cwd, **plan.options)
    wait_until(lambda: supervisor.reap(proc) is not None)
    return log_text(log).split()


def ids(pid: int) -> dict[str, list[int]]:
    with open(f"/proc/{pid}/status") as f:
        rows = [line.split(":", 1) for line in f if line.startswith(("Uid:", "Gid:", "Groups:"))]
    return {key: [int(v) for v in value.split()] for key, value in rows}


@pytest.fixture(autouse=True)
def root():
    require_root()


def test_a_job_runs_as_its_user_with_that_users_environment(procs, log):
    uid, gid, groups, umask, home, user, logname = run(procs, log, spec_of(user="nobody", umask="027"))
    assert (uid, gid, groups, umask) == (str(NOBODY), str(NOBODY_ENTRY.pw_gid), str(NOBODY_ENTRY.pw_gid), "0027")
    assert (home, user, logname) == (NOBODY_ENTRY.pw_dir, "nobody", "nobody")


def test_every_id_is_dropped_and_no_group_of_root_is_kept(procs, log):
    spec = spec_of(user="nobody", command=["sleep", "1000"])
    plan = launch.plan(spec, None, 1, dict(os.environ), Path("/srv/aios"), SETTINGS)
    proc = start(procs, plan.argv, log, env=plan.env, cwd=plan.cwd, **plan.options)
    assert ids(proc.pid) == {"Uid": [NOBODY] * 4, "Gid": [NOBODY_ENTRY.pw_gid] * 4,
                             "Groups": sorted(os.getgrouplist("nobody", NOBODY_ENTRY.pw_gid))}


def test_supplementary_groups_are_the_users_and_the_configured_ones(procs, log):
    report = run(procs, log, spec_of(user="nobody", groups=[ROOT_GROUP, "4"]))
    groups = report[2:-4]                              # then umask, HOME, USER, LOGNAME
    assert set(map(int, groups)) == {0, 4, *os.getgrouplist("nobody", NOBODY_ENTRY.pw_gid)}


def test_a_group_alone_keeps_root_but_none_of_its_groups(procs, log):
    report = run(procs, log, spec_of(group="4"))
    assert report[:3] == ["0", "4", "4"]               # uid 0, gid 4, and no other group
    assert report[4:] == [os.environ["HOME"], *([os.environ[k] for k in ("USER", "LOGNAME") if k in os.environ])]


def test_umask_without_a_user_is_set_around_posix_spawn(procs, log):
    before = os.umask(0o022)
    os.umask(before)
    assert run(procs, log, spec_of(umask="077"))[3] == "0077"
    now = os.umask(before)
    assert now == before                              # the daemon's own umask is back


def test_a_cwd_the_user_may_not_enter_is_a_spawn_error(log, tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(SpawnError) as info:
        supervisor.spawn(["true"], dict(os.environ), str(private), log[1], uid=NOBODY, gid=NOBODY, groups=())
    assert str(info.value) == f"cannot start 'true': cwd {str(private)!r}: Permission denied (EACCES)"


def test_a_program_only_root_may_run_is_a_spawn_error_and_leaves_no_zombie(log, tmp_path):
    tool = tmp_path / "tool"
    tool.write_text("#!/bin/sh\necho ran\n")
    tool.chmod(0o700)
    os.chmod(tmp_path, 0o755)
    zombies = our_zombies()
    with pytest.raises(SpawnError) as info:
        supervisor.spawn([str(tool)], dict(os.environ), "/", log[1], uid=NOBODY, gid=NOBODY, groups=())
    assert info.value.errno == 13 and str(info.value).startswith(f"cannot start {str(tool)!r}: Permission denied (EACCES)")
    assert our_zombies() <= zombies


# Run as nobody: a non-root process may not switch, and says which step refused.
UNPRIVILEGED_DRIVER = r"""
import json, os
from aios import supervisor
log = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
try:
    supervisor.spawn(["true"], dict(os.environ), "/", log, uid=0, gid=0, groups=())
    print(json.dumps("started"))
except supervisor.SpawnError as exc:
    print(json.dumps([exc.errno, str(exc)]))
"""


def test_a_process_that_is_not_root_cannot_switch():
    err, text = run_driver(UNPRIVILEGED_DRIVER, prefix=("runuser", "-u", "nobody", "--"))
    assert (err, text) == (1, "cannot start 'true': setgroups(()): Operation not permitted (EPERM)")


# ---------------------------------------------------------------- identity


def test_identity_of_a_user_a_group_and_groups():
    nobody_groups = tuple(sorted(os.getgrouplist("nobody", NOBODY_ENTRY.pw_gid)))
    assert launch.identity(spec_of()) is None
    assert launch.identity(spec_of(user="nobody")) == launch.Identity(
        uid=NOBODY, gid=NOBODY_ENTRY.pw_gid, groups=nobody_groups, name="nobody", home=NOBODY_ENTRY.pw_dir)
    assert launch.identity(spec_of(user=NOBODY, group=ROOT_GROUP)).gid == 0
    assert launch.identity(spec_of(user="nobody", groups=[ROOT_GROUP])).groups == tuple(sorted({0, *nobody_groups}))
    assert launch.identity(spec_of(group="4", groups=["5"])) == launch.Identity(uid=0, gid=4, groups=(5,))
    assert launch.identity(spec_of(user="64999")) == launch.Identity(uid=64999, gid=64999, groups=())


@pytest.mark.parametrize("fields, message", [
    ({"user": "aios-no-such-user"},
     "job 'p': user = 'aios-no-such-user' does not exist on this machine (see getent passwd)"),
    ({"group": "aios-no-such-group"},
     "job 'p': group = 'aios-no-such-group' does not exist on this machine (see getent group)"),
    ({"user": "nobody", "groups": ["adm", "aios-no-such-group"]},
     "job 'p': groups: 'aios-no-such-group' does not exist on this machine (see getent group)"),
])
def test_identity_refuses_what_does_not_exist(fields, message):
    with pytest.raises(SpecError) as info:
        launch.identity(spec_of(**fields))
    assert str(info.value) == message


IDENTITY_AS_NOBODY = r"""
import json
from aios import launch
from aios.spec import SpecError, parse_job
out = []
for fields in ({"user": "nobody"}, {"user": "root"}, {"group": "0"}, {"user": "nobody", "groups": ["0"]}):
    try:
        out.append(repr(launch.identity(parse_job("p", {"type": "always", "command": ["x"], **fields}))))
    except SpecError as exc:
        out.append(str(exc))
print(json.dumps(out))
"""


def test_a_daemon_that_is_not_root_may_only_be_itself():
    own, root, group, groups = run_driver(IDENTITY_AS_NOBODY, prefix=("runuser", "-u", "nobody", "--"))
    assert own == "None"
    tail = f"needs a daemon running as root (this one runs as uid {NOBODY}); remove it or start the daemon as root"
    assert root == f"job 'p': user = 'root' {tail}"
    assert group == f"job 'p': group = '0' {tail}"
    assert groups == f"job 'p': groups = ['0'] {tail}"


def test_config_load_skips_a_job_whose_user_does_not_exist(tmp_path):
    text = ('[jobs.good]\ntype = "always"\ncommand = ["true"]\nuser = "nobody"\n\n'
            '[jobs.bad]\ntype = "always"\ncommand = ["true"]\nuser = "aios-no-such-user"\n')
    cfg = config.load(tmp_path, text)
    assert list(cfg.specs) == ["good"]
    assert cfg.errors == ["job 'bad': user = 'aios-no-such-user' does not exist on this machine (see getent passwd)"]


def test_plan_turns_a_user_gone_since_load_into_a_spawn_error():
    spec = spec_of(user="aios-no-such-user")
    with pytest.raises(SpawnError) as info:
        launch.plan(spec, None, 1, {}, Path("/srv/aios"), SETTINGS)
    assert str(info.value) == ("cannot start job 'p': user = 'aios-no-such-user' does not exist on this machine "
                               "(see getent passwd)")


def test_jobs_run_as_another_user_are_found_for_adoption_among_its_uid(procs, log):
    spec = spec_of(user="nobody", command=["sleep", "1000"])
    plan = launch.plan(spec, None, 77, dict(os.environ), Path("/srv/aios-privileges"), SETTINGS, token="t77")
    proc = start(procs, plan.argv, log, env=plan.env, cwd=plan.cwd, **plan.options)
    marks = {"AIOS_HOME": "/srv/aios-privileges"}
    wait_until(lambda: b"AIOS_RUN_TOKEN=t77" in open(f"/proc/{proc.pid}/environ", "rb").read())
    assert supervisor.leaders(marks, ("AIOS_RUN_TOKEN",), [os.getuid()]) == []
    assert supervisor.leaders(marks, ("AIOS_RUN_TOKEN",), [os.getuid(), NOBODY]) == [
        supervisor.Leader(pid=proc.pid, ticks=proc.start_ticks, uid=NOBODY, env={"AIOS_RUN_TOKEN": "t77"})]
