-- Secrets, artifacts, caches and run retries, PostgreSQL flavour. Keep in step with
-- ../sqlite/0002_secrets_artifacts_caches_retries.sql: same tables, columns and
-- constraints; only column types differ (timestamps are TIMESTAMPTZ, JSON is JSONB, integers
-- BIGINT, bytes are BYTEA). Never edit a migration once released: add the next one.

-- A project's secret, sealed by the server (AES-GCM); plaintext is never stored.
CREATE TABLE secrets (
    project_id  TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    -- which of the server's keys sealed it, so that keys can be rotated
    key_id      TEXT NOT NULL,
    nonce       BYTEA NOT NULL,
    ciphertext  BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (project_id, name)
);

-- The artifacts a job uploaded (its latest attempt's), as one archive in the blob directory.
CREATE TABLE artifacts (
    run_id      TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    job_id      TEXT NOT NULL,
    attempt     BIGINT NOT NULL,
    -- path relative to the blob directory; a retried run's copied rows share the blob
    blob        TEXT NOT NULL,
    size        BIGINT NOT NULL,
    -- hex SHA-256 of the blob
    sha256      TEXT NOT NULL,
    -- JSON list of {"path", "size"}, the files inside the archive
    files       JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (run_id, job_id)
);

-- Job caches of a project, by key; last_used_at drives eviction.
CREATE TABLE caches (
    project_id    TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    key           TEXT NOT NULL,
    blob          TEXT NOT NULL,
    size          BIGINT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    last_used_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (project_id, key)
);

-- The run a run retries (same pipeline), if any.
ALTER TABLE runs ADD COLUMN retry_of TEXT REFERENCES runs (id) ON DELETE SET NULL;
CREATE INDEX runs_by_retry_of ON runs (retry_of);
-- The queue of a pipeline: pending runs by number, active runs counted.
CREATE INDEX runs_by_pipeline_state ON runs (pipeline_id, state, number);
