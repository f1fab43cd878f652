"""The AIOS-only scenarios: scheduling (every-1s lateness, triggers accepted through the
socket and through `triggers` rows, runs dispatched) and the control plane (a round
trip inside one process, re-exec, adoption after kill -9). No peer has these
operations in a comparable form; the issue's targets are their reference.

Client-side code here speaks AIOS's socket with AIOS's own `aios.control.Client` (the
one every front end uses); everything else is the standard library. Times are
perf_counter (CLOCK_MONOTONIC on Linux, the same clock in every process).
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time

from . import measure
from .scenarios import Samples, Settings, _cli_wall, _require_running, _running, _stop_and_wait, launched
from .systems import SLEEP, TRUE, Job, sleepers
from .systems.aios import READY, Aios, ping

WORK = "work"        # the trigger job of the trigger and dispatch rows

# Another process inserting trigger rows as the original's clients did: one committed
# INSERT per trigger. Prints its perf_counter before the first and after the last.
ROW_WRITER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
n, job = int(sys.argv[2]), sys.argv[3]
print("t0", time.perf_counter(), flush=True)
for _ in range(n):
    db.execute("INSERT INTO triggers (job) VALUES (?)", (job,))
print("t1", time.perf_counter(), flush=True)
"""


def _client(system: Aios, timeout: float):
    from aios.control import Client  # the tool's own client; imported only for AIOS rows

    return Client(system.home, timeout=timeout)


# ---------------------------------------------------------------- scheduling

def interval_lateness(system: Aios, s: Settings) -> Samples:
    """An every-1s job running `true`: started - due of each timer-driven run, as the
    daemon records them (the first run, at start-up, is not a timer wake and is left out)."""
    with launched(system, [Job("tick", TRUE, every=1.0, kind="interval")], 0, s.timeout):
        time.sleep(s.lateness_window)
        _require_running(system)
        _stop_and_wait(system, s.timeout)
        late = system.interval_lateness_ms("tick")[1:]
        if not late:
            raise measure.MeasureError(f"no timer-driven run of the every-1s job in {s.lateness_window:g} s")
        return {"p50_ms": [measure.percentile(late, 50)], "p99_ms": [measure.percentile(late, 99)],
                "runs": [float(len(late))], "all_runs_ms": late}


def triggers_socket(system: Aios, s: Settings) -> Samples:
    """`triggers` trigger ops sent back to back on one connection, each awaited (acked =
    stored durably). The job runs `sleep` with max_parallel 1, so the rest stay queued."""
    with launched(system, [Job(WORK, SLEEP, kind="trigger")], 0, s.timeout):
        with _client(system, s.timeout) as client:
            acks = []
            t0 = measure.now()
            for _ in range(s.triggers):
                t1 = measure.now()
                client.call("trigger", job=WORK)
                acks.append((measure.now() - t1) * 1e6)
            took = measure.now() - t0
        return {"per_s": [s.triggers / took], "ack_p50_us": [measure.percentile(acks, 50)],
                "ack_p99_us": [measure.percentile(acks, 99)]}


CLIENTS = 8


