"""pm2 as a system under test: `pm2 start ecosystem.config.js` (npm's pm2 under
bench/.node, run with the real node binary) with PM2_HOME in the work folder, one app
per job (`interpreter: "none"`, so the program is spawned directly), stopped with
`pm2 kill`. The launched CLI starts pm2's daemon ("God Daemon", pid in PM2_HOME/pm2.pid)
and exits; the managed processes are the daemon's children. It is ready when the daemon
answers its `ping` RPC on PM2_HOME/rpc.sock (probes/pm2_probe.js, pm2's own RPC
modules); its CLI is `pm2`.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Sequence

from .. import ROOT, measure, peers
from . import STOP_GRACE, Job
from .peer import Peer
from .probe import Probe

PROBE = ROOT / "bench" / "probes" / "pm2_probe.js"


class Pm2(Peer):
    name = "pm2"
    interpreter = "node"
    stop_how = "`pm2 kill`"

    def __init__(self, env, scratch, install: peers.Install):
        super().__init__(env, scratch, install)
        self.killer: subprocess.Popen | None = None
        self._daemon: measure.Ident | None = None

    def describe(self) -> str:
        return (f"pm2 {self.install.version}: {peers.node()} {peers.rel(peers.pm2_bin())} "
                f"start ecosystem.config.js ({self.install.note})")

    @property
    def pm2_home(self):
        return self.workdir / "home"

    def process_env(self) -> dict[str, str]:
        return {**self.env, "PM2_HOME": str(self.pm2_home)}

    def _pm2(self, *args: str) -> list[str]:
        return [peers.node(), str(peers.pm2_bin()), *args]

    def argv(self) -> list[str]:
        return self._pm2("start", str(self.workdir / "ecosystem.config.js"))

    def cli(self, action: str, job: str | None = None) -> list[str]:
        return self._pm2(*{"help": ["--help"], "status": ["status"], "restart": ["restart", str(job)]}[action])

    def write_config(self, jobs: Sequence[Job] | None) -> None:
        self.pm2_home.mkdir()
        apps = [{"name": job.name, "script": job.argv[0], "args": list(job.argv[1:]), "interpreter": "none",
                 "autorestart": True} for job in jobs or ()]
        (self.workdir / "ecosystem.config.js").write_text(f"module.exports = {json.dumps({'apps': apps}, indent=1)};\n")

    def readiness(self) -> Probe:
        self._daemon = None
        return Probe([peers.node(), str(PROBE), str(peers.pm2_bin().parent.parent),
                      str(self.pm2_home / "rpc.sock"), "300"], self.process_env())

    @property
    def daemon_pid(self) -> int | None:
        """The God Daemon, once its pid file names a live process."""
        if self._daemon is None and self.workdir is not None:
            try:
                pid = int((self.pm2_home / "pm2.pid").read_text().strip() or 0)
            except (OSError, ValueError):
                return None
            self._daemon = measure.identity(pid) if pid else None
            if self._daemon is not None:      # its forked, not yet exec'd children show this
                self._daemon_cmdline = measure.cmdline(pid)
        return self._daemon.pid if self._daemon else None

    def stop(self) -> None:
        self.killer = subprocess.Popen(self._pm2("kill"), env=self.process_env(), cwd=str(self.workdir),
                                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def exited(self) -> bool:
        """The daemon ran and is gone (not our child: reaped by init, or a zombie there)."""
        return self.daemon_pid is not None and not measure.alive(self._daemon)

    def died(self) -> str | None:
        if self.proc is not None and self.proc.poll() not in (None, 0):
            return f"`pm2 start` exited with status {self.proc.returncode}: {self.log_tail()}"
        if self.killer is None and self.exited():
            return f"the pm2 daemon (pid {self._daemon.pid}) exited: {self._pm2_log_tail()}"
        return None

    def _pm2_log_tail(self) -> str:
        try:
            return " | ".join((self.pm2_home / "pm2.log").read_text(errors="replace").strip().splitlines()[-3:])
        except OSError:
            return "(no pm2.log)"

    def stop_daemon(self) -> None:
        """`pm2 kill`, then SIGKILL whatever of the daemon and the CLIs is left."""
        if self.workdir is not None and self.daemon_pid is not None and not self.exited():
            if self.killer is None or self.killer.poll() is not None:
                self.stop()
            _wait(self.killer, STOP_GRACE * 3)
        if self._daemon is not None and measure.alive(self._daemon):
            os.kill(self._daemon.pid, signal.SIGKILL)
        for proc in (self.proc, self.killer):
            if proc is not None and proc.poll() is None:
                proc.kill()
            _wait(proc, STOP_GRACE)
        self.killer, self._daemon = None, None


def _wait(proc: subprocess.Popen | None, timeout: float) -> None:
    if proc is None:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
