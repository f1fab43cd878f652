"""supervisord as a system under test: `supervisord -n -c supervisord.conf` (in the
foreground, as under systemd) from the peers' venv, one [program:NAME] per job, stopped
with SIGTERM. It is ready when its XML-RPC interface on the unix socket answers
`supervisor.getState` with RUNNING (an HTTP/1.0 POST over the socket, standard library);
its CLI is `supervisorctl -c supervisord.conf`.
"""
from __future__ import annotations

import shlex
from collections.abc import Sequence

from .. import peers
from . import Job
from .peer import Peer
from .probe import Asker

_CALL = (b"<?xml version='1.0'?><methodCall><methodName>supervisor.getState</methodName>"
         b"<params></params></methodCall>")
GET_STATE = (b"POST /RPC2 HTTP/1.0\r\nHost: localhost\r\nContent-Type: text/xml\r\n"
             b"Content-Length: %d\r\n\r\n" % len(_CALL)) + _CALL


class Supervisord(Peer):
    name = "supervisord"
    interpreter = "python"

    def describe(self) -> str:
        return f"supervisor {self.install.version}: {peers.rel(peers.venv_bin('supervisord'))} -n ({self.install.note})"

    @property
    def conf(self) -> str:
        return str(self.workdir / "supervisord.conf")

    def argv(self) -> list[str]:
        return [str(peers.venv_bin("supervisord")), "-n", "-c", self.conf]

    def cli(self, action: str, job: str | None = None) -> list[str]:
        base = [str(peers.venv_bin("supervisorctl")), "-c", self.conf]
        return base + {"help": ["--help"], "status": ["status"], "restart": ["restart", str(job)]}[action]

    def write_config(self, jobs: Sequence[Job] | None) -> None:
        work = self.workdir
        (work / "logs").mkdir()
        fds = max(1024, 8 * len(jobs or ()) + 256)      # pipes and log files per process
        head = [
            "[unix_http_server]", f"file={work}/supervisor.sock", "",
            "[supervisord]", f"logfile={work}/supervisord.log", f"pidfile={work}/supervisord.pid",
            f"childlogdir={work}/logs", "nodaemon=true", f"minfds={fds}",
            f"minprocs={max(200, len(jobs or ()) + 100)}", "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface", "",
            "[supervisorctl]", f"serverurl=unix://{work}/supervisor.sock", "",
        ]
        programs = [f"[program:{job.name}]\ncommand={shlex.join(job.argv)}\nautorestart=true\n" for job in jobs or ()]
        (work / "supervisord.conf").write_text("\n".join(head) + "\n".join(programs))

    def readiness(self) -> Asker:
        return Asker(str(self.workdir / "supervisor.sock"), GET_STATE,
                     lambda reply: b"</methodResponse>" in reply and b"RUNNING" in reply)
