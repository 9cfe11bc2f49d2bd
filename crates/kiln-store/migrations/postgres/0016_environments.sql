-- Environments of a project (dev, staging, prod) and their variables, PostgreSQL flavour.
-- Keep in step with ../sqlite/0016_environments.sql: same tables, columns and constraints;
-- only column types differ (timestamps are TIMESTAMPTZ, booleans BOOLEAN, bytes BYTEA). Never
-- edit a migration once released: add the next one.

-- An environment: its place in the project's order (the one before it) and whether a release
-- there needs the approval of a second person.
CREATE TABLE environments (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    -- the environment before this one (dev before staging); NULL for the first
    after_id    TEXT REFERENCES environments (id),
    protected   BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    UNIQUE (project_id, name)
);

-- An environment's variables: a plain value, or a secret sealed by the server (AES-GCM, as
-- project secrets are; the store never sees its plaintext). One name, one of the two.
CREATE TABLE environment_variables (
    environment_id  TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    value           TEXT,
    key_id          TEXT,
    nonce           BYTEA,
    ciphertext      BYTEA,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (environment_id, name),
    CHECK ((value IS NULL) <> (ciphertext IS NULL))
);
