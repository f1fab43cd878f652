"""circus as a system under test: `circusd circus.ini` (in the foreground) from the
peers' venv, one [watcher:NAME] per job, ipc endpoints in the work folder, stopped with
SIGTERM. It is ready when circusd answers a `status` command on its control endpoint
(probes/circus_probe.py, with the venv's pyzmq); its CLI is `circusctl --endpoint E`.
"""
from __future__ import annotations

import shlex
from collections.abc import Sequence

from .. import ROOT, peers
from . import Job
from .peer import Peer
from .probe import Probe

PROBE = ROOT / "bench" / "probes" / "circus_probe.py"


class Circus(Peer):
    name = "circus"
    interpreter = "python"

    def describe(self) -> str:
        return f"circus {self.install.version}: {peers.rel(peers.venv_bin('circusd'))} circus.ini ({self.install.note})"

    @property
    def endpoint(self) -> str:
        return f"ipc://{self.workdir}/circus.ctl"

    def argv(self) -> list[str]:
        return [str(peers.venv_bin("circusd")), str(self.workdir / "circus.ini")]

    def cli(self, action: str, job: str | None = None) -> list[str]:
        base = [str(peers.venv_bin("circusctl")), "--endpoint", self.endpoint]
        return base + {"help": ["--help"], "status": ["status"], "restart": ["restart", str(job)]}[action]

    def write_config(self, jobs: Sequence[Job] | None) -> None:
        work = self.workdir
        head = ["[circus]", f"endpoint = {self.endpoint}", f"pubsub_endpoint = ipc://{work}/circus.pub",
                "statsd = False", ""]
        watchers = [f"[watcher:{job.name}]\ncmd = {shlex.join(job.argv)}\nnumprocesses = 1\n" for job in jobs or ()]
        (work / "circus.ini").write_text("\n".join(head) + "\n".join(watchers))

    def readiness(self) -> Probe:
        return Probe([str(peers.venv_bin("python")), str(PROBE), self.endpoint,
                      str(self.workdir / "circus.ctl"), "120"], self.process_env())
