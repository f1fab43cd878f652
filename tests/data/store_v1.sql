-- An AIOS state database at schema version 1, written by the v1 store (commit 5ced690),
-- dumped with sqlite3's iterdump: tests/test_store.py migrates it to the current schema.
PRAGMA user_version = 1;
BEGIN TRANSACTION;
CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL, device TEXT, job TEXT, name TEXT,
        message TEXT);
INSERT INTO "events" VALUES(1,1700000000.0,'dev1',NULL,'daemon_started','pid 1');
INSERT INTO "events" VALUES(2,1700000003.0,'dev1','llm','job_exited','exit 0');
CREATE TABLE job_state (
        device TEXT NOT NULL, job TEXT NOT NULL, status TEXT NOT NULL, why TEXT,
        since REAL, pid INTEGER, run_id INTEGER, attempts INTEGER, restarts INTEGER,
        next_due REAL, last_slot REAL, draw_day TEXT, draw_at REAL, enabled INTEGER,
        held INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (device, job));
INSERT INTO "job_state" VALUES('dev1','web','running','pid 4242',1700000000.0,4242,1,0,2,NULL,1699999940.0,NULL,NULL,1,0);
INSERT INTO "job_state" VALUES('dev1','llm','waiting','',1700000000.0,NULL,NULL,0,0,NULL,NULL,NULL,NULL,NULL,1);
CREATE TABLE jobs (name TEXT PRIMARY KEY, spec TEXT NOT NULL, updated REAL);
INSERT INTO "jobs" VALUES('web','{"type": "always", "command": ["sleep", "9"]}',1.79597437062900066378e+09);
INSERT INTO "jobs" VALUES('llm','{"type": "trigger", "program": "llm.py:run"}',1.79597437062900066378e+09);
CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL, device TEXT,
        attempt INTEGER, trigger_id INTEGER, due REAL, pid INTEGER, pid_start INTEGER,
        started REAL, ended REAL, exit_code INTEGER, signal INTEGER, outcome TEXT);
INSERT INTO "runs" VALUES(1,'web','dev1',1,NULL,NULL,4242,123456,1700000000.0,NULL,NULL,NULL,NULL);
INSERT INTO "runs" VALUES(2,'llm','dev1',1,1,NULL,4300,NULL,1700000002.0,1700000003.0,0,NULL,'ok');
CREATE TABLE triggers (
        id INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL, args TEXT DEFAULT '[]',
        kwargs TEXT DEFAULT '{}', created TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
        done INTEGER NOT NULL DEFAULT 0, claimed REAL, device TEXT, outcome TEXT,
        finished REAL, run_id INTEGER);
INSERT INTO "triggers" VALUES(1,'llm','["a", 1]','{"model": "small"}',1700000001,1,1700000002.0,'dev1','ok',1700000003.0,2);
INSERT INTO "triggers" VALUES(2,'llm','["b"]','{}',1700000004,0,NULL,NULL,NULL,NULL,NULL);
CREATE INDEX runs_job_started ON runs (job, started);
CREATE INDEX runs_open ON runs (device) WHERE ended IS NULL;
CREATE INDEX runs_started ON runs (started);
CREATE INDEX triggers_queue ON triggers (job, id) WHERE done = 0 AND claimed IS NULL;
CREATE INDEX events_ts ON events (ts);
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('runs',2);
INSERT INTO "sqlite_sequence" VALUES('triggers',2);
INSERT INTO "sqlite_sequence" VALUES('events',2);
COMMIT;
