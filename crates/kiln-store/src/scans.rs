//! Vulnerability scanning's records: imported advisories (OSV, kept as the server read them,
//! with the (ecosystem, package) pairs they affect), one scan per manifest digest (state,
//! the packages found, the findings) and each project's image policy. The matching itself is
//! `kiln-scan`'s, run by the server; this module only stores what it decided.
//!
//! Invariants:
//! - an import ([`Store::import_advisories`]) is one transaction: the advisories, the
//!   findings they change, the `vulnerability` registry events and their webhook deliveries
//!   are stored together or not at all;
//! - a failed scan keeps the findings of the last successful one (its error is on the scan).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;

use crate::error::Ctx;
use crate::model::{db_int, int};
use crate::{ProjectId, RegistryEvent, Result, Store, StoreError, now};

/// An advisory to store ([`Store::import_advisories`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NewAdvisory {
    /// Its id (`RUSTSEC-2023-0001`, `DSA-5000-1`…).
    pub id: String,
    /// OSV's `modified`.
    pub modified: String,
    /// The advisory as the server read it (JSON).
    pub osv: serde_json::Value,
    /// The (ecosystem, package) pairs it affects.
    pub packages: Vec<(String, String)>,
}

/// A stored advisory's identity, to tell new, updated and unchanged imports apart.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAdvisory {
    /// OSV's `modified`.
    pub modified: String,
    /// The advisory as stored (JSON).
    pub osv: serde_json::Value,
}

/// A package found in an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageRecord {
    /// Its OSV ecosystem name (`Debian`, `crates.io`…).
    pub ecosystem: String,
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The file of the image it was read from.
    pub source: String,
    /// The distribution release of an OS package (`12` for Debian 12).
    pub release: Option<String>,
}

/// What an advisory says about a package of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingRecord {
    /// The advisory's id.
    pub advisory: String,
    /// Its aliases (CVE ids…).
    pub aliases: Vec<String>,
    /// Its summary.
    pub summary: String,
    /// `unknown`, `low`, `medium`, `high` or `critical`.
    pub severity: String,
    /// The package's OSV ecosystem.
    pub ecosystem: String,
    /// The package.
    pub package: String,
    /// The version installed.
    pub installed: String,
    /// The version that fixes it, if any.
    pub fixed: Option<String>,
    /// The file of the image the package was read from.
    pub source: String,
}

/// The scan of a manifest digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanRecord {
    /// The manifest digest.
    pub digest: String,
    /// `queued`, `scanned`, `failed` or `skipped`.
    pub state: String,
    /// Packages the last successful scan found.
    pub packages: u64,
    /// When it last scanned successfully.
    pub scanned_at: Option<DateTime<Utc>>,
    /// Why the last scan failed, or why the manifest is skipped.
    pub error: Option<String>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// What a scan ended with ([`Store::record_scan`]).
#[derive(Debug, Clone, PartialEq)]
pub enum ScanOutcome {
    /// Read: its packages and findings replace the stored ones.
    Scanned {
        /// Every package found.
        packages: Vec<PackageRecord>,
        /// Every finding.
        findings: Vec<FindingRecord>,
    },
    /// Could not be read (a missing layer…): the error is stored, earlier findings kept.
    Failed(String),
    /// Not an image (a signature, an artifact): why.
    Skipped(String),
}

/// An import's changes to store in one transaction ([`Store::import_advisories`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AdvisoryImport {
    /// Advisories new or changed.
    pub advisories: Vec<NewAdvisory>,
    /// Digests whose findings change, with all their findings now.
    pub findings: Vec<(String, Vec<FindingRecord>)>,
    /// Digests newly matched by advisories of this import, with those advisory ids: one
    /// `vulnerability` event per repository holding the image (not as an index's child).
    pub notices: Vec<(String, Vec<String>)>,
}

/// A project's image policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagePolicy {
    /// Refuse deploys of images with a critical finding.
    pub block_critical_deploys: bool,
    /// Refuse the tag `latest` on images with a critical finding.
    pub no_critical_latest: bool,
}

/// Inserts finding `$f` of `$digest` inside transaction `$tx`.
macro_rules! insert_finding {
    ($tx:expr, $digest:expr, $f:expr) => {
        sqlx::query(
            "INSERT INTO image_findings (digest, advisory, aliases, summary, severity, ecosystem, \
             package, installed, fixed, source) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT DO NOTHING",
        )
        .bind($digest)
        .bind(&$f.advisory)
        .bind(serde_json::to_string(&$f.aliases).unwrap_or_else(|_| "[]".into()))
        .bind(&$f.summary)
        .bind(&$f.severity)
        .bind(&$f.ecosystem)
        .bind(&$f.package)
        .bind(&$f.installed)
        .bind(&$f.fixed)
        .bind(&$f.source)
        .execute(&mut *$tx)
        .await
    };
}

