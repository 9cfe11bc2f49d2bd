-- The resource pool, PostgreSQL flavour. Keep in step with ../sqlite/0005_pool.sql: same
-- tables, columns and constraints; only column types differ (timestamps are TIMESTAMPTZ, JSON
-- is JSONB, booleans BOOLEAN). Never edit a migration once released: add the next one.

-- A node: a host whose agent registered at least once, by the agent's name.
CREATE TABLE nodes (
    name           TEXT PRIMARY KEY,
    -- what the agent declared when it last registered (host name, IP, executor, capacity,
    -- resources, port range, its own attributes)
    facts          JSONB NOT NULL,
    -- set by operators: no new work is placed there
    disabled       BOOLEAN NOT NULL DEFAULT FALSE,
    registered_at  TIMESTAMPTZ NOT NULL,
    -- the agent's last registration (polls are not written)
    last_seen      TIMESTAMPTZ NOT NULL
);

-- Attributes operators set on a node (`kiln nodes set`), over the agent's own.
CREATE TABLE node_attributes (
    node        TEXT NOT NULL REFERENCES nodes (name) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    -- a string, a number or an array of strings
    value       JSONB NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (node, key)
);
