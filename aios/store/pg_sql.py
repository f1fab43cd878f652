"""The statements of the PostgreSQL store, as data (psycopg placeholders).

Times the caller passes (`now`, run and event times) are epoch seconds in double
precision columns, as in SQLite; times the fleet decides by (heartbeats, leases, slots,
commands) are the database's now(), so no device clock matters. Imports only aios.spec.
"""
from __future__ import annotations

from ..spec import Event, JobState, Run, fields

STATE_FIELDS = fields(JobState)
RUN_FIELDS = fields(Run)
EVENT_FIELDS = fields(Event)
_RUN_INSERT = tuple(name for name in RUN_FIELDS if name != "id")


def _columns(names) -> str:
    return ", ".join(names)


def _values(names) -> str:
    return ", ".join(f"%({name})s" for name in names)


def _epoch(column: str) -> str:
    return f"extract(epoch FROM {column})::float8"


# ---- job specs, job state, runs
SAVE_SPEC = ("INSERT INTO jobs (device, name, position, spec, updated) "
             "VALUES (%s, %s, %s, %s::json, extract(epoch FROM now()))")
DELETE_SPECS = "DELETE FROM jobs WHERE device = %s"
LOAD_SPECS = "SELECT name, spec FROM jobs WHERE device = %s ORDER BY position"

SAVE_STATE = (f"INSERT INTO job_state (device, {_columns(STATE_FIELDS)}) "
              f"VALUES (%(device)s, {_values(STATE_FIELDS)}) ON CONFLICT (device, job) DO UPDATE SET "
              + ", ".join(f"{name} = EXCLUDED.{name}" for name in STATE_FIELDS if name != "job"))
LOAD_STATES = f"SELECT {_columns(STATE_FIELDS)} FROM job_state WHERE device = %s"
FLEET_STATES = f"SELECT device, {_columns(STATE_FIELDS)} FROM job_state ORDER BY device, job"
CLEAR_STATES = "DELETE FROM job_state WHERE device = %s"

SELECT_RUNS = f"SELECT {_columns(RUN_FIELDS)} FROM runs"
START_RUN = f"INSERT INTO runs ({_columns(_RUN_INSERT)}) VALUES ({_values(_RUN_INSERT)}) RETURNING id"
SET_PID = "UPDATE runs SET pid = %s, pid_start = %s WHERE id = %s"
END_RUN = "UPDATE runs SET ended = %s, exit_code = %s, signal = %s, outcome = %s WHERE id = %s"
OPEN_RUNS = f"{SELECT_RUNS} WHERE device = %s AND ended IS NULL ORDER BY id"
LAST_RUNS = (f"SELECT DISTINCT ON (job) {_columns(RUN_FIELDS)} FROM runs WHERE device = %s "
             "ORDER BY job, started DESC, id DESC")

# ---- triggers
ADD_TRIGGER = ("INSERT INTO triggers (job, args, kwargs, created, target) VALUES (%s, %s, %s, %s, %s) "
               "RETURNING id")
GET_TRIGGER = ("SELECT id, job, args, kwargs, created, claimed, device, done, outcome, run_id, target "
               "FROM triggers WHERE id = %s")
_MINE = "(target IS NULL OR target = %(device)s)"   # a trigger this device may claim
PENDING = f"SELECT job, count(*) FROM triggers WHERE done = 0 AND claimed IS NULL AND {_MINE} GROUP BY job"
PENDING_TRIGGERS = "SELECT id, job, args, kwargs, created FROM triggers WHERE done = 0 AND claimed IS NULL"
# The oldest unclaimed trigger that no other transaction is claiming right now: claimers
# never wait for each other, and each row goes to one of them.
CLAIM = """UPDATE triggers SET claimed = %(now)s, device = %(device)s
    WHERE id = (SELECT id FROM triggers WHERE job = %(job)s AND done = 0 AND claimed IS NULL
                AND (target IS NULL OR target = %(device)s) ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING id, args, kwargs, created, target"""
FINISH_TRIGGER = ("UPDATE triggers SET done = 1, outcome = %s, finished = %s, "
                  "run_id = coalesce(%s::bigint, run_id) WHERE id = %s AND done = 0")
DROP_TRIGGERS = ("UPDATE triggers SET done = 1, outcome = 'dropped', finished = %s "
                 "WHERE job = %s AND done = 0 AND claimed IS NULL")
RELEASE = ("UPDATE triggers SET claimed = NULL, device = NULL "
           "WHERE device = %s AND done = 0 AND claimed IS NOT NULL AND NOT id = ANY(%s::bigint[])")
REQUEUE = ("UPDATE triggers SET claimed = NULL, device = NULL "
           "WHERE device = %s AND done = 0 AND claimed IS NOT NULL AND id = %s")
CLEAR_TRIGGERS = "DELETE FROM triggers WHERE done = 0"

# ---- events, meta
_EVENT_INSERT = tuple(name for name in EVENT_FIELDS if name != "id")
ADD_EVENT = (f"INSERT INTO events ({_columns(_EVENT_INSERT)}) VALUES "
             f"({_values(_EVENT_INSERT).replace('%(data)s', '%(data)s::json')}) RETURNING id")