#[derive(sqlx::FromRow)]
struct ScanRow {
    digest: String,
    state: String,
    packages: i64,
    scanned_at: Option<DateTime<Utc>>,
    error: Option<String>,
    updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct FindingRow {
    advisory: String,
    aliases: String,
    summary: String,
    severity: String,
    ecosystem: String,
    package: String,
    installed: String,
    fixed: Option<String>,
    source: String,
}

impl FindingRow {
    fn into_record(self) -> Result<FindingRecord> {
        Ok(FindingRecord {
            aliases: serde_json::from_str(&self.aliases).map_err(|e| {
                StoreError::Corrupt(format!("aliases of finding {}: {e}", self.advisory))
            })?,
            advisory: self.advisory,
            summary: self.summary,
            severity: self.severity,
            ecosystem: self.ecosystem,
            package: self.package,
            installed: self.installed,
            fixed: self.fixed,
            source: self.source,
        })
    }
}

impl Store {
    /// Every stored advisory (JSON as the server read it), by id.
    pub async fn advisories(&self) -> Result<Vec<serde_json::Value>> {
        let what = || "list advisories".to_string();
        let rows: Vec<Json<serde_json::Value>> = with_db!(&self.db, p => sqlx::query_scalar(
            "SELECT osv FROM advisories ORDER BY id")
            .fetch_all(p)
            .await)
        .ctx(what)?;
        Ok(rows.into_iter().map(|j| j.0).collect())
    }

    /// The stored advisories among `ids`, by id.
    pub async fn stored_advisories(
        &self,
        ids: &[String],
    ) -> Result<HashMap<String, StoredAdvisory>> {
        let what = || "read advisories".to_string();
        let mut out = HashMap::new();
        for id in ids {
            let row: Option<(String, Json<serde_json::Value>)> =
                with_db!(&self.db, p => sqlx::query_as(
                "SELECT modified, osv FROM advisories WHERE id = $1")
                .bind(id)
                .fetch_optional(p)
                .await)
                .ctx(what)?;
            if let Some((modified, osv)) = row {
                out.insert(id.clone(), StoredAdvisory { modified, osv: osv.0 });
            }
        }
        Ok(out)
    }

