-- no-transaction
-- Project quotas, agent tokens and the run state `scheduling`, SQLite flavour. Keep in step
-- with ../postgres/0006_quotas_agent_tokens_scheduling.sql. Never edit a migration once
-- released.
--
-- SQLite cannot change a CHECK constraint in place: `tokens` and `runs` are rebuilt with the
-- same columns (SQLite's documented 12-step procedure). Other tables refer to `runs`, so
-- foreign keys are off while it is swapped, which cannot be done inside a transaction: this
-- file runs outside sqlx's and opens its own.
PRAGMA foreign_keys = OFF;
BEGIN;

-- What one project may hold at once on the pool; NULL = no limit.
CREATE TABLE project_quotas (
    project_id    TEXT PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
    -- millicores
    cpu_millis    INTEGER CHECK (cpu_millis >= 0),
    memory_bytes  INTEGER CHECK (memory_bytes >= 0),
    -- jobs running at once
    jobs          INTEGER CHECK (jobs >= 0),
    updated_at    TEXT NOT NULL
);

-- A fourth role, `agent`: a token that may only run an agent.
CREATE TABLE tokens_v6 (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    -- hex SHA-256 of the secret; the secret itself is never stored
    hash          TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL CHECK (role IN ('agent', 'viewer', 'developer', 'admin')),
    project_id    TEXT REFERENCES projects (id) ON DELETE CASCADE,
    created_at    TEXT NOT NULL,
    last_used_at  TEXT,
    revoked_at    TEXT
);
INSERT INTO tokens_v6 (id, name, hash, role, project_id, created_at, last_used_at, revoked_at)
    SELECT id, name, hash, role, project_id, created_at, last_used_at, revoked_at FROM tokens;
DROP TABLE tokens;
ALTER TABLE tokens_v6 RENAME TO tokens;

-- A run whose active jobs all wait for a node is `scheduling`.
CREATE TABLE runs_v6 (
    id                TEXT PRIMARY KEY,
    pipeline_id       TEXT NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,
    number            INTEGER NOT NULL,
    pipeline_version  INTEGER NOT NULL,
    -- the workflow as it was when the run was created, so a replay uses the same plan
    yaml              TEXT NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('pending', 'scheduling', 'running', 'paused', 'success', 'failure', 'canceled', 'timeout')),
    params            TEXT NOT NULL,
    triggered_by      TEXT NOT NULL,
    reason            TEXT,
    -- last event sequence number handed out; bumped in the event's insert transaction
    last_event_seq    INTEGER NOT NULL DEFAULT 0,
    created_at        TEXT NOT NULL,
    started_at        TEXT,
    finished_at       TEXT,
    retry_of          TEXT REFERENCES runs (id) ON DELETE SET NULL,
    file              TEXT NOT NULL DEFAULT '',
    files             TEXT NOT NULL DEFAULT '{}',
    UNIQUE (pipeline_id, number)
);
INSERT INTO runs_v6 (id, pipeline_id, number, pipeline_version, yaml, state, params,
        triggered_by, reason, last_event_seq, created_at, started_at, finished_at, retry_of,
        file, files)
    SELECT id, pipeline_id, number, pipeline_version, yaml, state, params, triggered_by, reason,
        last_event_seq, created_at, started_at, finished_at, retry_of, file, files FROM runs;
DROP TABLE runs;
ALTER TABLE runs_v6 RENAME TO runs;
CREATE INDEX runs_by_state ON runs (state);
CREATE INDEX runs_by_created ON runs (created_at);
CREATE INDEX runs_by_retry_of ON runs (retry_of);
CREATE INDEX runs_by_pipeline_state ON runs (pipeline_id, state, number);

COMMIT;
PRAGMA foreign_keys = ON;
