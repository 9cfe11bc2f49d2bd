-- The resource pool, SQLite flavour. Keep in step with ../postgres/0005_pool.sql: same tables,
-- columns and constraints; only column types differ (timestamps are RFC 3339 TEXT in UTC, JSON
-- is TEXT, booleans INTEGER). Never edit a migration once released: add the next one.

-- A node: a host whose agent registered at least once, by the agent's name.
CREATE TABLE nodes (
    name           TEXT PRIMARY KEY,
    -- JSON: what the agent declared when it last registered (host name, IP, executor,
    -- capacity, resources, port range, its own attributes)
    facts          TEXT NOT NULL,
    -- set by operators: no new work is placed there
    disabled       INTEGER NOT NULL DEFAULT 0,
    registered_at  TEXT NOT NULL,
    -- the agent's last registration (polls are not written)
    last_seen      TEXT NOT NULL
);

-- Attributes operators set on a node (`kiln nodes set`), over the agent's own.
CREATE TABLE node_attributes (
    node        TEXT NOT NULL REFERENCES nodes (name) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    -- JSON: a string, a number or an array of strings
    value       TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (node, key)
);
