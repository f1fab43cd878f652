"""The lifecycle table: total, and its invariants hold over thousands of random event
sequences (Hypothesis), each carried out the way the engine carries out actions
(aios.states.Model); then a few hand-written sequences that read as the rules."""
from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings, strategies as st

from aios import lifecycle as lc, states
from aios.record import replace
from aios.spec import JobSpec, JobType, Outcome, Status

T = lc.Moment(boot=1000.0, wall=1_700_000_000.0, u=0.3)
DOCS = Path(__file__).resolve().parents[1] / "docs" / "states.md"


def spec_of(kind: JobType, **fields) -> JobSpec:
    timing = {JobType.INTERVAL: {"interval": 60.0}, JobType.TRIGGER: {}, JobType.IDLE: {},
              JobType.ALWAYS: {}, JobType.DAILY: {}}[kind]
    return JobSpec(name="j", type=kind, command=("x",), **{**timing, **fields})


# ---------------------------------------------------------------- strategies

specs = st.builds(
    lambda kind, retries, min_uptime, restart, parallel, hooks: spec_of(
        kind, retries=retries, min_uptime=min_uptime, max_parallel=parallel, **hooks,
        **({"restart": restart} if kind is JobType.ALWAYS else {})),
    st.sampled_from([JobType.ALWAYS, JobType.INTERVAL, JobType.TRIGGER, JobType.IDLE]),
    st.integers(0, 3), st.sampled_from([0.0, 1.0]), st.sampled_from(["always", "on-failure"]),
    st.integers(1, 3), st.sampled_from([{}, {"on_failure": "n"}, {"on_success": "n", "on_failure": "n"}]))

requests = st.sampled_from([
    lc.Start(), lc.Stop(), lc.Restart(), lc.Enable(), lc.Disable(), lc.RunNow(), lc.Consider(),
    lc.Reconfigure(restart=True), lc.Reconfigure(ineligible="tag missing on this device: gpu"),
    lc.Reconfigure(spec_enabled=False), lc.Reconfigure(), lc.Queued(count=2, added=True),
    lc.Queued(count=0), lc.Preempt(), lc.LeaseLost(why="runs on lab-2"), lc.LeaseGranted(),
    lc.TimedOut(run=1), lc.Shutdown(), lc.Remove()])

pokes = st.one_of(
    requests.map(lambda event: ("feed", event)),
    st.tuples(st.just("exit"), st.sampled_from(list(Outcome)), st.sampled_from([0.0, 0.5, 5.0]), st.booleans()),
    st.just(("wake",)), st.just(("retry",)),
    st.tuples(st.just("time"), st.floats(0.0, 700.0)))

choices = st.fixed_dictionaries({"spawn": st.lists(st.booleans(), min_size=1, max_size=8),
                                 "claim": st.lists(st.booleans(), min_size=1, max_size=8),
                                 "plan": st.lists(st.sampled_from([0, 1, 3]), min_size=1, max_size=8)})


def chooser(lists: dict):
    used = {kind: 0 for kind in lists}

    def choose(kind, options):
        picks = lists[kind]
        used[kind] += 1
        return picks[used[kind] % len(picks)]
    return choose


# ---------------------------------------------------------------- the property test

STARTS = {lc.Start, lc.Restart, lc.RunNow}


adoptions = st.lists(st.sampled_from([lc.Adopted(run=1), lc.Adopted(keep=False, run=2),
                                      lc.Adopted(stale=True, run=3)]), max_size=2)


@settings(max_examples=3000, deadline=None)
@given(specs, adoptions, st.lists(pokes, min_size=1, max_size=40), choices)
def test_random_event_sequences_keep_every_invariant(spec, adopted, sequence, picks):
    """Start-up (what the last daemon left running is adopted, then the job is considered),
    then a random sequence of requests, exits, timer firings and passing time."""
    model = states.Model(spec, chooser(picks))
    moment = T
    for event in adopted:
        model.adopt(event, moment)
    model.feed(lc.Consider(), moment)
    check(model, spec, lc.Consider(), before=lc.Life(spec_enabled=spec.enabled), steps=model.steps)
    for poke in sequence:
        if poke[0] == "time":
            moment = lc.Moment(boot=moment.boot + poke[1], wall=moment.wall + poke[1], u=moment.u)
            continue
        before, start = model.life, len(model.steps)
        event = _apply(model, poke, moment)
        check(model, spec, event, before, model.steps[start:])


