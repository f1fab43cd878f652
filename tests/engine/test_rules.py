"""The engine's rules on fake clocks and fake processes: minutes and days of a job's life
in milliseconds, with no real process and no sleep."""
from __future__ import annotations

import errno
import signal

from aios.lifecycle import SPAWN_FAILURES

from .fakes import Harness, jobs


def test_a_crash_loop_backs_off_fails_and_is_probed_after_its_cool_down():
    h = Harness(jobs("""
        [jobs.crasher]
        type = "always"
        command = ["crash"]
        retries = 3
        backoff = "1s"
        failed_cooldown = "10m"
    """))
    gaps = []
    for _ in range(3):
        before = h.clock.boot()
        h.exit("crasher", 2)
        while h.status("crasher") == "backoff":
            h.advance(0.05)
        gaps.append(h.clock.boot() - before)
    assert h.status("crasher") == "failed" and gaps[0] < gaps[1]
    assert h.job("crasher").state.why.startswith("crash loop: 3 quick exits in a row (last: exited 2 after")
    h.advance(599)
    assert h.status("crasher") == "failed" and len(h.runs("crasher")) == 3
    h.advance(2)
    assert h.status("crasher") == "running" and len(h.runs("crasher")) == 4
    assert [e.name for e in h.events("job_probe")] == ["job_probe"]


def test_a_job_that_cannot_be_spawned_is_a_state_of_that_job_and_the_others_run_on():
    h = Harness(jobs("""
        [jobs.missing]
        type = "always"
        command = ["/no/such/binary"]
        retries = 2
        backoff = "1s"

        [jobs.fine]
        type = "always"
        command = ["sleep"]
    """))
    h.processes.fail["/no/such/binary"] = OSError(errno.ENOENT, "cannot start '/no/such/binary': "
                                                  "No such file or directory (ENOENT)")
    h.engine.ops.restart("missing")
    h.settle()
    assert h.status("missing") == "backoff" and h.status("fine") == "running"
    assert "No such file or directory (ENOENT)" in h.job("missing").state.why
    h.advance(5)
    state = h.job("missing").state
    assert state.status.value == "failed" and "(2 times in a row)" in state.why
    assert [r.outcome.value for r in h.runs("missing")][-2:] == ["spawn_failed", "spawn_failed"]
    assert h.status("fine") == "running"


def test_emfile_on_every_spawn_never_spins_the_engine():
    h = Harness(jobs("""
        [jobs.work]
        type = "trigger"
        command = ["work"]
        max_parallel = 3
    """))
    h.processes.fail["work"] = OSError(errno.EMFILE, "cannot start 'work': Too many open files (EMFILE)")
    ids = [h.engine.ops.trigger("work", [str(n)]) for n in range(20)]
    h.settle()
    assert h.status("work") == "backoff"
    h.advance(3600)
    assert h.status("work") == "failed"
    attempts = len(h.runs("work"))
    assert attempts <= SPAWN_FAILURES + 3600 / 600 + 1, f"{attempts} spawn attempts in an hour"
    del h.processes.fail["work"]
    h.advance(700)    # the cool-down is over: the queue runs, every acknowledged trigger kept
    for _ in range(30):
        h.exit("work", 0)
    assert all(h.store.get_trigger(i).outcome == "ok" for i in ids)


def test_a_held_job_stays_stopped_and_start_brings_it_back():
    h = Harness(jobs("""
        [jobs.svc]
        type = "always"
        command = ["svc"]
    """))
    h.engine.ops.stop("svc")
    h.settle()
    assert h.status("svc") == "stopped" and h.job("svc").state.held
    h.advance(3600)
    assert h.status("svc") == "stopped" and len(h.processes.spawned) == 1
    h.engine.ops.start("svc")
    h.settle()
    assert h.status("svc") == "running" and len(h.processes.spawned) == 2


def test_a_run_past_its_timeout_gets_its_stop_signal_then_sigkill():
    h = Harness(jobs("""
        [jobs.slow]
        type = "trigger"
        command = ["slow"]
        timeout = "30s"
        stop_timeout = "5s"
    """))
    h.engine.ops.trigger("slow")
    h.settle()
    pid = h.pids("slow")[0]
    h.processes.stubborn.add(pid)
    h.advance(29)
    assert h.processes.signals == []
    h.advance(2)
    assert h.processes.signals == [(pid, signal.SIGTERM)]
    h.advance(5)
    assert h.processes.signals[-1] == (pid, signal.SIGKILL)
    assert h.runs("slow")[-1].outcome.value == "timeout"


def test_retries_back_off_and_keep_their_trigger():
    h = Harness(jobs("""
        [jobs.flaky]
        type = "trigger"
        command = ["flaky"]
        retries = 2
        backoff = "10s"
    """))
    tid = h.engine.ops.trigger("flaky", ["x"])
    h.settle()
    h.exit("flaky", 1)
    assert h.status("flaky") == "backoff"
    h.advance(6)
    assert not h.pids("flaky")
    h.advance(5)
    assert h.pids("flaky") and h.processes.spawned[-1]["argv"] == ["flaky", "x"]
    h.exit("flaky", 0)
    assert [r.attempt for r in h.runs("flaky")] == [1, 2]
    assert h.store.get_trigger(tid).outcome == "ok"