    /// Stores an import in one transaction (see [`AdvisoryImport`]) and returns the
    /// `vulnerability` events it recorded (each with one outbox row per webhook of its
    /// project taking `vulnerability`).
    pub async fn import_advisories(&self, import: &AdvisoryImport) -> Result<Vec<RegistryEvent>> {
        let what = || format!("import {} advisories", import.advisories.len());
        let events = with_tx!(self, what, tx => {
            let at = now();
            for a in &import.advisories {
                sqlx::query(
                    "INSERT INTO advisories (id, modified, osv, imported_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (id) DO UPDATE SET modified = excluded.modified, \
                     osv = excluded.osv, imported_at = excluded.imported_at")
                    .bind(&a.id)
                    .bind(&a.modified)
                    .bind(Json(&a.osv))
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .ctx(what)?;
                sqlx::query("DELETE FROM advisory_packages WHERE advisory = $1")
                    .bind(&a.id)
                    .execute(&mut *tx)
                    .await
                    .ctx(what)?;
                for (ecosystem, package) in &a.packages {
                    sqlx::query(
                        "INSERT INTO advisory_packages (advisory, ecosystem, package) \
                         VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                        .bind(&a.id)
                        .bind(ecosystem)
                        .bind(package)
                        .execute(&mut *tx)
                        .await
                        .ctx(what)?;
                }
            }
            for (digest, findings) in &import.findings {
                sqlx::query("DELETE FROM image_findings WHERE digest = $1")
                    .bind(digest)
                    .execute(&mut *tx)
                    .await
                    .ctx(what)?;
                for f in findings {
                    insert_finding!(tx, digest, f).ctx(what)?;
                }
            }
            let mut events = Vec::new();
            for (digest, advisories) in &import.notices {
                let repos: Vec<(String, String)> = sqlx::query_as(
                    "SELECT m.repository, r.project_id FROM registry_manifests m \
                     JOIN registry_repositories r ON r.name = m.repository \
                     WHERE m.digest = $1 AND NOT EXISTS (SELECT 1 FROM registry_manifest_children c \
                       WHERE c.repository = m.repository AND c.child = m.digest) \
                     ORDER BY m.repository")
                    .bind(digest)
                    .fetch_all(&mut *tx)
                    .await
                    .ctx(what)?;
                for (repository, project) in repos {
                    let tags: Vec<String> = sqlx::query_scalar(
                        "SELECT tag FROM registry_tags WHERE repository = $1 AND digest = $2 \
                         ORDER BY tag")
                        .bind(&repository)
                        .bind(digest)
                        .fetch_all(&mut *tx)
                        .await
                        .ctx(what)?;
                    let media_type: String = sqlx::query_scalar(
                        "SELECT media_type FROM registry_manifests WHERE repository = $1 AND digest = $2")
                        .bind(&repository)
                        .bind(digest)
                        .fetch_one(&mut *tx)
                        .await
                        .ctx(what)?;
                    let id = uuid::Uuid::now_v7().to_string();
                    let tags_json = serde_json::to_string(&tags).unwrap_or_default();
                    let ids_json = serde_json::to_string(advisories).unwrap_or_default();
                    let row = sqlx::query_as::<_, crate::registry::EventRow>(
                        "INSERT INTO registry_events (id, project_id, repository, tag, digest, \
                         media_type, actor, created_at, action, tags, advisories) \
                         VALUES ($1, $2, $3, NULL, $4, $5, 'kiln', $6, 'vulnerability', $7, $8) \
                         RETURNING id, project_id, repository, tag, digest, media_type, actor, \
                         created_at, action, tags, advisories")
                        .bind(&id)
                        .bind(&project)
                        .bind(&repository)
                        .bind(digest)
                        .bind(&media_type)
                        .bind(at)
                        .bind(&tags_json)
                        .bind(&ids_json)
                        .fetch_one(&mut *tx)
                        .await
                        .ctx(what)?;
                    enqueue_deliveries!(tx, what, &project, "vulnerability", &id, at);
                    events.push(row.into_event()?);
                }
            }
            events
        });
        Ok(events)
    }

    /// The manifests to scan: those whose digest has no scan, or a `queued` one; one
    /// `(repository, digest)` per digest, oldest push first.
    pub async fn scan_queue(&self) -> Result<Vec<(String, String)>> {
        let what = || "list manifests to scan".to_string();
        let rows = with_db!(&self.db, p => sqlx::query_as(
            "SELECT MIN(m.repository), m.digest FROM registry_manifests m \
             LEFT JOIN image_scans s ON s.digest = m.digest \
             WHERE s.digest IS NULL OR s.state = 'queued' \
             GROUP BY m.digest ORDER BY MIN(m.created_at), m.digest")
            .fetch_all(p)
            .await)
        .ctx(what)?;
        Ok(rows)
    }

    /// Records how the scan of `digest` ended (see [`ScanOutcome`]).
    pub async fn record_scan(&self, digest: &str, outcome: &ScanOutcome) -> Result<ScanRecord> {
        let what = || format!("record the scan of {digest}");
        let row = with_tx!(self, what, tx => {
            let at = now();
            let (state, packages, scanned_at, error) = match outcome {
                ScanOutcome::Scanned { packages, .. } => {
                    ("scanned", Some(db_int(packages.len() as u64, "packages")?), Some(at), None)
                }
                ScanOutcome::Failed(e) => ("failed", None, None, Some(e.as_str())),
                ScanOutcome::Skipped(e) => ("skipped", None, None, Some(e.as_str())),
            };
            let row = sqlx::query_as::<_, ScanRow>(
                "INSERT INTO image_scans (digest, state, packages, scanned_at, error, updated_at) \
                 VALUES ($1, $2, COALESCE($3, 0), $4, $5, $6) ON CONFLICT (digest) DO UPDATE SET \
                 state = excluded.state, packages = COALESCE($3, image_scans.packages), \
                 scanned_at = COALESCE($4, image_scans.scanned_at), error = excluded.error, \
                 updated_at = excluded.updated_at \
                 RETURNING digest, state, packages, scanned_at, error, updated_at")
                .bind(digest)
                .bind(state)
                .bind(packages)
                .bind(scanned_at)
                .bind(error)
                .bind(at)
                .fetch_one(&mut *tx)
                .await
                .ctx(what)?;
            if let ScanOutcome::Scanned { packages, findings } = outcome {
                sqlx::query("DELETE FROM image_packages WHERE digest = $1")
                    .bind(digest)
                    .execute(&mut *tx)
                    .await
                    .ctx(what)?;
                sqlx::query("DELETE FROM image_findings WHERE digest = $1")
                    .bind(digest)
                    .execute(&mut *tx)
                    .await
                    .ctx(what)?;
                for p in packages {
                    sqlx::query(
                        "INSERT INTO image_packages (digest, ecosystem, name, version, source, \
                         release) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING")
                        .bind(digest)
                        .bind(&p.ecosystem)
                        .bind(&p.name)
                        .bind(&p.version)
                        .bind(&p.source)
                        .bind(&p.release)
                        .execute(&mut *tx)
                        .await
                        .ctx(what)?;
                }
                for f in findings {
                    insert_finding!(tx, digest, f).ctx(what)?;
                }
            }
            row
        });
        scan_record(row)
    }

    /// The scan of `digest`, if any.
    pub async fn image_scan(&self, digest: &str) -> Result<Option<ScanRecord>> {
        let what = || format!("get the scan of {digest}");
        let row = with_db!(&self.db, p => sqlx::query_as::<_, ScanRow>(
            "SELECT digest, state, packages, scanned_at, error, updated_at FROM image_scans \
             WHERE digest = $1")
            .bind(digest)
            .fetch_optional(p)
            .await)
        .ctx(what)?;
        row.map(scan_record).transpose()
    }

    /// The digests scanned successfully that a repository still holds, by digest.
    pub async fn scanned_digests(&self) -> Result<Vec<String>> {
        let what = || "list scanned images".to_string();
        let rows = with_db!(&self.db, p => sqlx::query_scalar(
            "SELECT s.digest FROM image_scans s WHERE s.state = 'scanned' AND EXISTS \
             (SELECT 1 FROM registry_manifests m WHERE m.digest = s.digest) ORDER BY s.digest")
            .fetch_all(p)
            .await)
        .ctx(what)?;
        Ok(rows)
    }

    /// The packages the last successful scan of `digest` found.
    pub async fn image_packages(&self, digest: &str) -> Result<Vec<PackageRecord>> {
        let what = || format!("list the packages of {digest}");
        let rows: Vec<(String, String, String, String, Option<String>)> = with_db!(&self.db, p => sqlx::query_as(
            "SELECT ecosystem, name, version, source, release FROM image_packages WHERE digest = $1 \
             ORDER BY ecosystem, name, version, source")
            .bind(digest)
            .fetch_all(p)
            .await)
        .ctx(what)?;
        Ok(rows
            .into_iter()
            .map(|(ecosystem, name, version, source, release)| PackageRecord {
                ecosystem,
                name,
                version,
                source,
                release,
            })
            .collect())
    }

    /// The findings of `digest`, by advisory then package.
    pub async fn image_findings(&self, digest: &str) -> Result<Vec<FindingRecord>> {
        let what = || format!("list the findings of {digest}");
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, FindingRow>(
            "SELECT advisory, aliases, summary, severity, ecosystem, package, installed, fixed, \
             source FROM image_findings WHERE digest = $1 \
             ORDER BY advisory, ecosystem, package, installed, source")
            .bind(digest)
            .fetch_all(p)
            .await)
        .ctx(what)?;
        rows.into_iter().map(FindingRow::into_record).collect()
    }