def _apply(model: states.Model, poke, moment):
    if poke[0] == "feed":
        model.feed(poke[1], moment)
        return poke[1]
    if poke[0] == "exit":
        model.exit(poke[1], moment, uptime=poke[2], trigger=poke[3])
        return lc.Exited(outcome=poke[1], uptime=poke[2])
    if poke[0] == "wake":
        model.fire_wake(moment)
        return lc.Woke()
    model.fire_retry(moment)
    return lc.RetryDue(attempt=2)


def check(model: states.Model, spec: JobSpec, event, before: lc.Life, steps: list) -> None:
    life = model.life
    spawns = [a for _, _, s in steps for a in s.actions if isinstance(a, lc.Spawn)]
    assert min(life.active, life.retrying, life.queued, life.owed, life.attempts, life.restarts) >= 0, life
    if model.forgotten:
        return
    assert model.processes == life.active, (model.processes, life)
    limit = spec.max_parallel if spec.type is JobType.TRIGGER else 1
    if spec.type is JobType.ALWAYS:   # never two copies (runs of other jobs left by the last daemon finish)
        assert model.processes - model.stopping <= 1, f"{model.processes} copies of an always job"
    for _, _, result in steps:
        if any(isinstance(a, lc.Spawn) for a in result.actions):
            assert result.life.active < limit, f"a spawn beside {result.life.active} running processes"
    if life.status in (Status.RUNNING, Status.STOPPING):
        assert life.active > 0, life
    else:
        assert life.active == 0, life
    if life.active == 0:
        assert life.intent is lc.Intent.NONE, life
    assert len(spawns) <= limit + 1, f"{len(spawns)} spawns in one go: {steps}"
    if spawns:
        assert not before.down, "a spawn after shutdown"
        assert not (before.held and type(event) not in STARTS), f"a held job started on its own ({event})"
        assert before.is_enabled or type(event) in (lc.Enable, lc.Reconfigure), "a disabled job started"
        assert not before.ineligible or isinstance(event, lc.Reconfigure), "an ineligible job started"
        assert not before.standby or isinstance(event, lc.LeaseGranted), "a fleet job started without its lease"
    for _, cause, result in steps:
        check_hooks(spec, cause, result)
    last_failure = [s for _, e, s in steps if isinstance(e, lc.SpawnFailed)]
    if last_failure and not life.active and not life.down and life is last_failure[-1].life:
        assert life.status in (Status.BACKOFF, Status.FAILED), life
        assert "No such file or directory" in life.why, life
        assert any(isinstance(a, lc.Wake) for a in last_failure[-1].actions), "a failed spawn must wait"


FAILURES = (Outcome.FAILED, Outcome.KILLED, Outcome.TIMEOUT, Outcome.OOM)


def check_hooks(spec: JobSpec, cause, result: lc.Step) -> None:
    """A hook fires only as the spec names one, at most once per step: on_success for a
    run that ended ok, on_failure for a run that failed or a job that entered failed."""
    hooks = [a for a in result.actions if isinstance(a, lc.Hook)]
    assert len(hooks) <= 1, hooks
    for hook in hooks:
        assert getattr(spec, hook.kind), f"{hook.kind} fired but the spec names no job"
        ended = isinstance(cause, lc.Exited)
        if hook.kind == "on_success":
            assert ended and cause.outcome is Outcome.OK and hook.outcome is Outcome.OK, (cause, hook)
        else:
            assert result.life.status is Status.FAILED or (ended and cause.outcome in FAILURES), (cause, hook)


@settings(max_examples=3000, deadline=None)
@given(specs, st.builds(
    lc.Life, status=st.sampled_from(list(Status)), intent=st.sampled_from(list(lc.Intent)),
    attempts=st.integers(0, 9), held=st.booleans(), enabled=st.sampled_from([None, True, False]),
    ineligible=st.sampled_from(["", "tag missing"]), standby=st.sampled_from(["", "runs on lab-2"]),
    down=st.booleans(), active=st.integers(0, 3),
    retrying=st.integers(0, 2), queued=st.integers(0, 3), owed=st.integers(0, 2), waking=st.booleans()),
    st.one_of(requests, st.sampled_from([
        lc.Woke(), lc.Planned(runs=1, due=1.0), lc.Planned(next_wall=5.0), lc.Claimed(found=True),
        lc.Claimed(found=False), lc.Claimed(found=False, failing=True), lc.Spawned(),
        lc.SpawnFailed(why="EMFILE"), lc.Exited(outcome=Outcome.FAILED, uptime=0.0),
        lc.Exited(outcome=Outcome.STOPPED, uptime=9.0, trigger=True), lc.RetryDue(attempt=2)])))
