"""Where an AIOS home is found."""
from __future__ import annotations

import pytest

from aios.home import find_home


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
