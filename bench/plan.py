"""The plan: every scenario with the rows it reports, in the order of the table. A row's
`floor` names the interpreter-floor row its median is divided by (× floor). The fleet
rows (`fleet_plan`) run only when asked for (`--only fleet`): they need PostgreSQL."""
from __future__ import annotations

from functools import partial

from . import aios_only, fleet, python_jobs, scenarios
from .scenarios import Row, Scenario, Settings
from .systems import sleepers

FLOOR_ROWS = (
    Row("wall_ms", "spawn → exit", "ms"),
    Row("nosite_wall_ms", "spawn → exit without site (-S)", "ms"),
    Row("rss_mib", "VmRSS once started, idle", "MiB"),
)
_SHUTDOWN_ROWS = (Row("children_ms", "stop → every child gone", "ms"),
                  Row("stop_ms", "stop → daemon and every child gone", "ms"))
_RSS_ROWS = (Row("rss_mib", "daemon VmRSS", "MiB", "rss_mib"),
             Row("hwm_mib", "daemon VmHWM (peak)", "MiB", "rss_mib"))
_READY = "launch → control endpoint answers (AIOS: ping on aios.sock)"
_OWN = "the daemon's own 'ready in' figure (excludes interpreter start)"


def _cold_rows(children: int) -> tuple[Row, ...]:
    rows = [Row("first_child_ms", "launch → first managed process running", "ms", "wall_ms")]
    if children > 1:
        rows.append(Row("all_children_ms", f"launch → all {children} running", "ms", "wall_ms"))
    rows += [Row("ready_ms", _READY, "ms", "wall_ms"), Row("self_ready_ms", _OWN, "ms")]
    return tuple(rows)


def _cold(key: str, title: str, jobs, children: int, s: Settings) -> Scenario:
    needs = "default_config" if jobs is None else "always"
    return Scenario(key, "cold_start", title, needs, _cold_rows(children),
                    partial(scenarios.cold_start, jobs=jobs, children=children, s=s))


def _sized(family: str, n: int, title: str, rows: tuple[Row, ...], fn, s: Settings) -> Scenario:
    return Scenario(f"{family}_{n}", family, title, "always", rows, partial(fn, n=n, s=s))


def _one(key: str, title: str, needs: str, rows: tuple[Row, ...], fn, s: Settings) -> Scenario:
    return Scenario(key, key, title, needs, rows, partial(fn, s=s))


def plan(s: Settings) -> list[Scenario]:
    return [Scenario("floor", "floor", "Interpreter floor, empty program", "floor", FLOOR_ROWS, scenarios.floor)] \
        + _manager_rows(s) + _aios_rows(s) + _python_rows(s)


def _manager_rows(s: Settings) -> list[Scenario]:
    few, many = s.few, s.many
    return [
        _cold("cold_start_1", "Cold start, 1 always job", sleepers(1), 1, s),
        _cold("cold_start_default", "Cold start, empty home (writes the default 7 example jobs; DEVICE_TAGS empty)",
              None, 1, s),
        _cold(f"cold_start_{many}", f"Cold start, {many} always jobs", sleepers(many), many, s),
        _one("spawn_python", "Spawn a Python program (1 always job)", "always",
             (Row("code_ms", "launch → the program's own code runs", "ms", "wall_ms"),
              Row("first_child_ms", "launch → its process exec'd", "ms", "wall_ms")), scenarios.spawn_python, s),
        _one("cli", f"CLI with {many} jobs running, whole command", "cli",
             (Row("help_ms", "`--help`", "ms", "wall_ms"), Row("status_ms", "`status`", "ms", "wall_ms")),
             scenarios.cli_commands, s),
        _one("restart", "Restart one job through the CLI", "cli",
             (Row("restart_ms", "command start → new process running", "ms"),
              Row("cli_ms", "command start → command returned", "ms")), scenarios.restart_cli, s),
        _one("crash_recovery", "Crash recovery", "always",
             (Row("recovery_ms", "kill -9 of a managed `sleep` → replacement running", "ms"),),
             scenarios.crash_recovery, s),
        _sized("shutdown", few, f"Shutdown, {few} children", _SHUTDOWN_ROWS, scenarios.shutdown, s),
        _sized("shutdown", many, f"Shutdown, {many} children", _SHUTDOWN_ROWS, scenarios.shutdown, s),
        _sized("rss", few, f"Daemon memory, {few} children", _RSS_ROWS, scenarios.rss, s),
        _sized("rss", many, f"Daemon memory, {many} children", _RSS_ROWS, scenarios.rss, s),
        Scenario("idle_cpu", "idle_cpu", f"Idle CPU, {few} children", "always",
                 (Row("cpu_ms", f"daemon utime+stime over {s.cpu_window:g} s", "CPU ms"),),
                 partial(scenarios.idle_cpu, n=few, s=s)),
        _one("scale", f"Scale, {s.scale} always jobs", "always",
             (Row("all_children_ms", f"launch → all {s.scale} running", "ms"), Row("ready_ms", _READY, "ms"),
              Row("rss_mib", "daemon VmRSS then", "MiB", "rss_mib"),
              Row("hwm_mib", "daemon VmHWM (peak)", "MiB", "rss_mib")), scenarios.scale, s),
    ]


