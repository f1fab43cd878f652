"""A home that cannot be turned against its owner, file by file: no link below the home is
followed (the target a link points at stays byte for byte as it was), files are made
with exact modes, and a home or database another user could change is refused with one
line naming it and the fix. Real files; the ownership cases chown to uid nobody (root)."""
from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from aios import config, homefs, launch, logs, oplog
from aios.homefs import UnsafeHome, UnsafePath
from aios.store import StoreError
from aios.store.sqlite import SqliteStore
from tests.processes import NOBODY

VICTIM = b"root:x:0:0:root:/root:/bin/bash\n"     # what an attacker would like truncated


@pytest.fixture
def victim(tmp_path):
    """A file outside the home standing for /etc/passwd; the test checks it is untouched."""
    path = tmp_path / "passwd"
    path.write_bytes(VICTIM)
    yield path
    assert path.read_bytes() == VICTIM, "a write went through a link"


@pytest.fixture
def home(tmp_path):
    path = tmp_path / "home"
    path.mkdir(mode=0o750)
    return path


def one_line(exc) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def root_only():
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("ownership tests chown to nobody, which needs root; CI runs as root")
        pytest.skip("needs root to chown files to another user (runs in CI)")


# ---------------------------------------------------------------- opening below the home

@pytest.mark.parametrize("flags", [os.O_WRONLY | os.O_APPEND | os.O_CREAT, os.O_RDWR, os.O_RDONLY,
                                   os.O_WRONLY | os.O_CREAT | os.O_TRUNC])
def test_a_link_at_the_file_is_refused_whatever_the_flags(home, victim, flags):
    (home / "aios.pid").symlink_to(victim)
    with pytest.raises(UnsafePath) as caught:
        homefs.open_below(home, "aios.pid", flags)
    assert one_line(caught) == (f"{home}/aios.pid is a symbolic link (to {str(victim)!r}); AIOS never follows a "
                                "link in its home: put the file itself there, or remove the link")


def test_a_link_at_a_folder_is_refused_and_nothing_is_made_in_its_target(home, tmp_path, victim):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (home / "logs").symlink_to(elsewhere)
    with pytest.raises(UnsafePath, match=r"/logs is a symbolic link .*never follows a link"):
        homefs.open_below(home, "logs/job.log", os.O_WRONLY | os.O_CREAT)
    assert list(elsewhere.iterdir()) == []


def test_a_fifo_is_refused_without_blocking(home):
    os.mkfifo(home / "orchestrator.log")
    for flags in (os.O_WRONLY | os.O_APPEND | os.O_CREAT, os.O_RDONLY):
        with pytest.raises(UnsafePath, match="is not a regular file"):
            homefs.open_below(home, "orchestrator.log", flags)


@pytest.mark.parametrize("umask", [0o000, 0o077])
def test_files_and_folders_are_made_with_exact_modes_whatever_the_umask(home, umask):
    old = os.umask(umask)
    try:
        os.close(homefs.open_below(home, "logs/deep/job.log", os.O_WRONLY | os.O_CREAT, 0o640))
    finally:
        os.umask(old)
    assert stat.S_IMODE((home / "logs").stat().st_mode) == 0o750
    assert stat.S_IMODE((home / "logs" / "deep" / "job.log").stat().st_mode) == 0o640


def test_an_existing_file_keeps_its_mode(home):
    (home / "job.log").write_text("x")
    os.chmod(home / "job.log", 0o600)
    os.close(homefs.open_below(home, "job.log", os.O_WRONLY | os.O_CREAT, 0o640))
    assert stat.S_IMODE((home / "job.log").stat().st_mode) == 0o600


def test_a_home_that_is_itself_a_link_is_the_owners_choice(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "home").symlink_to(real)
    os.close(homefs.open_below(tmp_path / "home", "aios.pid", os.O_WRONLY | os.O_CREAT))
    assert (real / "aios.pid").exists()


def test_replace_file_replaces_a_link_and_keeps_the_old_files_group(home, victim):
    (home / "aios.toml").symlink_to(victim)
    homefs.replace_file(home, "aios.toml", b"# new\n")
    assert not (home / "aios.toml").is_symlink() and (home / "aios.toml").read_bytes() == b"# new\n"
    if os.geteuid() == 0:
        os.chown(home / "aios.toml", -1, NOBODY)
        homefs.replace_file(home, "aios.toml", b"# newer\n")
        assert (home / "aios.toml").stat().st_gid == NOBODY
    assert [p.name for p in home.iterdir()] == ["aios.toml"], "no temporary file is left"


# ---------------------------------------------------------------- who may change the home

def test_a_home_others_may_write_is_refused(home):
    os.chmod(home, 0o777)
    with pytest.raises(UnsafeHome) as caught:
        homefs.check_home(home)
    assert one_line(caught) == (f"AIOS home {home} has mode 0777: others may write into it (and replace aios.toml "
                                f"or plant links): chmod go-w {home}")
    os.chmod(home, 0o755)
    homefs.check_home(home)


