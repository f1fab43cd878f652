"""Where an AIOS home is found, and the dashboard's token it keeps."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from aios.home import TOKEN_FILE, TokenError, dashboard_token, find_home, new_dashboard_token

ROOT = Path(__file__).resolve().parents[1]


def test_find_home_prefers_the_environment(tmp_path, monkeypatch):
    (tmp_path / "aios.toml").write_text("")
    monkeypatch.setenv("AIOS_HOME", str(tmp_path / "elsewhere"))
    assert find_home(str(tmp_path)) == str(tmp_path / "elsewhere")


def test_find_home_relative_environment_becomes_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIOS_HOME", "rel")
    assert find_home() == str(tmp_path.resolve() / "rel")


def test_find_home_searches_upward(tmp_path):
    (tmp_path / "aios.toml").write_text("")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_home(str(deep)) == str(tmp_path.resolve())


def test_find_home_nearest_wins(tmp_path):
    (tmp_path / "aios.toml").write_text("")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "aios.toml").write_text("")
    assert find_home(str(tmp_path / "a")) == str((tmp_path / "a").resolve())


def test_find_home_defaults_to_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "aios.toml").write_text("")
    monkeypatch.chdir(tmp_path)
    assert find_home() == str(tmp_path.resolve())


def test_find_home_falls_back_to_dot_aios(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    start = tmp_path / "nowhere"
    start.mkdir()
    if any((p / "aios.toml").exists() for p in start.resolve().parents):
        pytest.skip("an aios.toml exists above the temporary folder")
    assert find_home(str(start)) == str(tmp_path / "user" / ".aios")


# ---------------------------------------------------------------- the dashboard's token

def test_the_token_is_made_once_private_and_kept(tmp_path):
    old = os.umask(0)
    try:
        token = dashboard_token(tmp_path)
    finally:
        os.umask(old)
    path = tmp_path / TOKEN_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.stat().st_uid == os.geteuid()
    assert len(token) >= 40 and token.replace("-", "").replace("_", "").isalnum()
    assert dashboard_token(tmp_path) == token and path.read_text() == token + "\n"
    assert [p.name for p in tmp_path.iterdir()] == [TOKEN_FILE], "no temporary file is left"


def test_a_configured_token_wins_once_it_passes_the_check(tmp_path):
    assert dashboard_token(tmp_path, "a-configured-token-42x") == "a-configured-token-42x"
    assert not (tmp_path / TOKEN_FILE).exists()
    with pytest.raises(TokenError):
        dashboard_token(tmp_path, "change-me")


def test_a_new_token_replaces_the_old(tmp_path):
    first = dashboard_token(tmp_path)
    second = new_dashboard_token(tmp_path)
    assert second != first and dashboard_token(tmp_path) == second
    assert stat.S_IMODE((tmp_path / TOKEN_FILE).stat().st_mode) == 0o600


def test_the_token_is_never_read_or_written_through_a_link(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("not-a-secret-but-long-enough\n")
    os.chmod(target, 0o600)
    home = tmp_path / "home"
    home.mkdir()
    (home / TOKEN_FILE).symlink_to(target)
    with pytest.raises(TokenError) as err:
        dashboard_token(home)
    assert str(err.value).startswith(f"cannot read {home / TOKEN_FILE}: Too many levels of symbolic links")
    assert target.read_text() == "not-a-secret-but-long-enough\n"


@pytest.mark.parametrize("mode, content, why", [
    (0o640, "tok-3f8a1c9e7b2d5064\n", "has mode 0640; others may read it"),
    (0o600, "short\n", "holds no usable token"),
])
def test_a_token_file_that_cannot_be_trusted_is_refused(tmp_path, mode, content, why):
    path = tmp_path / TOKEN_FILE
    path.write_text(content)
    os.chmod(path, mode)
    with pytest.raises(TokenError) as err:
        dashboard_token(tmp_path)
    assert str(err.value).startswith(f"{path} {why}")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the file to another user")
def test_a_token_file_of_another_user_is_refused(tmp_path):
    path = tmp_path / TOKEN_FILE
    path.write_text("tok-3f8a1c9e7b2d5064\n")
    os.chmod(path, 0o600)
    os.chown(path, 65534, 65534)
    with pytest.raises(TokenError) as err:
        dashboard_token(tmp_path)
    assert str(err.value).startswith(f"{path} belongs to uid 65534, not to this user (0)")


def test_a_missing_home_says_so(tmp_path):
    with pytest.raises(TokenError) as err:
        dashboard_token(tmp_path / "nowhere")
    assert str(err.value) == f"no AIOS home at {tmp_path / 'nowhere'} (start one with: aios up -d)"


def test_first_uses_at_once_agree_on_one_token(tmp_path):
    script = "import sys; from aios.home import dashboard_token; print(dashboard_token(sys.argv[1]))"
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT) for _ in range(8)]
    tokens = {proc.communicate(timeout=60)[0].strip() for proc in procs}
    assert len(tokens) == 1 and tokens == {(tmp_path / TOKEN_FILE).read_text().strip()}
