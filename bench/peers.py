"""The peers' installations, made by the harness itself into folders of its own (never
globally) when missing: supervisord and circus into a venv at bench/.peers (created with
`sys.executable -m venv`, so they run on the same interpreter as AIOS), pm2 with npm
under bench/.node. Versions are pinned so that every run compares the same peers; a
peer that cannot be installed is returned with the reason, and the table shows it.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

from . import ROOT

VENV = ROOT / "bench" / ".peers"
NODE_PREFIX = ROOT / "bench" / ".node"
# circus 0.19.0 runs on Python 3.11 with the current pyzmq and tornado (checked here);
# the pins keep later releases from changing what is compared.
PIP_PINS = {
    "supervisor": ["supervisor==4.3.0"],
    "circus": ["circus==0.19.0", "pyzmq==27.3.0", "tornado==6.6.1", "psutil==7.2.2"],
}
PM2_PIN = "pm2@7.0.4"
INSTALL_TIMEOUT = 600


class Install(NamedTuple):
    """Where a peer is, its version, or why it is not there."""

    name: str
    version: str | None = None
    error: str | None = None
    note: str = ""


def venv_bin(name: str) -> Path:
    return VENV / "bin" / name


def node() -> str | None:
    found = shutil.which("node")
    return str(Path(found).resolve()) if found else None


def pm2_bin() -> Path:
    return NODE_PREFIX / "node_modules" / "pm2" / "bin" / "pm2"


def ensure_all(say) -> dict[str, Install]:
    """Install whatever is missing; return {peer: Install}."""
    return {"supervisord": ensure_pip("supervisor", "supervisord", say),
            "circus": ensure_pip("circus", "circusd", say),
            "pm2": ensure_pm2(say)}


def installed() -> dict[str, Install]:
    """The peers already installed by an earlier run; installs nothing."""
    found = {"supervisord": _pip_installed("supervisor", "supervisord"), "circus": _pip_installed("circus", "circusd"),
             "pm2": _pm2_installed() if node() else None}
    return {name: install for name, install in found.items() if install is not None}


def _pip_installed(package: str, script: str) -> Install | None:
    version = _pip_version(package)
    if version and venv_bin(script).exists():
        return Install(package, version, note=f"pip {' '.join(PIP_PINS[package])} in {rel(VENV)}")
    return None


def ensure_pip(package: str, script: str, say) -> Install:
    found = _pip_installed(package, script)
    if found is not None:
        return found
    try:
        if not venv_bin("python").exists():
            say(f"creating {rel(VENV)} with {sys.executable} -m venv")
            _run([sys.executable, "-m", "venv", str(VENV)])
        say(f"installing {' '.join(PIP_PINS[package])} into {rel(VENV)}")
        _run([str(venv_bin("python")), "-m", "pip", "install", "--disable-pip-version-check", "-q",
              *PIP_PINS[package]])
    except InstallError as exc:
        return Install(package, error=f"could not be installed: {exc}")
    return _pip_installed(package, script) or Install(
        package, error=f"could not be installed: {script} missing after pip install")


def _pip_version(package: str) -> str | None:
    python = venv_bin("python")
    if not python.exists():
        return None
    done = subprocess.run([str(python), "-c", f"import importlib.metadata as m; print(m.version({package!r}))"],
                          capture_output=True, text=True, check=False)
    return done.stdout.strip() or None if done.returncode == 0 else None


def ensure_pm2(say) -> Install:
    if node() is None:
        return Install("pm2", error="could not be installed: node is not on PATH")
    if not pm2_version():
        npm = shutil.which("npm")
        if npm is None:
            return Install("pm2", error="could not be installed: npm is not on PATH")
        say(f"installing {PM2_PIN} under {rel(NODE_PREFIX)}")
        NODE_PREFIX.mkdir(parents=True, exist_ok=True)
        try:
            _run([npm, "install", "--prefix", str(NODE_PREFIX), "--no-audit", "--no-fund", "--no-save", PM2_PIN])
        except InstallError as exc:
            return Install("pm2", error=f"could not be installed: {exc}")
    return _pm2_installed() or Install("pm2", error="could not be installed: no node_modules/pm2 after npm install")


def _pm2_installed() -> Install | None:
    version = pm2_version()
    if not version:
        return None
    return Install("pm2", version, note=f"npm {PM2_PIN} under {rel(NODE_PREFIX)}, node {_node_version()}")


def pm2_version() -> str | None:
    """From package.json: running `pm2 --version` would start a daemon."""
    meta = NODE_PREFIX / "node_modules" / "pm2" / "package.json"
    try:
        return json.loads(meta.read_text())["version"] if pm2_bin().exists() else None
    except (OSError, ValueError, KeyError):
        return None


def _node_version() -> str:
    return subprocess.run([node(), "--version"], capture_output=True, text=True, check=False).stdout.strip()


class InstallError(Exception):
    pass


def _run(argv: list[str]) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InstallError(f"{Path(argv[0]).name}: {exc}") from None
    if done.returncode != 0:
        tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-2:])
        raise InstallError(f"{Path(argv[0]).name} exited {done.returncode}: {tail[:300]}")


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))