def test_every_pair_of_life_and_event_has_an_answer(spec, life, event):
    """Total: any life, even one no sequence reaches, and any event give a Step."""
    result = lc.step(spec, life, event, T)
    assert isinstance(result, lc.Step)
    assert min(result.life.active, result.life.retrying, result.life.queued, result.life.owed) >= 0


def test_the_states_document_is_generated_from_the_table():
    assert DOCS.read_text() == states.render(), "docs/states.md is stale: run `aios help states > docs/states.md`"


# ---------------------------------------------------------------- the rules, readable

def run(spec: JobSpec, *pokes, spawn=True, life: lc.Life | None = None) -> states.Model:
    model = states.Model(spec, lambda kind, options: {"spawn": spawn, "claim": True, "plan": 1}[kind], life)
    for poke in (lc.Consider(),) + pokes:
        model.feed(poke, T) if not callable(poke) else poke(model)
    return model


def later(seconds: float) -> lc.Moment:
    return lc.Moment(boot=T.boot + seconds, wall=T.wall + seconds, u=T.u)


def test_an_always_job_that_cannot_be_spawned_backs_off_then_fails_then_is_probed():
    spec = spec_of(JobType.ALWAYS, retries=3)
    model = run(spec, spawn=False)
    assert (model.life.status, model.life.attempts) == (Status.BACKOFF, 1)
    assert "No such file or directory" in model.life.why
    model.fire_wake(T)
    assert model.life.status is Status.BACKOFF and model.wake, "a wake-up before its time waits on"
    model.fire_wake(later(10))
    model.fire_wake(later(20))
    assert model.life.status is Status.FAILED and model.wake
    assert model.life.why.startswith("No such file or directory (3 times in a row)")
    model.choose = lambda kind, options: True
    model.fire_wake(later(30))
    assert model.life.status is Status.FAILED, "the cool-down is not over"
    model.fire_wake(later(20 + spec.failed_cooldown))
    assert model.life.status is Status.RUNNING and model.processes == 1


def test_a_trigger_whose_spawn_failed_goes_back_to_the_queue():
    spec = spec_of(JobType.TRIGGER)
    model = run(spec, lc.Queued(count=1, added=True), spawn=False)
    fates = [a.fate for _, _, s in model.steps for a in s.actions if isinstance(a, lc.TriggerFate)]
    assert fates == ["requeue"] and model.life.status is Status.BACKOFF


def test_a_scheduled_slot_whose_spawn_failed_is_owed_again():
    spec = spec_of(JobType.INTERVAL)
    model = run(spec, spawn=False)
    assert (model.life.status, model.life.owed, model.life.owed_due) == (Status.BACKOFF, 1, T.wall)
    model.choose = lambda kind, options: True
    model.fire_wake(later(10))
    assert model.life.status is Status.RUNNING and model.life.owed == 0


def test_start_during_a_stop_wins_and_enable_during_a_disable_wins():
    for request, undo in ((lc.Stop(), lc.Start()), (lc.Disable(), lc.Enable())):
        model = run(spec_of(JobType.ALWAYS), request, undo)
        assert model.life.status is Status.STOPPING
        model.exit(Outcome.STOPPED, T)
        assert model.life.status is Status.RUNNING and model.processes == 1


def test_a_job_that_lost_its_tag_while_running_stops_and_shows_why():
    model = run(spec_of(JobType.ALWAYS), lc.Reconfigure(ineligible="tag missing on this device: gpu"))
    assert model.life.status is Status.STOPPING
    model.exit(Outcome.STOPPED, T)
    assert (model.life.status, model.life.why) == (Status.INELIGIBLE, "tag missing on this device: gpu")


