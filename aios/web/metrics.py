"""GET /metrics: the daemon and its jobs in the Prometheus text format (version 0.0.4),
read through the control protocol at each scrape.

    aios_daemon_up                              1 while the daemon answers, else 0
    aios_daemon_info{version,python,device}     1
    aios_daemon_start_time_seconds              when the daemon started (epoch)
    aios_daemon_resident_memory_bytes           its VmRSS
    aios_daemon_cpu_seconds_total               its user + system CPU time
    aios_job_up{job}                            1 while running
    aios_job_state{job,state}                   1 for its state, 0 for every other
    aios_job_restarts_total{job}                times the daemon restarted it after it exited
    aios_job_queued_triggers{job}               triggers waiting for a run
    aios_job_last_success_timestamp_seconds{job}  end of its newest run with outcome ok
    aios_job_runs_total{job,outcome}            runs ended, by outcome
    aios_job_run_duration_seconds{job}          histogram of how long ended runs took

The last three come from the runs table (op `history`), counted by `RunTally` as they end:
they start from the newest SEED runs when the dashboard starts and, like any counter,
restart with it (Prometheus' rate() and increase() expect that). Imports spec (the job
states) from aios.
"""
from __future__ import annotations

import asyncio

from ..errors import AiosError
from ..spec import Status

BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, float("inf"))
SEED = 1000                 # runs counted when the dashboard starts
PAGE, PAGE_MAX = 200, 10_000    # runs read per scrape; more while a whole page is new
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class RunTally:
    """Runs counted once each as they end: by job and outcome, their durations, and the
    newest success of each job. `pending` holds the runs seen still running."""

    def __init__(self):
        self.newest = None          # the highest run id looked at; None before the first scrape
        self.pending: dict[int, str] = {}      # run id -> job, seen running
        self.runs: dict[tuple[str, str], int] = {}
        self.durations: dict[str, list] = {}   # job -> [count per bucket..., sum]
        self.last_success: dict[str, float] = {}
        self.lock: asyncio.Lock | None = None  # made in the loop that scrapes

    async def update(self, daemon) -> None:
        """Count what ended since the last call (one call at a time)."""
        if self.lock is None:
            self.lock = asyncio.Lock()
        async with self.lock:
            await self._update(daemon)

    async def _update(self, daemon) -> None:
        limit = SEED if self.newest is None else PAGE
        while True:
            runs = await daemon.call("history", limit=limit)
            if self.newest is None or len(runs) < limit or runs[-1]["id"] <= self.newest or limit >= PAGE_MAX:
                break
            limit = min(limit * 4, PAGE_MAX)    # a whole page is new: there may be more
        lost = [rid for rid in self.pending if runs and rid < runs[-1]["id"]]
        for run in reversed(runs + await self._older(daemon, lost)):
            self._see(run)
        if runs:
            self.newest = max(self.newest or 0, runs[0]["id"])
        elif self.newest is None:
            self.newest = 0

    async def _older(self, daemon, ids: list[int]) -> list[dict]:
        """The pending runs older than the page, among the newest of their own job (a long
        run beside many short ones); one not found there is no longer followed."""
        found = []
        for job in {self.pending[rid] for rid in ids}:
            found += [run for run in await daemon.call("history", job=job, limit=PAGE) if run["id"] in ids]
        for rid in set(ids) - {run["id"] for run in found}:
            del self.pending[rid]
        return found

    def _see(self, run: dict) -> None:
        rid, job = run["id"], run["job"]
        fresh = self.newest is None or rid > self.newest
        if not (fresh or rid in self.pending):
            return
        if run.get("outcome") is None:
            self.pending[rid] = job
            return
        self.pending.pop(rid, None)
        key = (job, str(run["outcome"]))
        self.runs[key] = self.runs.get(key, 0) + 1
        took = max(0.0, (run.get("ended") or run["started"]) - run["started"])
        counts = self.durations.setdefault(job, [0] * len(BUCKETS) + [0.0])
        for i, bound in enumerate(BUCKETS):
            counts[i] += took <= bound
        counts[-1] += took
        if run["outcome"] == "ok" and run.get("ended"):
            self.last_success[job] = max(self.last_success.get(job, 0.0), run["ended"])


