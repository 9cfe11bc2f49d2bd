-- Vulnerability scanning of registry images, PostgreSQL flavour. Keep in step with
-- ../sqlite/0021_scans.sql: same tables, columns and constraints; only column types differ
-- (timestamps are TIMESTAMPTZ, JSON is JSONB, integers BIGINT). Never edit a migration once released:
-- add the next one.

-- Advisories imported from OSV files (`kiln registry advisories import`), one row per id.
CREATE TABLE advisories (
    id           TEXT PRIMARY KEY,
    -- OSV's `modified`, as given: a newer import of the same id replaces the row
    modified     TEXT NOT NULL,
    -- the advisory as the server read it (kiln-scan's `Advisory`, JSON)
    osv          JSONB NOT NULL,
    imported_at  TIMESTAMPTZ NOT NULL
);

-- The (ecosystem, package) pairs an advisory affects: which images to look at again.
CREATE TABLE advisory_packages (
    advisory   TEXT NOT NULL REFERENCES advisories (id) ON DELETE CASCADE,
    ecosystem  TEXT NOT NULL,
    package    TEXT NOT NULL,
    PRIMARY KEY (advisory, ecosystem, package)
);
CREATE INDEX advisory_packages_by_package ON advisory_packages (ecosystem, package);

-- One scan per manifest digest (the same digest is the same image in every repository).
-- Manifests without a row, or `queued`, are scanned by the server's worker (also at start).
CREATE TABLE image_scans (
    digest      TEXT PRIMARY KEY,
    -- `queued`, `scanned`, `failed` (see `error`) or `skipped` (not an image, see `error`)
    state       TEXT NOT NULL,
    packages    BIGINT NOT NULL DEFAULT 0,
    scanned_at  TIMESTAMPTZ,
    error       TEXT,
    updated_at  TIMESTAMPTZ NOT NULL
);

-- The packages the last successful scan found (matched again when advisories are imported).
CREATE TABLE image_packages (
    digest     TEXT NOT NULL REFERENCES image_scans (digest) ON DELETE CASCADE,
    ecosystem  TEXT NOT NULL,
    name       TEXT NOT NULL,
    version    TEXT NOT NULL,
    -- the file of the image it was read from
    source     TEXT NOT NULL,
    -- the distribution release of an OS package (`12` for Debian 12), from etc/os-release
    release    TEXT,
    PRIMARY KEY (digest, ecosystem, name, version, source)
);

-- What the advisories say about an image's packages.
CREATE TABLE image_findings (
    digest     TEXT NOT NULL REFERENCES image_scans (digest) ON DELETE CASCADE,
    advisory   TEXT NOT NULL,
    -- JSON array of the advisory's aliases (CVE ids…)
    aliases    TEXT NOT NULL,
    summary    TEXT NOT NULL,
    -- `unknown`, `low`, `medium`, `high` or `critical`
    severity   TEXT NOT NULL,
    ecosystem  TEXT NOT NULL,
    package    TEXT NOT NULL,
    installed  TEXT NOT NULL,
    fixed      TEXT,
    source     TEXT NOT NULL,
    PRIMARY KEY (digest, advisory, ecosystem, package, installed, source)
);
CREATE INDEX image_findings_by_advisory ON image_findings (advisory);

-- A project's image policy: refuse deploys of, and the tag `latest` on, images with a
-- critical finding.
CREATE TABLE image_policies (
    project_id              TEXT PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
    block_critical_deploys  BOOLEAN NOT NULL DEFAULT FALSE,
    no_critical_latest      BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at              TIMESTAMPTZ NOT NULL
);
