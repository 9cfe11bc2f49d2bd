-- Schedules of pipelines (`on: schedule:`), PostgreSQL flavour. Keep in step with
-- ../sqlite/0008_schedules.sql: same tables, columns and constraints; only column types
-- differ (timestamps are TIMESTAMPTZ, JSON is JSONB). Never edit a migration once
-- released: add the next one.

-- One row per schedule entry of a pipeline's current version; the server replaces a
-- pipeline's rows when it is applied, keeping those whose `key` is unchanged.
CREATE TABLE schedules (
    pipeline_id    TEXT NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,
    -- the entry's cron, time zone and params: what identifies it across applies
    key            TEXT NOT NULL,
    -- its place in the file (for listing)
    position       BIGINT NOT NULL,
    cron           TEXT NOT NULL,
    timezone       TEXT NOT NULL,
    -- param values as text
    params         JSONB NOT NULL,
    -- `skip` or `run-once`
    missed         TEXT NOT NULL,
    -- the next fire time; NULL when the expression has no future time
    next_fire_at   TIMESTAMPTZ,
    last_fired_at  TIMESTAMPTZ,
    -- the run the last fire started
    last_run_id    TEXT,
    created_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (pipeline_id, key)
);

CREATE INDEX schedules_next_fire_at ON schedules (next_fire_at);