async def scrape(daemon, tally: RunTally) -> bytes:
    """The metrics text; with the daemon away, aios_daemon_up 0 and the runs counted so far."""
    try:
        about, jobs = await daemon.call("about"), await daemon.call("status")
        await tally.update(daemon)
    except (AiosError, OSError, ValueError, asyncio.TimeoutError):
        about, jobs = None, []
    out = Exposition()
    out.gauge("aios_daemon_up", "1 while the AIOS daemon answers on its socket", [((), int(about is not None))])
    if about is not None:
        _daemon(out, about)
    _jobs(out, jobs)
    _runs(out, tally)
    return out.text()


def _daemon(out: Exposition, about: dict) -> None:
    labels = (("version", about.get("version")), ("python", about.get("python")), ("device", about.get("device")))
    out.gauge("aios_daemon_info", "the daemon's version, Python and device", [(labels, 1)])
    out.gauge("aios_daemon_start_time_seconds", "when the daemon started, in seconds since the epoch",
              [((), about.get("started"))])
    if about.get("rss_kib") is not None:
        out.gauge("aios_daemon_resident_memory_bytes", "the daemon's resident memory", [((), about["rss_kib"] * 1024)])
    out.counter("aios_daemon_cpu_seconds_total", "the daemon's user and system CPU time",
                [((), about.get("cpu_seconds"))])


def _jobs(out: Exposition, jobs: list[dict]) -> None:
    named = [(job, (("job", job["name"]),)) for job in jobs]
    out.gauge("aios_job_up", "1 while the job runs", [(job_label, int(job["status"] == "running"))
                                                      for job, job_label in named])
    out.gauge("aios_job_state", "1 for the state the job is in, 0 for the others",
              [((*job_label, ("state", state.value)), int(job["status"] == state.value))
               for job, job_label in named for state in Status])
    out.counter("aios_job_restarts_total", "times the daemon restarted the job after it exited",
                [(job_label, job.get("restarts") or 0) for job, job_label in named])
    out.gauge("aios_job_queued_triggers", "triggers of the job waiting for a run",
              [(job_label, job.get("queued") or 0) for job, job_label in named])


def _runs(out: Exposition, tally: RunTally) -> None:
    out.gauge("aios_job_last_success_timestamp_seconds", "when the job's newest successful run ended",
              [((("job", job),), when) for job, when in sorted(tally.last_success.items())])
    out.counter("aios_job_runs_total", "runs ended, by outcome (counted since the dashboard started)",
                [((("job", job), ("outcome", outcome)), n) for (job, outcome), n in sorted(tally.runs.items())])
    out.histogram("aios_job_run_duration_seconds", "how long ended runs took", tally.durations)


class Exposition:
    """Lines of the text format: HELP and TYPE, then the samples of each family."""

    def __init__(self):
        self.lines: list[str] = []

    def gauge(self, name: str, help_text: str, samples) -> None:
        self._family(name, "gauge", help_text, [(name, labels, value) for labels, value in samples])

    def counter(self, name: str, help_text: str, samples) -> None:
        self._family(name, "counter", help_text, [(name, labels, value) for labels, value in samples])

    def histogram(self, name: str, help_text: str, per_job: dict) -> None:
        samples = []
        for job, counts in sorted(per_job.items()):
            for bound, count in zip(BUCKETS, counts):
                samples.append((f"{name}_bucket", (("job", job), ("le", _number(bound))), count))
            samples += [(f"{name}_sum", (("job", job),), counts[-1]), (f"{name}_count", (("job", job),), counts[-2])]
        self._family(name, "histogram", help_text, samples)

    def _family(self, name: str, kind: str, help_text: str, samples) -> None:
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for sample, labels, value in samples:
            if value is not None:
                self.lines.append(f"{sample}{_labels(labels)} {_number(value)}")

    def text(self) -> bytes:
        return ("\n".join(self.lines) + "\n").encode()


def _labels(labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{_escape(str(value))}"' for key, value in labels) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if isinstance(value, float) else str(int(value))