SELECT_EVENTS = f"SELECT {_columns(EVENT_FIELDS)} FROM events"
META_GET = "SELECT value FROM meta WHERE key = %s"
META_SET = "INSERT INTO meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"

# ---- housekeeping: each deletes at most %(limit)s rows older than %(before)s
PRUNE = tuple(f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} WHERE {old} LIMIT %(limit)s)"
              for table, key, old in (
                  ("runs", "id", "ended < %(before)s"),
                  ("triggers", "id", "done <> 0 AND finished < %(before)s"),
                  ("events", "id", "ts < %(before)s"),
                  ("commands", "id", "created < to_timestamp(%(before)s)"),
                  ("slots", "ctid", "claimed < to_timestamp(%(before)s)"),
                  ("fleet_jobs", "version", "published < to_timestamp(%(before)s) "
                                            "AND version < (SELECT max(version) FROM fleet_jobs)")))
MISSING_TRIGGERS = """SELECT t FROM unnest(%s::text[]) AS t WHERE NOT EXISTS (
    SELECT 1 FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
    WHERE c.relnamespace = current_schema()::regnamespace AND g.tgname = t || '_notify')"""

# ---- fleet: devices and published jobs
HEARTBEAT = """INSERT INTO devices (id, tags, version, load, heartbeat) VALUES (%s, %s, %s, %s, now())
    ON CONFLICT (id) DO UPDATE SET tags = EXCLUDED.tags, version = EXCLUDED.version,
    load = EXCLUDED.load, heartbeat = EXCLUDED.heartbeat"""
DEVICES = f"""SELECT d.id, d.tags, d.version, d.load, {_epoch('d.heartbeat')},
    {_epoch('now() - d.heartbeat')},
    coalesce((SELECT array_agg(DISTINCT r.job ORDER BY r.job) FROM runs r
              WHERE r.device = d.id AND r.ended IS NULL), '{{}}'),
    (SELECT count(*) FROM triggers t WHERE t.device = d.id AND t.done = 0 AND t.claimed IS NOT NULL)
    FROM devices d ORDER BY d.id"""
RECLAIM = """UPDATE triggers SET claimed = NULL, device = NULL
    WHERE device = %(device)s AND done = 0 AND claimed IS NOT NULL
    AND EXISTS (SELECT 1 FROM devices
                WHERE id = %(device)s AND heartbeat < now() - make_interval(secs => %(silent)s))"""
PUBLISH_LOCK = "SELECT pg_advisory_xact_lock(1095323476, hashtext(current_schema()))"
NEWEST_JOBS = "SELECT version, tables::text FROM fleet_jobs ORDER BY version DESC LIMIT 1"
PUBLISH = ("INSERT INTO fleet_jobs (tables, by_device, published) VALUES (%s::json, %s, now()) "
           "RETURNING version")

# ---- fleet: leases. An acquire succeeds on a free or expired row (or none), and
# increments the epoch; concurrent acquirers queue on the row and all but one find it held.
_LEASE = f"job, device, epoch, {_epoch('expires')}, ttl"
ACQUIRE_LEASE = f"""INSERT INTO leases AS l (job, device, epoch, expires, ttl)
    VALUES (%(job)s, %(device)s, 1, now() + make_interval(secs => %(ttl)s), %(ttl)s)
    ON CONFLICT (job) DO UPDATE SET device = EXCLUDED.device, epoch = l.epoch + 1,
        expires = EXCLUDED.expires, ttl = EXCLUDED.ttl
    WHERE l.device IS NULL OR l.expires <= now()
    RETURNING {_LEASE}"""
RENEW_LEASE = f"""UPDATE leases SET expires = now() + make_interval(secs => %(ttl)s), ttl = %(ttl)s
    WHERE job = %(job)s AND device = %(device)s AND epoch = %(epoch)s AND expires > now()
    RETURNING {_LEASE}"""
RELEASE_LEASE = ("UPDATE leases SET device = NULL, expires = now() "
                 "WHERE job = %s AND device = %s AND epoch = %s")
LEASES = f"SELECT {_LEASE} FROM leases WHERE device IS NOT NULL AND expires > now() ORDER BY job"

# ---- fleet: slots and commands
CLAIM_SLOT = """INSERT INTO slots (job, slot_key, device, claimed) VALUES (%s, %s, %s, now())
    ON CONFLICT (job, slot_key) DO UPDATE SET claimed = slots.claimed
    WHERE slots.device = EXCLUDED.device RETURNING device"""
_COMMAND = f"id, device, op, fields, sender, {_epoch('created')}, {_epoch('taken')}, outcome"
SEND_COMMAND = ("INSERT INTO commands (device, op, fields, sender, created) "
                "VALUES (%s, %s, %s::json, %s, now()) RETURNING id")
TAKE_COMMANDS = f"""UPDATE commands SET taken = now() WHERE id IN (
    SELECT id FROM commands WHERE device = %s AND taken IS NULL ORDER BY id LIMIT %s
    FOR UPDATE SKIP LOCKED) RETURNING {_COMMAND}"""
FINISH_COMMAND = "UPDATE commands SET outcome = %s WHERE id = %s AND taken IS NOT NULL AND outcome IS NULL"
GET_COMMAND = f"SELECT {_COMMAND} FROM commands WHERE id = %s"
