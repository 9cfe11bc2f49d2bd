-- The elastic pool, PostgreSQL flavour. Keep in step with ../sqlite/0027_node_groups.sql: same
-- tables, columns and constraints; only column types differ (timestamps are TIMESTAMPTZ, JSON
-- is JSONB). Never edit a migration once released: add the next one.

-- A node group (`kiln pool group apply FILE`): its spec as the API took it (JSON), replaced by
-- each apply.
CREATE TABLE node_groups (
    name        TEXT PRIMARY KEY,
    spec        JSONB NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

-- The nodes the autoscaler asked a group's provider for and has not seen removed: `coming`
-- (asked for, not registered yet), `ready` (registered), `draining` (no new work; removed
-- once it runs nothing), `removing` (the provider was asked to remove it). A restarted
-- server counts coming nodes again and finishes removals: no node is asked for twice.
CREATE TABLE pool_nodes (
    name          TEXT PRIMARY KEY,
    node_group    TEXT NOT NULL,
    state         TEXT NOT NULL,
    requested_at  TIMESTAMPTZ NOT NULL,
    changed_at    TIMESTAMPTZ NOT NULL,
    CHECK (state IN ('coming', 'ready', 'draining', 'removing'))
);

-- The autoscaler's decisions and what became of them, with their reasons (`kiln pool events`).
CREATE TABLE pool_events (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL,
    node_group  TEXT NOT NULL,
    kind        TEXT NOT NULL,
    -- array of node names
    nodes       JSONB NOT NULL,
    reason      TEXT NOT NULL
);
CREATE INDEX pool_events_by_group ON pool_events (node_group, id);
