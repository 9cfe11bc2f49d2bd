-- The OCI registry, SQLite flavour. Keep in step with ../postgres/0004_registry.sql: same
-- tables, columns and constraints; only column types differ. Blob bytes live in the blob
-- store (files), never here; manifests are small and kept whole in `content`.

-- A repository `<project>/<name>`; the project's tokens decide access, `public` allows
-- anonymous pulls.
CREATE TABLE registry_repositories (
    name        TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    public      INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL
);
CREATE INDEX registry_repositories_by_project ON registry_repositories (project_id);

-- One row per stored blob, whatever the number of repositories holding it (deduplicated).
-- touched_at moves on every upload, mount or existence check, so garbage collection leaves a
-- blob alone for a grace window while a push may still name it.
CREATE TABLE registry_blobs (
    digest      TEXT PRIMARY KEY,
    size        INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    touched_at  TEXT NOT NULL
);

-- Which repositories hold a blob (a blob is only served through a repository holding it).
CREATE TABLE registry_repository_blobs (
    repository  TEXT NOT NULL REFERENCES registry_repositories (name) ON DELETE CASCADE,
    digest      TEXT NOT NULL REFERENCES registry_blobs (digest) ON DELETE CASCADE,
    PRIMARY KEY (repository, digest)
);
CREATE INDEX registry_repository_blobs_by_digest ON registry_repository_blobs (digest);

-- A manifest (image manifest, index, artifact) of a repository, with its bytes.
CREATE TABLE registry_manifests (
    repository     TEXT NOT NULL REFERENCES registry_repositories (name) ON DELETE CASCADE,
    digest         TEXT NOT NULL,
    media_type     TEXT NOT NULL,
    size           INTEGER NOT NULL,
    content        BLOB NOT NULL,
    -- the artifact type of the manifest (artifactType, or the config's media type)
    artifact_type  TEXT,
    -- the digest of the manifest it refers to (`subject`), for the referrers API
    subject        TEXT,
    -- JSON object of the manifest's annotations, for referrer descriptors
    annotations    TEXT,
    created_at     TEXT NOT NULL,
    PRIMARY KEY (repository, digest)
);
CREATE INDEX registry_manifests_by_subject ON registry_manifests (repository, subject);

-- The blobs a manifest names (config and layers). A referenced blob cannot be deleted.
CREATE TABLE registry_manifest_blobs (
    repository  TEXT NOT NULL,
    manifest    TEXT NOT NULL,
    digest      TEXT NOT NULL REFERENCES registry_blobs (digest),
    PRIMARY KEY (repository, manifest, digest),
    FOREIGN KEY (repository, manifest) REFERENCES registry_manifests (repository, digest) ON DELETE CASCADE
);
CREATE INDEX registry_manifest_blobs_by_digest ON registry_manifest_blobs (digest);

-- The manifests an index names, in the same repository.
CREATE TABLE registry_manifest_children (
    repository  TEXT NOT NULL,
    manifest    TEXT NOT NULL,
    child       TEXT NOT NULL,
    PRIMARY KEY (repository, manifest, child),
    FOREIGN KEY (repository, manifest) REFERENCES registry_manifests (repository, digest) ON DELETE CASCADE
);
CREATE INDEX registry_manifest_children_by_child ON registry_manifest_children (repository, child);

-- Tags; deleting a manifest deletes its tags.
CREATE TABLE registry_tags (
    repository  TEXT NOT NULL,
    tag         TEXT NOT NULL,
    digest      TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (repository, tag),
    FOREIGN KEY (repository, digest) REFERENCES registry_manifests (repository, digest) ON DELETE CASCADE
);

-- Every manifest push, in order.
CREATE TABLE registry_events (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    repository  TEXT NOT NULL,
    tag         TEXT,
    digest      TEXT NOT NULL,
    media_type  TEXT NOT NULL,
    actor       TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX registry_events_by_project ON registry_events (project_id, created_at);

-- A project's webhooks: every push event of the project is POSTed to `url`.
CREATE TABLE registry_webhooks (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    url         TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

-- Deliveries still to make (the outbox): written in the push's transaction, so a restart
-- loses none; retried with backoff until delivered or out of attempts.
CREATE TABLE registry_outbox (
    id            TEXT PRIMARY KEY,
    webhook_id    TEXT NOT NULL REFERENCES registry_webhooks (id) ON DELETE CASCADE,
    event_id      TEXT NOT NULL REFERENCES registry_events (id) ON DELETE CASCADE,
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_at       TEXT NOT NULL,
    last_error    TEXT,
    -- `pending`, `delivered` or `failed`
    state         TEXT NOT NULL DEFAULT 'pending',
    updated_at    TEXT NOT NULL
);
CREATE INDEX registry_outbox_due ON registry_outbox (state, next_at);