def test_a_home_its_group_may_write_is_refused_unless_the_group_is_the_owners_alone(home):
    """Where umask is 002 every user has a group of their own (a user private group):
    its write bit gives no one else anything (as Debian's OpenSSH decides)."""
    import grp
    import pwd

    me = pwd.getpwuid(os.geteuid())
    os.chmod(home, 0o770)
    if os.stat(home).st_gid == me.pw_gid and set(grp.getgrgid(me.pw_gid).gr_mem) <= {me.pw_name}:
        homefs.check_home(home)            # our own group: fine
    root_only()
    os.chown(home, -1, NOBODY)             # a group that is not ours alone
    with pytest.raises(UnsafeHome, match="has mode 0770: others may write"):
        homefs.check_home(home)


def test_a_home_inside_a_folder_others_may_write_is_refused_unless_sticky(tmp_path):
    shared = tmp_path / "shared"
    (shared / "home").mkdir(parents=True)
    os.chmod(shared, 0o777)
    with pytest.raises(UnsafeHome, match=rf"inside {shared} \(mode 0777\), where others may move the home aside"):
        homefs.check_home(shared / "home")
    os.chmod(shared, 0o1777)    # like /tmp: no one may move what is not theirs
    homefs.check_home(shared / "home")


def test_a_home_of_another_user_is_refused(home):
    root_only()
    os.chown(home, NOBODY, NOBODY)
    with pytest.raises(UnsafeHome) as caught:
        homefs.check_home(home)
    assert one_line(caught) == (f"AIOS home {home} belongs to nobody (uid {NOBODY}), not to this daemon's user "
                                f"root (uid 0): run the daemon as nobody (uid {NOBODY}) (aios service install as "
                                f"them), or chown root (uid 0) {home}")


def test_a_home_inside_another_users_folder_is_refused(tmp_path):
    root_only()
    theirs = tmp_path / "theirs"
    (theirs / "home").mkdir(parents=True)
    os.chown(theirs, NOBODY, NOBODY)
    with pytest.raises(UnsafeHome, match=rf"inside {theirs}, which belongs to nobody .*, who could move the home"):
        homefs.check_home(theirs / "home")


# ---------------------------------------------------------------- logs and their rotation

def test_open_log_refuses_a_link_at_the_log_or_at_its_folder(home, tmp_path, victim):
    (home / "logs").mkdir()
    (home / "logs" / "job.log").symlink_to(victim)
    with pytest.raises(UnsafePath, match="job.log is a symbolic link"):
        logs.open_log(str(home / "logs" / "job.log"))
    (home / "logs" / "job.log").unlink()
    (home / "logs").rmdir()
    (home / "logs").symlink_to(victim.parent)
    with pytest.raises(UnsafePath, match="/logs is a symbolic link"):
        logs.open_log(str(home / "logs" / "passwd"))


