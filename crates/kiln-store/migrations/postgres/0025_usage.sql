-- Usage accounting, PostgreSQL flavour. Keep in step with ../sqlite/0025_usage.sql: same tables,
-- columns and constraints; only column types differ (timestamps are TIMESTAMPTZ).
-- Never edit a migration once released: add the next one.

-- What one job attempt reserved on its node and for how long, as the server saw it: the row
-- is inserted in the transaction that records the attempt's start (`ended_at` NULL) and
-- completed in the transaction that records its end, once. No foreign key: usage outlives
-- the runs, pipelines and nodes it names (garbage collection of runs keeps the bill).
CREATE TABLE usage (
    run_id        TEXT NOT NULL,
    job_id        TEXT NOT NULL,
    attempt       BIGINT NOT NULL,
    project_id    TEXT NOT NULL,
    pipeline      TEXT NOT NULL,
    -- `environment:` of the job, '' without one
    environment   TEXT NOT NULL DEFAULT '',
    node          TEXT NOT NULL,
    -- the node's `group` attribute, '' without one
    node_group    TEXT NOT NULL DEFAULT '',
    cpu_millis    BIGINT NOT NULL,
    memory_bytes  BIGINT NOT NULL,
    disk_bytes    BIGINT NOT NULL,
    started_at    TIMESTAMPTZ NOT NULL,
    ended_at      TIMESTAMPTZ,
    -- whole seconds from start to end, rounded up; NULL while the attempt runs
    seconds       BIGINT,
    PRIMARY KEY (run_id, job_id, attempt),
    CHECK (cpu_millis >= 0 AND memory_bytes >= 0 AND disk_bytes >= 0),
    CHECK ((ended_at IS NULL) = (seconds IS NULL))
);
CREATE INDEX usage_by_project ON usage (project_id, ended_at);
