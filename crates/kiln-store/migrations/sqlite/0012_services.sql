-- Services (long-running replicated workloads), SQLite flavour. Keep in step with
-- ../postgres/0012_services.sql: same tables, columns and constraints; only column types
-- differ (timestamps are RFC 3339 TEXT in UTC, JSON is TEXT, booleans INTEGER). Never edit a
-- migration once released: add the next one.

-- A service of a project: its latest version, the version every slot should run, the last
-- one every slot ran healthy, and its replica count.
CREATE TABLE services (
    id                 TEXT PRIMARY KEY,
    project_id         TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name               TEXT NOT NULL,
    -- the latest version number (bumped in the new version's transaction)
    version            INTEGER NOT NULL,
    -- the version whose spec every slot should run
    template           INTEGER NOT NULL,
    -- the last template every slot ran healthy (0: none yet)
    stable             INTEGER NOT NULL DEFAULT 0,
    replicas           INTEGER NOT NULL,
    -- when `template` last changed; NULL once the update is stable
    update_started_at  TEXT,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    UNIQUE (project_id, name)
);

-- Every version of a service (apply, scale, restart, rollback, auto-rollback, stop), kept as
-- history; a version that is not its own template holds a copy of its template's spec.
CREATE TABLE service_versions (
    service_id  TEXT NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    version     INTEGER NOT NULL,
    template    INTEGER NOT NULL,
    replicas    INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    note        TEXT,
    author      TEXT NOT NULL,
    at          TEXT NOT NULL,
    -- JSON: the service's spec as the server resolved it
    spec        TEXT NOT NULL,
    yaml        TEXT NOT NULL,
    file        TEXT NOT NULL,
    PRIMARY KEY (service_id, version)
);

-- Instances of a service, live and forgotten (kept as history).
CREATE TABLE service_instances (
    id          TEXT PRIMARY KEY,
    service_id  TEXT NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    slot        INTEGER NOT NULL,
    -- the template it runs
    version     INTEGER NOT NULL,
    state       TEXT NOT NULL,
    reason      TEXT,
    node        TEXT,
    host_ip     TEXT,
    -- JSON object: port name to host port
    ports       TEXT NOT NULL,
    lease       TEXT,
    since       TEXT NOT NULL,
    started_at  TEXT,
    restarts    INTEGER NOT NULL,
    exit_code   INTEGER,
    forgotten   INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX service_instances_by_service ON service_instances (service_id, slot);

-- Changes of services' instances, numbered store-wide (a discovery watch resumes after a
-- revision). No foreign key: a deleted service's events stay, with its names.
CREATE TABLE service_events (
    revision    INTEGER PRIMARY KEY AUTOINCREMENT,
    service_id  TEXT NOT NULL,
    project     TEXT NOT NULL,
    service     TEXT NOT NULL,
    -- JSON: the instance as it was stored with this event, if any
    instance    TEXT,
    kind        TEXT NOT NULL,
    at          TEXT NOT NULL
);
