-- Metric scraping rules, SQLite flavour. Keep in step with ../postgres/0013_metric_rules.sql:
-- same tables, columns and constraints; only column types differ (timestamps are RFC 3339
-- TEXT in UTC, JSON is TEXT). Never edit a migration once released: add the next one.

-- A project's rule (`kind: metric`): which services' instances the server scrapes, where and
-- how often. The scraped samples themselves live in the server's memory only.
CREATE TABLE metric_rules (
    project_id  TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    -- JSON: the rule as the server checked it
    spec        TEXT NOT NULL,
    yaml        TEXT NOT NULL,
    file        TEXT NOT NULL,
    author      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (project_id, name)
);
