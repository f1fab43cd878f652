"""aios.keep_bytecode: with bytecode writing off (PYTHONDONTWRITEBYTECODE), AIOS's entry
points keep its .pyc files under the user's cache, never beside the sources; with it on,
or with a prefix chosen already, nothing changes. Real interpreters, real files."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROBE = ("import sys; from aios import keep_bytecode; keep_bytecode(); import aios.spec; "
         "print(sys.pycache_prefix, sys.dont_write_bytecode)")


def probe(tmp_path, **env) -> list[str]:
    """What keep_bytecode did in a fresh interpreter running a copy of the package (so
    that no __pycache__ is ever written into this repository)."""
    clone = tmp_path / "clone"
    if not clone.exists():
        shutil.copytree(REPO / "aios", clone / "aios", ignore=shutil.ignore_patterns("__pycache__"))
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, cwd=clone,
                          env={**base, "XDG_CACHE_HOME": str(tmp_path / "cache"), **env}, check=True)
    return done.stdout.split()


def test_with_bytecode_off_aios_is_compiled_once_into_the_users_cache(tmp_path):
    prefix, off = probe(tmp_path, PYTHONDONTWRITEBYTECODE="1")
    assert (prefix, off) == (str(tmp_path / "cache" / "aios" / "pycache"), "False")
    compiled = list(Path(prefix).rglob("spec.*.pyc"))
    assert compiled and str(tmp_path / "clone" / "aios") in str(compiled[0]), "the prefix mirrors the source path"
    assert not list((tmp_path / "clone").rglob("__pycache__")), "nothing beside the sources"
    assert not (tmp_path / "cache" / "aios" / "pycache").stat().st_mode & 0o077, "the cache is the user's own"


@pytest.mark.parametrize("env, expected", [
    ({}, ["None", "False"]),                                                    # bytecode is written anyway
    ({"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": "/nonexistent/chosen"}, ["/nonexistent/chosen", "True"]),
    ({"PYTHONDONTWRITEBYTECODE": "1", "AIOS_NO_BYTECODE_CACHE": "1"}, ["None", "True"]),      # the opt-out
])
def test_nothing_changes_otherwise(tmp_path, env, expected):
    assert probe(tmp_path, **env) == expected
    assert not (tmp_path / "cache").exists()


def test_a_cache_that_cannot_be_made_changes_nothing(tmp_path):
    (tmp_path / "cache").write_text("a file where the folder would be")
    assert probe(tmp_path, PYTHONDONTWRITEBYTECODE="1") == ["None", "True"]
