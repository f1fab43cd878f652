"""GET /metrics against a real daemon, read back with the official Prometheus parser
(prometheus_client): names, types, labels and values; runs counted once each as they
end; the credential rules; the daemon away."""
from __future__ import annotations

import os

import pytest

from aios import control
from aios.spec import Status
from aios.web.metrics import BUCKETS, Exposition, RunTally

from ..integration.conftest import wait_until
from .conftest import BEARER, Login, Served, request, start_daemon, stop_daemon

JOBS = """
[jobs.svc]
type = "always"
command = ["sleep", "100000"]

[jobs.good]
type = "trigger"
command = ["true"]
max_parallel = 4

[jobs.bad]
type = "trigger"
command = ["false"]

[jobs.slow]
type = "trigger"
command = ["sleep", "100000"]
"""


@pytest.fixture(scope="module")
def parser():
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        message = "the metrics tests need prometheus_client (pip install prometheus_client); ./run-tests installs it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return text_string_to_metric_families


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    daemon = start_daemon(tmp_path_factory.mktemp("metrics") / "home", JOBS)
    served = Served(daemon.home)
    yield daemon, served
    served.close()
    stop_daemon(daemon)


def scrape(served, parser, headers=BEARER) -> dict:
    """{family name: (type, {(sample name, labels as a sorted tuple): value})}."""
    code, reply_headers, text = request(f"{served.url}/metrics", headers=headers)
    assert code == 200, text
    assert reply_headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return {family.name: (family.type, {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples})
            for family in parser(text)}


def value(families: dict, family: str, sample: str | None = None, **labels):
    return families[family][1].get((sample or family, tuple(sorted(labels.items()))))


def run(home, job: str, times: int = 1) -> None:
    for trigger in [control.call(home, "trigger", job=job) for _ in range(times)]:
        control.call(home, "wait", trigger=trigger)


def test_the_daemon_and_its_jobs(site, parser):
    daemon, served = site
    wait_until(lambda: control.call(daemon.home, "status", job="svc")[0]["status"] == "running")
    families = scrape(served, parser)
    assert families["aios_daemon_up"][0] == "gauge" and value(families, "aios_daemon_up") == 1
    assert value(families, "aios_daemon_resident_memory_bytes") > 1 << 20
    assert families["aios_daemon_cpu_seconds"][0] == "counter"     # the parser drops _total from the family
    assert value(families, "aios_daemon_cpu_seconds", "aios_daemon_cpu_seconds_total") > 0
    about = control.call(daemon.home, "about")
    assert value(families, "aios_daemon_start_time_seconds") == pytest.approx(about["started"])
    assert value(families, "aios_daemon_info", version=about["version"], python=about["python"],
                 device=about["device"]) == 1
    assert value(families, "aios_job_up", job="svc") == 1 and value(families, "aios_job_up", job="good") == 0
    states = {s.value: value(families, "aios_job_state", job="svc", state=s.value) for s in Status}
    assert states == {s.value: float(s is Status.RUNNING) for s in Status}
    assert families["aios_job_restarts"][0] == "counter"
    assert value(families, "aios_job_restarts", "aios_job_restarts_total", job="svc") == 0
    assert value(families, "aios_job_queued_triggers", job="good") == 0


def test_runs_are_counted_once_each_as_they_end(site, parser):
    daemon, served = site
    slow = control.call(daemon.home, "trigger", job="slow")
    run(daemon.home, "good", 3)
    run(daemon.home, "bad")
    wait_until(lambda: control.call(daemon.home, "status", job="slow")[0]["status"] == "running")
    first = scrape(served, parser)
    runs = lambda families, job, outcome: value(families, "aios_job_runs", "aios_job_runs_total",  # noqa: E731
                                                job=job, outcome=outcome)
    assert runs(first, "good", "ok") == 3 and runs(first, "bad", "failed") == 1
    assert ("aios_job_runs_total", (("job", "slow"), ("outcome", "ok"))) not in first["aios_job_runs"][1]
    assert runs(scrape(served, parser), "good", "ok") == 3, "a second scrape counts nothing twice"
    duration = first["aios_job_run_duration_seconds"]
    assert duration[0] == "histogram"
    buckets = [duration[1][("aios_job_run_duration_seconds_bucket", (("job", "good"), ("le", le)))]
               for le in ("0.1", "0.5", "1.0", "5.0", "10.0", "30.0", "60.0", "300.0", "900.0", "3600.0", "+Inf")]
    assert buckets == sorted(buckets) and buckets[-1] == 3 == duration[1][
        ("aios_job_run_duration_seconds_count", (("job", "good"),))]
    newest_ok = max(r["ended"] for r in control.call(daemon.home, "history", job="good", limit=10))
    assert value(first, "aios_job_last_success_timestamp_seconds", job="good") == pytest.approx(newest_ok)
    run(daemon.home, "good", 2)
    control.call(daemon.home, "stop", job="slow")
    wait_until(lambda: control.call(daemon.home, "history", job="slow", limit=1)[0]["outcome"])
    later = scrape(served, parser)
    assert runs(later, "good", "ok") == 5, "the runs since the last scrape, once"
    outcome = control.call(daemon.home, "history", job="slow", limit=1)[0]["outcome"]
    assert runs(later, "slow", outcome) == 1, "a run seen running is counted when it ends"
    assert control.call(daemon.home, "wait", trigger=slow)["trigger"] == slow


def test_metrics_need_a_credential(site, parser):
    _, served = site
    assert request(f"{served.url}/metrics")[0] == 401
    assert request(f"{served.url}/metrics", headers={"Authorization": "Bearer nope"})[0] == 401
    page = Login(served)
    assert value(scrape(served, parser, {"Cookie": page.cookie}), "aios_daemon_up") == 1


def test_without_a_daemon_it_says_so(tmp_path, parser):
    served = Served(tmp_path / "home")
    try:
        families = scrape(served, parser)
        assert value(families, "aios_daemon_up") == 0 and families["aios_job_up"][1] == {}
    finally:
        served.close()


def test_label_values_are_escaped(parser):
    out = Exposition()
    hostile = 'lab "pc"\nback\\slash'
    out.gauge("aios_daemon_info", "x", [((("device", hostile),), 1)])
    (family,) = parser(out.text().decode())
    assert family.samples[0].labels == {"device": hostile}


def test_a_page_of_new_runs_reads_further_back():
    """More runs ended between two scrapes than one page holds: the tally reads bigger
    pages until it reaches runs it has seen, so none is missed."""
    import asyncio

    history = [{"id": i, "job": "j", "started": 0.0, "ended": 1.0, "outcome": "ok"} for i in range(5000, 0, -1)]

    class Daemon:
        def __init__(self):
            self.runs = history[-10:]       # the first scrape sees ten

        async def call(self, op, limit, job=None):
            return self.runs[:limit]

    daemon, tally = Daemon(), RunTally()
    asyncio.run(tally.update(daemon))
    assert tally.runs == {("j", "ok"): 10}
    daemon.runs = history           # 4,990 more
    asyncio.run(tally.update(daemon))
    assert tally.runs == {("j", "ok"): 5000} and tally.durations["j"][len(BUCKETS)] == 5000
