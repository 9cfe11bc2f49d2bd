-- Runs intended by a claimed trigger (the trigger outbox), SQLite flavour. Keep in step with
-- ../postgres/0009_run_intents.sql: same tables, columns and constraints; only column types
-- differ (timestamps are RFC 3339 TEXT in UTC, JSON is TEXT). Never edit a migration once
-- released: add the next one.

-- The trigger a run was created for (`webhook:<provider>:<delivery>:<pipeline>`,
-- `schedule:<pipeline>:<entry>:<fire time>`); NULL for runs started by hand or retried. Unique:
-- one trigger never has two runs, whichever server creates them.
ALTER TABLE runs ADD COLUMN trigger_key TEXT;
CREATE UNIQUE INDEX runs_trigger_key ON runs (trigger_key);

-- A run a trigger claim intends to start, written in the claim's transaction (a webhook
-- delivery's id, a schedule's fire). The server creates its run right after the claim, and at
-- start for every intent left without one; the run carries `trigger_key`.
CREATE TABLE run_intents (
    trigger_key   TEXT PRIMARY KEY,
    -- the claim it came from: `webhook:<provider>:<delivery>` or `schedule:<pipeline>:<entry>`
    claim         TEXT NOT NULL,
    pipeline_id   TEXT NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,
    -- JSON object: param values as text
    params        TEXT NOT NULL,
    triggered_by  TEXT NOT NULL,
    -- JSON: the commit to build, for git triggers
    source        TEXT,
    created_at    TEXT NOT NULL,
    -- set once handled: the run created (NULL if it could not start) and why not
    done_at       TEXT,
    run_id        TEXT,
    error         TEXT
);
CREATE INDEX run_intents_claim ON run_intents (claim);
CREATE INDEX run_intents_done_at ON run_intents (done_at);
