-- The config center, PostgreSQL flavour. Keep in step with ../sqlite/0017_config.sql: same
-- tables, columns and constraints; only column types differ (timestamps are TIMESTAMPTZ,
-- JSON is JSONB, counters BIGINT). Never edit a migration once released: add the next one.

-- An application's config: its shared values (YAML, as the user wrote them).
CREATE TABLE config_apps (
    id             TEXT PRIMARY KEY,
    project_id     TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    shared_values  TEXT NOT NULL DEFAULT '',
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL,
    UNIQUE (project_id, name)
);

-- Its items: one template per file.
CREATE TABLE config_items (
    app_id      TEXT NOT NULL REFERENCES config_apps (id) ON DELETE CASCADE,
    file        TEXT NOT NULL,
    template    TEXT NOT NULL,
    updated_by  TEXT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (app_id, file)
);

-- Its values in one environment (YAML), laid over the shared ones.
CREATE TABLE config_values (
    app_id          TEXT NOT NULL REFERENCES config_apps (id) ON DELETE CASCADE,
    environment_id  TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    yaml            TEXT NOT NULL,
    updated_by      TEXT NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (app_id, environment_id)
);

-- The head of an application in an environment: the release everyone gets, the gray one, the
-- one waiting for approval, the last number given, and a revision bumped by every change of
-- these (a change is stored only if the revision it read is still the stored one).
CREATE TABLE config_targets (
    app_id          TEXT NOT NULL REFERENCES config_apps (id) ON DELETE CASCADE,
    environment_id  TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    revision        BIGINT NOT NULL,
    last_number     BIGINT NOT NULL,
    current         BIGINT,
    gray            BIGINT,
    pending         BIGINT,
    PRIMARY KEY (app_id, environment_id)
);

-- Releases, numbered 1, 2, 3… per application and environment, never deleted. The files and
-- what they were rendered from never change; the state moves from pending to released or
-- rejected once, and a gray release is promoted to everyone at most once.
CREATE TABLE config_releases (
    app_id          TEXT NOT NULL REFERENCES config_apps (id) ON DELETE CASCADE,
    environment_id  TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    number          BIGINT NOT NULL,
    -- pending | released | rejected
    state           TEXT NOT NULL,
    -- release | rollback
    kind            TEXT NOT NULL,
    -- a rollback's source release
    rollback_of     BIGINT,
    -- JSON list: a gray release's instances; NULL for a release to everyone
    instances       JSONB,
    digest          TEXT NOT NULL,
    -- JSON: file name to rendered text
    files           JSONB NOT NULL,
    -- JSON: the templates, shared values and environment values rendered
    snapshot        JSONB NOT NULL,
    note            TEXT,
    requested_by    TEXT NOT NULL,
    requested_at    TIMESTAMPTZ NOT NULL,
    -- who approved or rejected it, and when (NULL when no approval was needed)
    decided_by      TEXT,
    decided_at      TIMESTAMPTZ,
    -- who released a gray release to everyone, and when
    promoted_by     TEXT,
    promoted_at     TIMESTAMPTZ,
    PRIMARY KEY (app_id, environment_id, number)
);

-- Every change of an application's config, with names rather than keys (it outlives a
-- deleted environment).
CREATE TABLE config_audit (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id   TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    app          TEXT NOT NULL,
    environment  TEXT,
    action       TEXT NOT NULL,
    detail       TEXT NOT NULL,
    author       TEXT NOT NULL,
    at           TIMESTAMPTZ NOT NULL
);

CREATE INDEX config_audit_by_app ON config_audit (project_id, app, id);
