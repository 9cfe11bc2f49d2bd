-- Runs started by other runs (a trigger job's) and groups of runs started together, SQLite
-- flavour. Keep in step with ../postgres/0019_run_links.sql: same tables, columns and
-- constraints; only column types differ (timestamps are RFC 3339 TEXT in UTC). Never edit a
-- migration once released: add the next one.

-- Runs started together and shown together: a trigger job's list, or `kiln group start`.
CREATE TABLE run_groups (
    id          TEXT PRIMARY KEY,
    -- who or what started it: a token's name, or `run <project/pipeline#n> job <job>`
    created_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

-- What started a run besides its `triggered_by`: the run and job that triggered it, the group
-- it belongs to (and its place there), and whose rights its own trigger jobs act with (the
-- token of the API call that started it, or its upstream run's). A run without a row was
-- started by the server itself (a push, a schedule) or before this migration.
CREATE TABLE run_links (
    run_id         TEXT PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    parent_run_id  TEXT REFERENCES runs (id) ON DELETE SET NULL,
    parent_job     TEXT,
    group_id       TEXT REFERENCES run_groups (id) ON DELETE SET NULL,
    position       INTEGER NOT NULL DEFAULT 0,
    author_token   TEXT REFERENCES tokens (id) ON DELETE SET NULL
);

CREATE INDEX run_links_by_parent ON run_links (parent_run_id);
CREATE INDEX run_links_by_group ON run_links (group_id, position);