def test_shutdown_requeues_the_trigger_it_cut_short():
    h = Harness(jobs("""
        [jobs.work]
        type = "trigger"
        command = ["work"]
    """))
    tid = h.engine.ops.trigger("work")
    h.settle()
    h.engine.shutdown("test")
    h.settle()
    assert h.engine.stopped
    trigger = h.store.get_trigger(tid)
    assert not trigger.done and trigger.claimed is None


def test_an_idle_job_runs_when_quiet_and_is_preempted_by_work():
    h = Harness(jobs("""
        [jobs.tidy]
        type = "idle"
        command = ["tidy"]
        idle_after = "10m"
        cooldown = "1h"

        [jobs.work]
        type = "trigger"
        command = ["work"]
    """))
    h.advance(599)
    assert not h.pids("tidy")
    h.advance(2)
    assert h.pids("tidy")
    h.engine.ops.trigger("work")
    h.settle()
    assert h.runs("tidy")[-1].outcome.value == "preempted" and h.pids("work")
    h.exit("work", 0)
    h.advance(601)
    assert h.pids("tidy"), "a preempted run does not count against the cooldown"


def test_a_trigger_for_a_missing_job_waits_and_runs_when_the_job_arrives():
    h = Harness(jobs("""
        [jobs.other]
        type = "trigger"
        command = ["other"]
    """))
    tid = h.store.add_trigger("later", ["a"], {}, h.clock.wall()).id   # written by another program
    h.engine.planner.refresh_queue(anyway=True)
    h.settle()
    row = [j for j in h.engine.ops.status() if j["name"] == "later"][0]
    assert row["status"] == "missing" and "1 trigger(s) wait" in row["why"]
    assert not h.store.get_trigger(tid).done
    from aios.engine.reconcile import reconcile
    from aios.config import Config

    tables = jobs("""
        [jobs.later]
        type = "trigger"
        command = ["later"]
    """)
    from aios.jobtable import parse_job

    cfg = Config(home=h.engine.home, settings=h.engine.settings, specs={"later": parse_job("later", tables["later"])},
                 tables=tables, errors=[])
    reconcile(h.engine, cfg)
    h.settle()
    assert h.processes.spawned[-1]["argv"] == ["later", "a"]


def test_a_trigger_is_refused_while_the_store_fails():
    h = Harness(jobs("""
        [jobs.work]
        type = "trigger"
        command = ["work"]
    """))
    from aios.store import StoreError

    h.engine.recorder.failed(StoreError("database disk image is malformed"))
    import pytest
    from aios.engine.operations import OperationError

    with pytest.raises(OperationError, match="the state database is failing"):
        h.engine.ops.trigger("work")


def test_a_requested_start_clears_a_crash_loop_verdict():
    h = Harness(jobs("""
        [jobs.crasher]
        type = "always"
        command = ["crash"]
        retries = 1
    """))
    h.exit("crasher", 1)
    assert h.status("crasher") == "failed"
    h.engine.ops.start("crasher")
    h.settle()
    assert h.status("crasher") == "running" and h.job("crasher").state.attempts == 0


def test_an_on_failure_job_that_exits_0_stays_stopped():
    h = Harness(jobs("""
        [jobs.once]
        type = "always"
        restart = "on-failure"
        command = ["once"]
    """))
    h.advance(5)
    h.exit("once", 0)
    h.advance(3600)
    assert h.status("once") == "stopped" and len(h.processes.spawned) == 1
    assert h.job("once").state.why.startswith("exited 0 after 5")


def test_a_trigger_whose_attempts_all_time_out_is_done_with_timeout():
    h = Harness(jobs("""
        [jobs.hang]
        type = "trigger"
        command = ["hang"]
        timeout = "200ms"
        retries = 1
        backoff = "10ms"
    """))
    tid = h.engine.ops.trigger("hang")
    h.advance(5)
    assert [(r.attempt, r.outcome.value, r.trigger_id) for r in h.runs("hang")] == [
        (1, "timeout", tid), (2, "timeout", tid)]
    assert (h.store.get_trigger(tid).outcome, h.status("hang")) == ("timeout", "waiting")


def test_the_daemon_prunes_old_history_in_small_batches_that_let_triggers_through():
    from aios.engine import housekeeping
    from aios.spec import Event, replace

    h = Harness(jobs("""
        [jobs.work]
        type = "trigger"
        command = ["work"]
    """))
    h.engine.settings = replace(h.engine.settings, retention_days=30.0)
    old = h.clock.wall() - 40 * 86400
    for n in range(housekeeping.PRUNE_BATCH * 2 + 10):
        h.store.add_event(Event(ts=old, name="ancient", message=str(n)))
    keeper = h.engine.ops.trigger("work")
    housekeeping.Housekeeping(h.engine).start()
    h.clock.advance(housekeeping.FIRST_PRUNE)
    h.loop.turn(0)                           # one batch ran; the next waits for the next turn
    assert len(h.events("ancient")) == housekeeping.PRUNE_BATCH + 10
    h.settle()
    assert h.events("ancient") == [] and [e.message for e in h.events("pruned")] == [
        f"{housekeeping.PRUNE_BATCH * 2 + 10} row(s) older than 30 days removed"]
    assert h.store.get_trigger(keeper) is not None