    /// The image policy of a project (all off if never set).
    pub async fn image_policy(&self, project_id: &ProjectId) -> Result<ImagePolicy> {
        let what = || format!("get the image policy of project {project_id}");
        let row: Option<(bool, bool)> = with_db!(&self.db, p => sqlx::query_as(
            "SELECT block_critical_deploys, no_critical_latest FROM image_policies \
             WHERE project_id = $1")
            .bind(project_id.text())
            .fetch_optional(p)
            .await)
        .ctx(what)?;
        Ok(row
            .map(|(block_critical_deploys, no_critical_latest)| ImagePolicy {
                block_critical_deploys,
                no_critical_latest,
            })
            .unwrap_or_default())
    }

    /// Sets the image policy of a project.
    pub async fn set_image_policy(
        &self,
        project_id: &ProjectId,
        policy: &ImagePolicy,
    ) -> Result<ImagePolicy> {
        let what = || format!("set the image policy of project {project_id}");
        with_write!(self, p => sqlx::query(
            "INSERT INTO image_policies (project_id, block_critical_deploys, no_critical_latest, \
             updated_at) VALUES ($1, $2, $3, $4) ON CONFLICT (project_id) DO UPDATE SET \
             block_critical_deploys = excluded.block_critical_deploys, \
             no_critical_latest = excluded.no_critical_latest, updated_at = excluded.updated_at")
            .bind(project_id.text())
            .bind(policy.block_critical_deploys)
            .bind(policy.no_critical_latest)
            .bind(now())
            .execute(p)
            .await
            .map(|_| ()))
        .ctx(what)?;
        Ok(*policy)
    }
}

fn scan_record(r: ScanRow) -> Result<ScanRecord> {
    Ok(ScanRecord {
        digest: r.digest,
        state: r.state,
        packages: int(r.packages, "packages")?,
        scanned_at: r.scanned_at,
        error: r.error,
        updated_at: r.updated_at,
    })
}