def triggers_clients(system: Aios, s: Settings) -> Samples:
    """`triggers` trigger ops from CLIENTS connections at once, each awaiting its replies
    (acked = on disk): the triggers of one loop turn share one flush to disk."""
    import threading

    with launched(system, [Job(WORK, SLEEP, kind="trigger")], 0, s.timeout):
        clients = [_client(system, s.timeout) for _ in range(CLIENTS)]
        each, go, errors = max(1, s.triggers // CLIENTS), threading.Barrier(CLIENTS + 1), []

        def send(client) -> None:
            go.wait()
            try:
                for _ in range(each):
                    client.call("trigger", job=WORK)
            except Exception as exc:   # reported below: a failed ack fails the scenario
                errors.append(exc)
        threads = [threading.Thread(target=send, args=(c.__enter__(),)) for c in clients]
        for thread in threads:
            thread.start()
        go.wait()
        t0 = measure.now()
        for thread in threads:
            thread.join(s.timeout)
        took = measure.now() - t0
        for client in clients:
            client.__exit__(None, None, None)
        if errors:
            raise measure.MeasureError(f"a trigger was not acknowledged: {errors[0]}")
        return {"per_s": [each * CLIENTS / took]}


def triggers_rows(system: Aios, s: Settings) -> Samples:
    """Another process INSERTs `triggers` rows (one commit each) into orchestrator.db; ms
    from its first INSERT until the daemon has claimed every row. The job runs /bin/true
    (max_parallel 1): a row is claimed when its run starts."""
    with launched(system, [Job(WORK, TRUE, kind="trigger")], 0, s.timeout):
        db = str(system.home / "orchestrator.db")
        writer = subprocess.Popen([sys.executable, "-c", ROW_WRITER, db, str(s.triggers), WORK],
                                  env=system.process_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            t0 = float(writer.stdout.readline().split()[1])
            claimed = measure.wait_for(lambda: _claimed(system) >= s.triggers, t0, s.timeout * 2,
                                       "every trigger row claimed", system.died)
            wrote = float(writer.stdout.readline().split()[1]) - t0
        finally:
            _end(writer)
        return {"per_s": [s.triggers / (claimed / 1000.0)], "claimed_ms": [claimed],
                "insert_ms": [wrote * 1000.0]}


def _claimed(system: Aios) -> int:
    return system.query("SELECT COUNT(*) FROM triggers WHERE job = ? AND claimed IS NOT NULL", (WORK,))[0][0]


def _end(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


def dispatch(system: Aios, s: Settings) -> Samples:
    """`triggers` triggers of a job running /bin/true (max_parallel 1) queued through the
    socket; ms from the first trigger sent until every run is recorded as ended in
    orchestrator.db (seen by another connection), and until the `wait` for the last
    trigger answered (the queue is FIFO, so that is after every run)."""
    with launched(system, [Job(WORK, TRUE, kind="trigger")], 0, s.timeout):
        with _client(system, s.timeout * 2) as client:
            t0 = measure.now()
            ids = [client.call("trigger", job=WORK) for _ in range(s.triggers)]
            queued = measure.ms_since(t0)
            client.call("wait", trigger=ids[-1])
            answered = measure.ms_since(t0)
        took = measure.wait_for(lambda: _ended(system) >= s.triggers, t0, s.timeout,
                                f"{s.triggers} runs recorded as ended", system.died)
        return {"per_s": [s.triggers / (took / 1000.0)], "total_ms": [took], "queued_ms": [queued],
                "wait_ms": [answered]}


def _ended(system: Aios) -> int:
    return system.query("SELECT COUNT(*) FROM runs WHERE job = ? AND ended IS NOT NULL", (WORK,))[0][0]


# ---------------------------------------------------------------- job logs

LINES_JOB = "lines"
# A job writing N numbered lines of LINE_BYTES bytes, one write() each (as a program job's
# line-buffered print does), then exiting.
LINE_WRITER = """
import os, sys
for i in range(int(sys.argv[1])):
    os.write(1, b"%08d a line of a job's log: 50 bytes in all..\\n" % i)
"""
LINE_BYTES = 50
STAMP_BYTES = len(b"2026-11-29T18:00:00.123+01:00 stdout F ")    # what [logs] timestamps adds to a line


def log_lines(system: Aios, s: Settings) -> Samples:
    """A trigger job writing `log_lines` lines, one write() each, with [logs] timestamps
    "none" (the job writes its log file) and "local" (through the log writer), side by
    side in each round: ms from the trigger until every line is in the log, the daemon's
    CPU meanwhile, and the log writer's. Before each measured run an untimed one-line run
    starts the writer and the job's interpreter caches."""
    samples: Samples = {}
    for key, timestamps in (("off", "none"), ("on", "local")):
        samples.update(_write_lines(system, key, timestamps, s))
    samples["on_over_off"] = [samples["on_ms"][0] / samples["off_ms"][0]]
    return samples


def _write_lines(system: Aios, key: str, timestamps: str, s: Settings) -> Samples:
    n, log = s.log_lines, None
    system.settings_toml = f'[logs]\ntimestamps = "{timestamps}"\nmax_size = "1GB"\n'
    try:
        with launched(system, [Job(LINES_JOB, (sys.executable, "-c", LINE_WRITER), kind="trigger")], 0, s.timeout):
            log = system.home / "logs" / f"{LINES_JOB}.log"
            with _client(system, s.timeout) as client:
                client.call("wait", trigger=client.call("trigger", job=LINES_JOB, args=["1"]))
                per_line = LINE_BYTES + (STAMP_BYTES if timestamps != "none" else 0)
                measure.wait_for(lambda: _size(log) >= per_line, measure.now(), s.timeout,
                                 "the warm-up line in the log", system.died)
                want = per_line * (n + 1)
                writer = _log_writer(system)
                cpu0 = measure.cpu_seconds(system.daemon_pid), _cpu(writer)
                t0 = measure.now()
                client.call("trigger", job=LINES_JOB, args=[str(n)])
                took = measure.wait_for(lambda: _size(log) >= want, t0, s.timeout, f"{n} lines in the log",
                                        system.died)
                daemon_cpu = measure.cpu_seconds(system.daemon_pid) - cpu0[0]
                writer_cpu = _cpu(writer) - cpu0[1]
            _check_lines(log, n, stamped=timestamps != "none")
    finally:
        system.settings_toml = ""
    out = {f"{key}_ms": [took], f"{key}_lines_per_s": [n / (took / 1000.0)],
           f"{key}_daemon_cpu_ms": [daemon_cpu * 1000]}
    if timestamps != "none":
        out["on_writer_cpu_ms"] = [writer_cpu * 1000]
    return out


def _size(path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _log_writer(system: Aios) -> int | None:
    found = [pid for pid in system.children.of(system.daemon_pid) if system.is_log_writer(pid)]
    return found[0] if found else None


def _cpu(pid: int | None) -> float:
    return measure.cpu_seconds(pid) if pid is not None else 0.0


def _check_lines(log, n: int, stamped: bool) -> None:
    """Untimed: the log holds the n lines, in order, each stamped as asked."""
    lines = log.read_bytes().split(b"\n")[1:-1]       # the warm-up line first
    if len(lines) != n or not lines[-1].endswith(b"%08d a line of a job's log: 50 bytes in all.." % (n - 1)):
        raise measure.MeasureError(f"the log holds {len(lines)} lines after the warm-up one, not {n}")
    if stamped != (b" stdout F " in lines[0]) or stamped != (b" stdout F " in lines[-1]):
        raise measure.MeasureError(f"lines not {'stamped' if stamped else 'raw'}: {lines[0][:60]!r}")


# ---------------------------------------------------------------- the control plane

def round_trip(system: Aios, s: Settings) -> Samples:
    """`pings` ping calls on one connection from this process: µs per call."""
    with launched(system, sleepers(1), 1, s.timeout), _client(system, s.timeout) as client:
        for _ in range(10):
            client.call("ping")                  # warm: the connection and both sides' caches
        t0 = measure.now()
        for _ in range(s.pings):
            client.call("ping")
        return {"per_call_us": [(measure.now() - t0) / s.pings * 1e6]}


def reexec(system: Aios, s: Settings) -> Samples:
    """With `many` jobs running: `aios reexec` (the whole command, which returns once the
    new image answers), and a `reexec` op from this process until a ping answers with a
    new `started`. Every job must keep its process."""
    with launched(system, sleepers(s.many), s.many, s.timeout):
        time.sleep(s.settle)
        before = set(_running(system))
        cli_ms = _cli_wall(system, "reexec", s.timeout)
        op_ms = _reexec_op(system, s.timeout)
        _require_running(system)
        if set(_running(system)) != before:
            raise measure.MeasureError("a job's process changed across re-exec")
        own = [float(x) for x in READY.findall(system.log_text())[1:]]
        return {"cli_ms": [cli_ms], "op_ms": [op_ms], "self_ready_ms": own}


def _reexec_op(system: Aios, timeout: float) -> float:
    started = ping(system.socket_path)["started"]
    t0 = measure.now()
    with _client(system, timeout) as client:
        client.call("reexec")
    return measure.wait_for(lambda: (ping(system.socket_path) or {}).get("started", started) != started,
                            t0, timeout, "the re-executed daemon to answer ping", system.died)


def adoption(system: Aios, s: Settings) -> Samples:
    """kill -9 the daemon with `many` jobs running; launch it again: ms until its socket
    answers ping, having adopted all `many` (job_adopted events, same processes, none
    spawned anew)."""
    with launched(system, sleepers(s.many), s.many, s.timeout):
        orphans = set(_running(system))
        system.proc.send_signal(signal.SIGKILL)
        system.proc.wait()
        system.before_launch()
        t0 = measure.now()
        system.launch()
        ready = measure.wait_for(system.is_ready, t0, s.timeout, "the new daemon to answer ping", system.died)
        _check_adopted(system, orphans, s.many)
        return {"ready_ms": [ready], "self_ready_ms": [system.self_reported_ready_ms() or 0.0]}


def _check_adopted(system: Aios, orphans: set, many: int) -> None:
    adopted = system.count_events("job_adopted")
    alive = sum(1 for ident in orphans if measure.alive(ident))
    spawned = system.children.of(system.daemon_pid)
    if adopted != many or alive != many or spawned:
        raise measure.MeasureError(f"adopted {adopted} of {many}; {alive} still running; "
                                   f"{len(spawned)} spawned anew")
