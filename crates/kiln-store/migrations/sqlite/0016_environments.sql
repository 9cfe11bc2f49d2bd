-- Environments of a project (dev, staging, prod) and their variables, SQLite flavour. Keep in
-- step with ../postgres/0016_environments.sql: same tables, columns and constraints; only
-- column types differ (timestamps are RFC 3339 TEXT in UTC, booleans INTEGER, bytes BLOB).
-- Never edit a migration once released: add the next one.

-- An environment: its place in the project's order (the one before it) and whether a release
-- there needs the approval of a second person.
CREATE TABLE environments (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    -- the environment before this one (dev before staging); NULL for the first
    after_id    TEXT REFERENCES environments (id),
    protected   INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    UNIQUE (project_id, name)
);

-- An environment's variables: a plain value, or a secret sealed by the server (AES-GCM, as
-- project secrets are; the store never sees its plaintext). One name, one of the two.
CREATE TABLE environment_variables (
    environment_id  TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    value           TEXT,
    key_id          TEXT,
    nonce           BLOB,
    ciphertext      BLOB,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (environment_id, name),
    CHECK ((value IS NULL) <> (ciphertext IS NULL))
);
