-- Kiln's schema, PostgreSQL flavour. Keep in step with ../sqlite/0001_init.sql: same tables,
-- columns and constraints; only column types differ (timestamps are TIMESTAMPTZ,
-- JSON is JSONB, integers BIGINT, ids are uuid v7 TEXT).

CREATE TABLE projects (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE pipelines (
    id               TEXT PRIMARY KEY,
    project_id       TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    yaml             TEXT NOT NULL,
    version          BIGINT NOT NULL,
    -- last run number handed out; bumped in the run's insert transaction
    last_run_number  BIGINT NOT NULL DEFAULT 0,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    UNIQUE (project_id, name)
);

CREATE TABLE runs (
    id                TEXT PRIMARY KEY,
    pipeline_id       TEXT NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,
    number            BIGINT NOT NULL,
    pipeline_version  BIGINT NOT NULL,
    -- the workflow as it was when the run was created, so a replay uses the same plan
    yaml              TEXT NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('pending', 'running', 'paused', 'success', 'failure', 'canceled', 'timeout')),
    params            JSONB NOT NULL,
    triggered_by      TEXT NOT NULL,
    reason            TEXT,
    -- last event sequence number handed out; bumped in the event's insert transaction
    last_event_seq    BIGINT NOT NULL DEFAULT 0,
    created_at        TIMESTAMPTZ NOT NULL,
    started_at        TIMESTAMPTZ,
    finished_at       TIMESTAMPTZ,
    UNIQUE (pipeline_id, number)
);
CREATE INDEX runs_by_state ON runs (state);
CREATE INDEX runs_by_created ON runs (created_at);

CREATE TABLE run_events (
    run_id  TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq     BIGINT NOT NULL,
    event   JSONB NOT NULL,
    at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE jobs (
    run_id       TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    job_id       TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('pending', 'queued', 'running', 'success', 'failure', 'skipped', 'canceled', 'timeout')),
    attempts     BIGINT NOT NULL,
    exit_code    BIGINT,
    outputs      JSONB NOT NULL,
    reason       TEXT,
    started_at   TIMESTAMPTZ,
    finished_at  TIMESTAMPTZ,
    PRIMARY KEY (run_id, job_id)
);

CREATE TABLE approvals (
    run_id      TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    stage       TEXT NOT NULL,
    decision    TEXT NOT NULL CHECK (decision IN ('approved', 'rejected')),
    decided_by  TEXT NOT NULL,
    at          TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (run_id, stage)
);

CREATE TABLE tokens (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    -- hex SHA-256 of the secret; the secret itself is never stored
    hash          TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL CHECK (role IN ('viewer', 'developer', 'admin')),
    project_id    TEXT REFERENCES projects (id) ON DELETE CASCADE,
    created_at    TIMESTAMPTZ NOT NULL,
    last_used_at  TIMESTAMPTZ,
    revoked_at    TIMESTAMPTZ
);