def _aios_rows(s: Settings) -> list[Scenario]:
    n = s.triggers
    return [
        _one("interval_lateness", "Every-1s interval job", "interval",
             (Row("p50_ms", f"lateness (started − due) p50 over {s.lateness_window:g} s", "ms"),
              Row("p99_ms", "lateness p99 (nearest rank)", "ms")), aios_only.interval_lateness, s),
        _one("triggers_socket", f"Triggers through the socket, {n} back to back on one connection", "aios",
             (Row("per_s", "accepted (acknowledged, stored) per second", "/s"),
              Row("ack_p50_us", "one trigger's round trip, p50", "µs"),
              Row("ack_p99_us", "one trigger's round trip, p99", "µs")), aios_only.triggers_socket, s),
        _one("triggers_clients", f"Triggers through the socket, {n} from {aios_only.CLIENTS} connections at once",
             "aios", (Row("per_s", "accepted (acknowledged, on disk) per second", "/s"),),
             aios_only.triggers_clients, s),
        _one("triggers_rows", f"Triggers as `triggers` rows, {n} INSERTs by another process", "aios",
             (Row("per_s", "claimed per second (first INSERT → all claimed; job runs /bin/true)", "/s"),
              Row("claimed_ms", "first INSERT → all claimed", "ms"),
              Row("insert_ms", "the writer's own INSERT time", "ms")), aios_only.triggers_rows, s),
        _one("dispatch", f"Runs dispatched, {n} triggers of a /bin/true job (max_parallel 1)", "aios",
             (Row("per_s", "runs per second (first trigger sent → last run recorded ended)", "/s"),
              Row("total_ms", "first trigger sent → last run ended", "ms"),
              Row("queued_ms", "first trigger sent → last acknowledged", "ms"),
              Row("wait_ms", "first trigger sent → `wait` on the last one answered", "ms")), aios_only.dispatch, s),
        _one("round_trip", f"Control round trip, {s.pings} pings on one connection from one process", "aios",
             (Row("per_call_us", "per call", "µs"),), aios_only.round_trip, s),
        _one("reexec", f"Re-exec with {s.many} jobs running", "aios",
             (Row("cli_ms", "`aios reexec`, whole command (returns when the new image answers)", "ms"),
              Row("op_ms", "reexec op → ping answered by the new image", "ms"),
              Row("self_ready_ms", "the new image's own 'ready in' figure", "ms")), aios_only.reexec, s),
        _one("logs", f"A job writing {s.log_lines:,} lines (one write each): [logs] timestamps off vs on", "aios",
             (Row("off_ms", "timestamps off: trigger → every line in the log (the job writes the file)", "ms"),
              Row("on_ms", "timestamps on: trigger → every line stamped in the log (through the log writer)", "ms"),
              Row("on_over_off", "on_ms / off_ms, pair by pair", "×"),
              Row("off_lines_per_s", "lines per second, off", "/s"),
              Row("on_lines_per_s", "lines per second, on", "/s"),
              Row("off_daemon_cpu_ms", "the daemon's utime+stime meanwhile, off", "CPU ms"),
              Row("on_daemon_cpu_ms", "the daemon's utime+stime meanwhile, on", "CPU ms"),
              Row("on_writer_cpu_ms", "the log writer's utime+stime meanwhile, on", "CPU ms")),
             aios_only.log_lines, s),
        _one("adoption", f"Adoption: kill -9 of the daemon with {s.many} jobs, then start it again", "aios",
             (Row("ready_ms", f"launch → ping answers, all {s.many} adopted", "ms", "wall_ms"),
              Row("self_ready_ms", _OWN, "ms")), aios_only.adoption, s),
    ]