def test_an_adopted_always_job_whose_spec_changed_restarts_on_the_new_one():
    model = run(spec_of(JobType.ALWAYS), life=lc.Life())
    model.feed(lc.Stop(), T)
    model.exit(Outcome.STOPPED, T)
    model = states.Model(spec_of(JobType.ALWAYS), lambda kind, options: True)
    model.processes = 1
    model.feed(lc.Adopted(stale=True), T)
    assert (model.life.status, model.life.intent) == (Status.STOPPING, lc.Intent.RESTART)
    model.exit(Outcome.STOPPED, T)
    assert model.life.status is Status.RUNNING and model.processes == 1


def hooks(model: states.Model) -> list:
    return [a for _, _, s in model.steps for a in s.actions if isinstance(a, lc.Hook)]


def test_a_failed_run_fires_on_failure_only_after_its_last_retry():
    spec = spec_of(JobType.TRIGGER, retries=1, on_failure="n")
    model = run(spec, lc.Queued(count=1, added=True))
    model.exit(Outcome.FAILED, T)
    assert hooks(model) == [] and model.retries == 1
    model.fire_retry(later(5))
    model.processes -= 1
    model.feed(lc.Exited(outcome=Outcome.TIMEOUT, uptime=0.1, attempt=2, trigger=True), later(6))
    assert hooks(model) == [lc.Hook(kind="on_failure", outcome=Outcome.TIMEOUT, why="timeout after 2 attempts")]


def test_a_crash_loop_fires_on_failure_as_it_enters_failed():
    model = run(spec_of(JobType.ALWAYS, retries=2, on_failure="n"))
    model.exit(Outcome.FAILED, T)
    model.fire_wake(later(10))
    model.exit(Outcome.FAILED, later(10))
    assert model.life.status is Status.FAILED
    assert [(h.kind, h.outcome, h.why) for h in hooks(model)] == [("on_failure", Outcome.FAILED, model.life.why)]


def test_no_hook_without_a_job_to_trigger_and_none_for_a_stopped_run():
    model = run(spec_of(JobType.TRIGGER, on_success="n"), lc.Queued(count=1, added=True), lc.Stop())
    model.exit(Outcome.STOPPED, T)
    model = run(spec_of(JobType.TRIGGER), lc.Queued(count=1, added=True))
    model.exit(Outcome.OK, T)
    assert hooks(model) == []


def test_a_held_job_is_not_started_by_wake_ups_triggers_or_config():
    model = run(spec_of(JobType.TRIGGER), lc.Stop(), lc.Queued(count=3, added=True), lc.Consider(),
                lc.Reconfigure(), lc.Woke())
    assert model.processes == 0 and model.life.status is Status.STOPPED
    model.feed(lc.Start(), T)
    assert model.processes == 1


def test_a_fleet_job_runs_only_while_this_device_holds_its_lease():
    model = run(spec_of(JobType.ALWAYS), life=lc.Life(standby="waiting for its lease"))
    assert (model.life.status, model.processes) == (Status.STANDBY, 0)
    model.feed(lc.LeaseGranted(), T)
    assert model.life.status is Status.RUNNING and model.processes == 1
    model.feed(lc.LeaseLost(why="renewing the lease failed"), T)
    assert model.life.status is Status.STOPPING and model.stopping == 1, "a lost lease stops the copy at once"
    model.exit(Outcome.STOPPED, T)
    assert (model.life.status, model.life.why) == (Status.STANDBY, "renewing the lease failed")
    model.feed(lc.Restart(), T)
    model.feed(lc.Consider(), T)
    assert model.processes == 0, "no request starts a fleet job without its lease"


def test_a_claim_that_finds_every_slot_taken_returns_its_trigger():
    """Two claims in flight for one free slot (an exit's and a new trigger's, found by the
    property test): the second trigger goes back to the queue, never beside max_parallel."""
    spec = spec_of(JobType.TRIGGER, max_parallel=1)
    life = lc.Life(status=Status.RUNNING, active=1, queued=1)
    result = lc.step(spec, life, lc.Claimed(found=True), T)
    assert result.actions == (lc.TriggerFate(fate="requeue"),) and result.life.active == 1
    free = lc.step(spec, replace(life, active=0), lc.Claimed(found=True), T)
    assert any(isinstance(a, lc.Spawn) for a in free.actions)
