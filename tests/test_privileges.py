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
from aios.jobtable import parse_job
from aios.spec import Settings, SpecError
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
    assert info.value.errno == 13
    assert str(info.value).startswith(f"cannot start {str(tool)!r}: Permission denied (EACCES)")
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
from aios.jobtable import parse_job
from aios.spec import SpecError
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


# ---------------------------------------------------------------- a control job of its own user


def control_spec(**fields):
    return parse_job("dash", {"type": "always", "program": "web_server.py:main", "user": "nobody",
                              "control": True, **fields})


def test_a_control_job_of_another_user_gets_the_home_as_descriptor_3():
    plan = launch.plan(control_spec(), None, 1, {}, Path("/srv/aios"), SETTINGS)
    assert plan.options["folder"] == "/srv/aios"
    assert plan.env["AIOS_HOME_FD"] == "3" and plan.env["AIOS_HOME"] == "/srv/aios"
    assert plan.cwd == launch.HOME_BY_FD and plan.argv[2] == f"{launch.HOME_BY_FD}/Programs"
    for spec in (control_spec(control=False), control_spec(user="root"), spec_of()):
        plan = launch.plan(spec, None, 1, {}, Path("/srv/aios"), SETTINGS)
        assert "folder" not in plan.options and "AIOS_HOME_FD" not in plan.env


def test_control_uids_are_the_users_of_control_jobs_only():
    specs = [control_spec(), control_spec(user="root"), spec_of(user="nobody"),
             control_spec(user="aios-no-such-user")]
    assert launch.control_uids(specs) == {NOBODY}


def test_a_root_daemon_warns_of_jobs_that_are_root_only_because_no_user_is_set():
    assert launch.root_warning(spec_of()).startswith("runs as root because no user is set")
    assert launch.root_warning(spec_of(group="4")).startswith("runs as root")
    assert launch.root_warning(spec_of(user="root")) is None
    assert launch.root_warning(spec_of(user="0")) is None
    assert launch.root_warning(spec_of(user="nobody")) is None


def test_the_dashboard_id_is_free_stable_and_per_home():
    first = launch.dashboard_id(Path("/srv/a"))
    assert first in launch.DYNAMIC_IDS and first == launch.dashboard_id(Path("/srv/a"))
    for home in ("/srv/a", "/srv/b", "/root/.aios"):
        uid = launch.dashboard_id(Path(home))
        with pytest.raises(KeyError):
            pwd.getpwuid(uid)
        with pytest.raises(KeyError):
            grp.getgrgid(uid)


def test_a_folder_its_user_cannot_reach_by_name_is_reachable_as_descriptor_3(procs, log, tmp_path):
    """The folder is behind a 0700 one (as a home in /root is); the child, as nobody, gets
    it as fd 3, enters it by /proc/self/fd/3 and reads what the folder's group may."""
    private = tmp_path / "private"
    (private / "home" / "logs").mkdir(parents=True)
    os.chmod(private, 0o700)
    home = private / "home"
    (home / "logs" / "job.log").write_text("job output\n")
    for path, mode in ((home, 0o750), (home / "logs", 0o750), (home / "logs" / "job.log", 0o640)):
        os.chown(path, 0, NOBODY)
        os.chmod(path, mode)
    script = 'cat logs/job.log; cat /proc/self/fd/3/logs/job.log; ls ' + str(home) + ' 2>&1 | head -1'
    proc = start(procs, ["sh", "-c", script], log, cwd=launch.HOME_BY_FD, uid=NOBODY, gid=NOBODY, groups=(),
                 folder=str(home))
    wait_until(lambda: supervisor.reap(proc) is not None)
    lines = log_text(log).splitlines()
    assert lines[:2] == ["job output", "job output"] and "Permission denied" in lines[2]


def test_the_runner_loads_a_program_through_descriptor_3(procs, log, tmp_path):
    private = tmp_path / "private"
    (private / "home" / "Programs").mkdir(parents=True)
    os.chmod(private, 0o700)
    home = private / "home"
    (home / "Programs" / "show.py").write_text("import os\ndef main():\n    print('ran in', os.getcwd())\n")
    for path in (home, home / "Programs", home / "Programs" / "show.py"):
        os.chown(path, 0, NOBODY)
        os.chmod(path, 0o750 if path.is_dir() else 0o640)
    plan = launch.plan(control_spec(program="show.py:main"), None, 1, dict(os.environ), home, SETTINGS)
    assert plan.options["start"] == "spawn", "a run given its home as descriptor 3 is never the zygote's"
    options = {key: value for key, value in plan.options.items() if key not in ("start", "preload")}
    proc = start(procs, plan.argv, log, env=plan.env, cwd=plan.cwd, **options)   # as processes.spawn passes them
    wait_until(lambda: supervisor.reap(proc) is not None)
    assert log_text(log) == f"ran in {home}\n"