def fleet_plan(s: Settings) -> list[Scenario]:
    """The fleet family: single-device rows on SQLite ("aios") beside PostgreSQL
    ("aios-pg"), then rows of several devices on one PostgreSQL (aios-pg alone)."""
    n, clients = s.triggers, 3 * s.fleet_clients
    return [
        Scenario("fleet_cold_start", "fleet", "Cold start, 1 always job, SQLite store beside PostgreSQL", "store",
                 _cold_rows(1), partial(scenarios.cold_start, jobs=sleepers(1), children=1, s=s)),
        Scenario("fleet_trigger_rtt", "fleet", f"Triggers through the socket, {n} back to back, SQLite store "
                 "beside PostgreSQL", "store", (Row("per_s", "acknowledged per second", "/s"),
                                                Row("ack_p50_us", "one trigger's round trip, p50", "µs"),
                                                Row("ack_p99_us", "one trigger's round trip, p99", "µs")),
                 partial(aios_only.triggers_socket, s=s)),
        Scenario("fleet_dispatch", "fleet", f"Runs dispatched, {n} triggers of a /bin/true job, SQLite store "
                 "beside PostgreSQL", "store", (Row("per_s", "runs per second (first trigger → last run ended)", "/s"),
                                                Row("total_ms", "first trigger sent → last run ended", "ms")),
                 partial(aios_only.dispatch, s=s)),
        Scenario("fleet_triggers", "fleet", f"Fleet of 3 devices: {n} triggers to each from {s.fleet_clients} "
                 f"connections ({clients} clients at once)", "fleet",
                 (Row("per_s", "acknowledged fleet-wide per second", "/s"),
                  Row("refused", "refused and sent again (the store failing a moment)", "triggers"),
                  Row("daemon_cpu_ms", "the three daemons' utime+stime per acknowledged trigger", "CPU ms"),
                  Row("pg_cpu_ms", "PostgreSQL's utime+stime per acknowledged trigger", "CPU ms")),
                 partial(fleet.fleet_triggers, s=s)),
        Scenario("fleet_remote", "fleet", f"Fleet of 2 devices: {s.remote} triggers on A's socket for device B "
                 "(`aios trigger JOB --device B`), one at a time", "fleet",
                 (Row("p50_ms", "trigger sent on A → B announces the run started, p50", "ms"),
                  Row("p99_ms", "… p99 (nearest rank)", "ms"),
                  Row("ack_p50_ms", "trigger sent on A → A acknowledged it, p50", "ms")),
                 partial(fleet.remote_trigger, s=s)),
        Scenario("fleet_failover", "fleet", f"Failover, {s.kills} kill -9 of the lease holder's daemon "
                 f"({s.kills + 1} devices, lease_ttl {fleet.FAILOVER_TTL:g} s)", "fleet",
                 (Row("moved_ms", "kill -9 → the copy running under another device", "ms"),
                  Row("fenced_ms", "kill -9 → the old copy killed by its fence", "ms")),
                 partial(fleet.failover, s=s)),
        Scenario("fleet_idle", "fleet", f"{s.idle_devices} idle daemons on one PostgreSQL (lease ttl "
                 f"{fleet.IDLE_TTL:g} s: a heartbeat turn every {fleet.IDLE_TTL / 3:.1f} s), over "
                 f"{s.cpu_window:g} s", "fleet",
                 (Row("daemon_ms", "one daemon's utime+stime, median of the daemons", "CPU ms"),
                  Row("daemon_max_ms", "… the busiest daemon", "CPU ms"),
                  Row("turn_ms", "daemon CPU per heartbeat turn (mean over the daemons / turns in the window)",
                      "CPU ms"),
                  Row("pg_ms", "PostgreSQL's utime+stime, every server process", "CPU ms"),
                  Row("connections", "connections the daemons hold", "conns")),
                 partial(fleet.idle, s=s)),
    ]


_PAIR = "zygote ÷ spawn, pair by pair"


def _python_rows(s: Settings) -> list[Scenario]:
    heavy = python_jobs.heavy_module()[0]
    launch = (Row("zygote_ms", "kill -9 → the replacement's own code runs, through the zygote", "ms"),
              Row("spawn_ms", 'kill -9 → the replacement\'s own code runs, start = "spawn"', "ms"),
              Row("ratio", _PAIR, "×"),
              Row("zygote_trigger_ms", "trigger sent → the run's own code runs, through the zygote", "ms"),
              Row("spawn_trigger_ms", 'trigger sent → the run\'s own code runs, start = "spawn"', "ms"))
    return [
        _one("python_launch", f"Python program job, a run starts → its own code runs ({s.launches} of each per round)",
             "aios", launch, python_jobs.python_launch, s),
        _one("python_heavy", f"Python program job importing {heavy} (the zygote's job preloads it), a run starts → "
             "its own code runs", "aios", launch, python_jobs.python_heavy, s),
        _one("python_many", f"{s.python_jobs} always Python program jobs, launch → all running their own code",
             "aios", (Row("zygote_ms", "through the zygote", "ms"), Row("spawn_ms", 'start = "spawn"', "ms"),
                      Row("floor_ms", f"floor: {s.python_jobs} bare interpreters Popen'd at once", "ms"),
                      Row("ratio", "zygote ÷ floor", "×")), python_jobs.python_many, s),
        _one("python_pss", f"{s.python_pss} running Python program jobs, total PSS (smaps_rollup)", "aios",
             (Row("zygote_mib", "through the zygote (the zygote counted)", "MiB"),
              Row("spawn_mib", 'start = "spawn"', "MiB"), Row("ratio", "zygote ÷ spawn", "×")),
             python_jobs.python_pss, s),
    ]