@pytest.mark.parametrize("size", [3000, 10_000_000])     # a plain rotation, and a flood
def test_rotation_replaces_links_at_the_copies_and_never_writes_through_them(home, victim, size):
    folder = home / "logs"
    folder.mkdir()
    log = folder / "job.log"
    log.write_bytes(b"line\n" * (size // 5))
    for n in (1, 2, 3):
        (folder / f"job.log.{n}").symlink_to(victim)
    assert logs.rotate_if_needed(str(log), 1000, 3)
    assert log.stat().st_size == 0
    copy = folder / "job.log.1"
    assert not copy.is_symlink() and copy.read_bytes().endswith(b"line\n")
    assert stat.S_IMODE(copy.stat().st_mode) == 0o640
    assert sorted(p.name for p in folder.iterdir()) == ["job.log", "job.log.1", "job.log.2", "job.log.3"]


def test_rotation_of_a_log_that_is_a_link_truncates_nothing(home, victim):
    (home / "logs").mkdir()
    (home / "logs" / "job.log").symlink_to(victim)
    with pytest.raises(UnsafePath, match="job.log is a symbolic link"):
        logs.rotate_if_needed(str(home / "logs" / "job.log"), 1, 3)


def test_the_daemons_log_through_a_link_goes_to_stderr_only(home, victim, capsys):
    (home / "orchestrator.log").symlink_to(victim)
    log = oplog.open_oplog(home, 1000, 2, stream=sys.stderr)
    log("daemon_started -: hello")
    assert "daemon_started -: hello" in capsys.readouterr().err


# ---------------------------------------------------------------- aios.toml and its cache

def test_aios_toml_that_is_a_link_is_refused_in_one_line(home, tmp_path):
    elsewhere = tmp_path / "other.toml"
    elsewhere.write_text('[jobs.x]\ntype = "always"\ncommand = ["true"]\n')
    (home / "aios.toml").symlink_to(elsewhere)
    with pytest.raises(config.ConfigError) as caught:
        config.load(home)
    assert one_line(caught).startswith(f"{home}/aios.toml is a symbolic link")


def test_apply_replaces_aios_toml_and_its_backup_never_writing_through_links(home, victim):
    (home / "aios.toml").write_text("# one\n")
    (home / "aios.toml.prev").symlink_to(victim)
    config.write_config(home, "# two\n", backup=True)
    assert (home / "aios.toml").read_text() == "# two\n" and (home / "aios.toml.prev").read_text() == "# one\n"


def test_the_first_start_writes_nothing_through_a_planted_programs_link(home, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (home / "Programs").symlink_to(elsewhere)
    with pytest.raises(UnsafePath, match="/Programs is a symbolic link"):
        config.write_default(home)
    assert list(elsewhere.iterdir()) == []


FORGED = '{"key": %s, "deps": {}, "tables": {"pwned": {"type": "always", "command": ["touch", "%s"]}}, ' \
         '"errors": [], "invalid": {}, "settings": {}, "cwd": {}, "code": %s, "programs": {}}'


def test_an_edited_cache_never_adds_a_job_or_a_command(home, tmp_path):
    (home / "aios.toml").write_text('[jobs.svc]\ntype = "always"\nprogram = "svc.py:main"\n')
    (home / "Programs").mkdir()
    (home / "Programs" / "svc.py").write_text("def main():\n    pass\n")
    first = config.load(home, cache=True)
    saved = (home / ".aios.toml.cache").read_text()
    code = saved.split('"code": ', 1)[1].split(', "programs"', 1)[0]
    (home / ".aios.toml.cache").write_text(FORGED % (code, tmp_path / "pwned", code))
    again = config.load(home, cache=True)
    assert list(again.specs) == ["svc"] and again.specs == first.specs and "pwned" not in again.tables


def test_an_edited_cache_can_only_claim_a_function_the_runner_then_misses(home):
    (home / "Programs").mkdir()
    (home / "Programs" / "job.py").write_text("def other():\n    pass\n")
    (home / "aios.toml").write_text('[jobs.j]\ntype = "trigger"\nprogram = "job.py:main"\n')
    assert "j" not in config.load(home, cache=True).specs
    cache = home / ".aios.toml.cache"
    cache.write_text(cache.read_text().replace('["other"]', '["other", "main"]'))
    assert "j" in config.load(home, cache=True).specs     # believed, and harmless: the runner looks again
    done = subprocess.run([sys.executable, launch.RUNNER, str(home / "Programs"), "job.py:main", "{}"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "job.py has no function 'main'" in done.stderr


def test_a_cache_that_is_a_link_is_not_read_and_is_replaced(home, victim):
    (home / "aios.toml").write_text('[jobs.svc]\ntype = "always"\nprogram = "svc.py:main"\n')
    (home / "Programs").mkdir()
    (home / "Programs" / "svc.py").write_text("def main():\n    pass\n")
    (home / ".aios.toml.cache").symlink_to(victim)
    config.load(home, cache=True)
    assert not (home / ".aios.toml.cache").is_symlink()
    assert stat.S_IMODE((home / ".aios.toml.cache").stat().st_mode) == 0o600


# ---------------------------------------------------------------- the state database

@pytest.mark.parametrize("suffix", ["", "-wal", "-shm", "-journal"])
def test_a_link_at_the_database_or_a_file_beside_it_is_refused(home, victim, suffix):
    if suffix:
        SqliteStore(str(home / "orchestrator.db"), "dev").close()
    (home / f"orchestrator.db{suffix}").unlink(missing_ok=True)
    (home / f"orchestrator.db{suffix}").symlink_to(victim)
    with pytest.raises(StoreError) as caught:
        SqliteStore(str(home / "orchestrator.db"), "dev")
    assert one_line(caught).startswith(f"state database{' file' if suffix else ''} {home}/orchestrator.db{suffix} "
                                       "is a symbolic link; AIOS never follows one")


def test_a_database_others_may_write_is_refused(home):
    SqliteStore(str(home / "orchestrator.db"), "dev").close()
    os.chmod(home / "orchestrator.db", 0o666)
    with pytest.raises(StoreError) as caught:
        SqliteStore(str(home / "orchestrator.db"), "dev")
    assert one_line(caught) == (f"state database {home}/orchestrator.db has mode 0666: others may write it: "
                                f"chmod go-w {home}/orchestrator.db")


def test_a_database_of_another_user_is_refused(home):
    root_only()
    SqliteStore(str(home / "orchestrator.db"), "dev").close()
    os.chown(home / "orchestrator.db", NOBODY, NOBODY)
    with pytest.raises(StoreError, match=r"orchestrator.db belongs to nobody \(uid 65534\), not to root \(uid 0\)"):
        SqliteStore(str(home / "orchestrator.db"), "dev")
