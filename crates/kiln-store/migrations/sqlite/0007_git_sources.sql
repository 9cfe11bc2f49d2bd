-- Git sources and webhook deliveries, SQLite flavour. Keep in step with
-- ../postgres/0007_git_sources.sql: same tables, columns and constraints; only column types
-- differ (timestamps are RFC 3339 TEXT in UTC, JSON is TEXT). Never edit a migration once
-- released: add the next one.

-- JSON: the commit a run builds (provider, event, repository, ref, branch or tag, commit,
-- message, author, pull request); NULL for runs not started from git.
ALTER TABLE runs ADD COLUMN source TEXT;

-- Every webhook delivery whose signature or token checked out, by the provider's delivery
-- id: a replayed id starts nothing twice, across restarts too.
CREATE TABLE webhook_deliveries (
    provider     TEXT NOT NULL,
    id           TEXT NOT NULL,
    -- the provider's event name (`push`, `Merge Request Hook`, …)
    event        TEXT NOT NULL,
    repository   TEXT NOT NULL,
    -- what Kiln did, for people ("started 2 run(s)", "no pipeline wants …")
    outcome      TEXT NOT NULL,
    -- JSON array of the runs started (`project/pipeline#number`)
    runs         TEXT NOT NULL DEFAULT '[]',
    received_at  TEXT NOT NULL,
    PRIMARY KEY (provider, id)
);
