-- Deployments (`kiln deploy`, `rollback`, `promote`), SQLite flavour. Keep in step with
-- ../postgres/0018_deployments.sql: same tables, columns and constraints; only column types
-- differ (timestamps are RFC 3339 TEXT in UTC, JSON is TEXT). Never edit a migration once
-- released: add the next one.

-- The deployment a service runs: the service file's name and the environment (the service is
-- `<name>-<environment>`); NULL for a service applied by hand or a build-scoped pool.
ALTER TABLE services ADD COLUMN deployed_as TEXT;
ALTER TABLE services ADD COLUMN environment TEXT;

-- Deployments of a service file to an environment, numbered 1, 2, 3… per project, service and
-- environment, never deleted. What was deployed (image, digest, spec, config release, run, who,
-- when) never changes; only the state, its approval and its end do.
CREATE TABLE deployments (
    project_id       TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    -- the service file's name
    service          TEXT NOT NULL,
    environment      TEXT NOT NULL,
    number           INTEGER NOT NULL,
    -- deploy | rollback | promote | auto-rollback
    kind             TEXT NOT NULL,
    -- pending | running | succeeded | failed | rolled_back | rejected | superseded
    state            TEXT NOT NULL,
    -- the image as asked, its manifest digest, and `<registry host>/<repo>@<digest>`
    image            TEXT NOT NULL,
    digest           TEXT NOT NULL,
    image_ref        TEXT NOT NULL,
    -- the environment's config release current when deployed (NULL: no config)
    config_app       TEXT,
    config_release   INTEGER,
    -- the service that runs it, and the version of it the deployment made
    service_name     TEXT NOT NULL,
    service_version  INTEGER,
    -- JSON: the service's spec as deployed; the YAML and file it came from
    spec             TEXT NOT NULL,
    yaml             TEXT NOT NULL,
    file             TEXT NOT NULL,
    -- the workflow run (and job) that deployed it
    run_id           TEXT,
    run_name         TEXT,
    run_job          TEXT,
    asked_by         TEXT NOT NULL,
    asked_at         TEXT NOT NULL,
    approved_by      TEXT,
    approved_at      TEXT,
    finished_at      TEXT,
    note             TEXT,
    -- why it failed, was rolled back or rejected
    reason           TEXT,
    -- the deployment whose image and spec it brings back (rollback, auto-rollback)
    rollback_of      INTEGER,
    -- the environment a promotion took its image and spec from
    promoted_from    TEXT,
    PRIMARY KEY (project_id, service, environment, number)
);

-- At most one deployment of a service to an environment waits for approval or runs.
CREATE UNIQUE INDEX deployments_one_active ON deployments (project_id, service, environment)
    WHERE state IN ('pending', 'running');
CREATE INDEX deployments_by_state ON deployments (state);
