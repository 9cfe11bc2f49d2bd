-- Services (long-running replicated workloads), PostgreSQL flavour. Keep in step with
-- ../sqlite/0012_services.sql: same tables, columns and constraints; only column types differ
-- (timestamps are TIMESTAMPTZ, JSON is JSONB, booleans BOOLEAN). Never edit a migration once
-- released: add the next one.

-- A service of a project: its latest version, the version every slot should run, the last
-- one every slot ran healthy, and its replica count.
CREATE TABLE services (
    id                 TEXT PRIMARY KEY,
    project_id         TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name               TEXT NOT NULL,
    -- the latest version number (bumped in the new version's transaction)
    version            BIGINT NOT NULL,
    -- the version whose spec every slot should run
    template           BIGINT NOT NULL,
    -- the last template every slot ran healthy (0: none yet)
    stable             BIGINT NOT NULL DEFAULT 0,
    replicas           BIGINT NOT NULL,
    -- when `template` last changed; NULL once the update is stable
    update_started_at  TIMESTAMPTZ,
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL,
    UNIQUE (project_id, name)
);

-- Every version of a service (apply, scale, restart, rollback, auto-rollback, stop), kept as
-- history; a version that is not its own template holds a copy of its template's spec.
CREATE TABLE service_versions (
    service_id  TEXT NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    version     BIGINT NOT NULL,
    template    BIGINT NOT NULL,
    replicas    BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    note        TEXT,
    author      TEXT NOT NULL,
    at          TIMESTAMPTZ NOT NULL,
    -- the service's spec as the server resolved it
    spec        JSONB NOT NULL,
    yaml        TEXT NOT NULL,
    file        TEXT NOT NULL,
    PRIMARY KEY (service_id, version)
);

-- Instances of a service, live and forgotten (kept as history).
CREATE TABLE service_instances (
    id          TEXT PRIMARY KEY,
    service_id  TEXT NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    slot        BIGINT NOT NULL,
    -- the template it runs
    version     BIGINT NOT NULL,
    state       TEXT NOT NULL,
    reason      TEXT,
    node        TEXT,
    host_ip     TEXT,
    -- port name to host port
    ports       JSONB NOT NULL,
    lease       TEXT,
    since       TIMESTAMPTZ NOT NULL,
    started_at  TIMESTAMPTZ,
    restarts    BIGINT NOT NULL,
    exit_code   BIGINT,
    forgotten   BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE INDEX service_instances_by_service ON service_instances (service_id, slot);

-- Changes of services' instances, numbered store-wide (a discovery watch resumes after a
-- revision). No foreign key: a deleted service's events stay, with its names. Writers take a
-- lock on this table before inserting, so revisions commit in order.
CREATE TABLE service_events (
    revision    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    service_id  TEXT NOT NULL,
    project     TEXT NOT NULL,
    service     TEXT NOT NULL,
    -- the instance as it was stored with this event, if any
    instance    JSONB,
    kind        TEXT NOT NULL,
    at          TIMESTAMPTZ NOT NULL
);
