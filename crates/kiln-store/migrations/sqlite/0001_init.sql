-- Kiln's schema, SQLite flavour. Keep in step with ../postgres/0001_init.sql: same tables,
-- columns and constraints; only column types differ (timestamps are RFC 3339 TEXT in UTC,
-- JSON is TEXT, ids are uuid v7 TEXT).

CREATE TABLE projects (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);

CREATE TABLE pipelines (
    id               TEXT PRIMARY KEY,
    project_id       TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    yaml             TEXT NOT NULL,
    version          INTEGER NOT NULL,
    -- last run number handed out; bumped in the run's insert transaction
    last_run_number  INTEGER NOT NULL DEFAULT 0,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    UNIQUE (project_id, name)
);

CREATE TABLE runs (
    id                TEXT PRIMARY KEY,
    pipeline_id       TEXT NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,
    number            INTEGER NOT NULL,
    pipeline_version  INTEGER NOT NULL,
    -- the workflow as it was when the run was created, so a replay uses the same plan
    yaml              TEXT NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('pending', 'running', 'paused', 'success', 'failure', 'canceled', 'timeout')),
    params            TEXT NOT NULL,
    triggered_by      TEXT NOT NULL,
    reason            TEXT,
    -- last event sequence number handed out; bumped in the event's insert transaction
    last_event_seq    INTEGER NOT NULL DEFAULT 0,
    created_at        TEXT NOT NULL,
    started_at        TEXT,
    finished_at       TEXT,
    UNIQUE (pipeline_id, number)
);
CREATE INDEX runs_by_state ON runs (state);
CREATE INDEX runs_by_created ON runs (created_at);

CREATE TABLE run_events (
    run_id  TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL,
    event   TEXT NOT NULL,
    at      TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE jobs (
    run_id       TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    job_id       TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('pending', 'queued', 'running', 'success', 'failure', 'skipped', 'canceled', 'timeout')),
    attempts     INTEGER NOT NULL,
    exit_code    INTEGER,
    outputs      TEXT NOT NULL,
    reason       TEXT,
    started_at   TEXT,
    finished_at  TEXT,
    PRIMARY KEY (run_id, job_id)
);

CREATE TABLE approvals (
    run_id      TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    stage       TEXT NOT NULL,
    decision    TEXT NOT NULL CHECK (decision IN ('approved', 'rejected')),
    decided_by  TEXT NOT NULL,
    at          TEXT NOT NULL,
    PRIMARY KEY (run_id, stage)
);

CREATE TABLE tokens (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    -- hex SHA-256 of the secret; the secret itself is never stored
    hash          TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL CHECK (role IN ('viewer', 'developer', 'admin')),
    project_id    TEXT REFERENCES projects (id) ON DELETE CASCADE,
    created_at    TEXT NOT NULL,
    last_used_at  TEXT,
    revoked_at    TEXT
);
