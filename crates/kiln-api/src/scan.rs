//! Vulnerability scanning in the REST API: advisory imports (OSV files), an image's scan and
//! findings, a project's image policy, and the `vulnerability` registry event's body.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One OSV file of an import: its name (for errors) and its text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AdvisoryFile {
    /// The file's name as the user gave it (errors name it).
    pub name: String,
    /// Its text: one OSV advisory object, an array of them, or JSON lines.
    pub content: String,
}

/// Body of `POST /api/v1/registry/advisories`: OSV files to import, all or nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ImportAdvisories {
    /// The files.
    pub files: Vec<AdvisoryFile>,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AdvisoryImportReport {
    /// Files read.
    pub files: u64,
    /// Advisories read in them.
    pub read: u64,
    /// Advisories not stored before.
    pub new: u64,
    /// Advisories stored before with other content (a newer `modified`).
    pub updated: u64,
    /// Advisories stored before as they are.
    pub unchanged: u64,
    /// Advisories stored now in all.
    pub total: u64,
    /// Images whose findings changed.
    pub images_changed: u64,
    /// The `vulnerability` events recorded: stored images newly matched by this import.
    pub notices: Vec<VulnerabilityNotice>,
}

/// A stored image that newly imported advisories match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VulnerabilityNotice {
    /// Repository.
    pub repository: String,
    /// The image's tags in it.
    pub tags: Vec<String>,
    /// The image's manifest digest.
    pub digest: String,
    /// The new advisories' ids.
    pub advisories: Vec<String>,
}

/// A finding: what an advisory says about a package of an image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Finding {
    /// The advisory's id (`RUSTSEC-…`, `DSA-…`, `GHSA-…`).
    pub advisory: String,
    /// Its aliases (CVE ids…).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Its summary.
    #[serde(default)]
    pub summary: String,
    /// `unknown`, `low`, `medium`, `high` or `critical`.
    pub severity: String,
    /// The package's OSV ecosystem (`Debian`, `Alpine`, `crates.io`, `npm`, `PyPI`, `Go`).
    pub ecosystem: String,
    /// The package.
    pub package: String,
    /// The version in the image.
    pub installed: String,
    /// The version that fixes it, if any.
    #[serde(default)]
    pub fixed: Option<String>,
    /// The file of the image the package was read from.
    pub source: String,
}

/// An image's scan and its findings (`GET /api/v1/registry/vulns`, `POST …/scan`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ImageScan {
    /// Repository.
    pub repository: String,
    /// The image as asked (`<project>/<name>:<tag>` or `…@sha256:…`).
    pub image: String,
    /// Its manifest digest.
    pub digest: String,
    /// `unscanned`, `queued`, `scanned`, `failed` or `skipped`.
    pub state: String,
    /// Packages found.
    pub packages: u64,
    /// When it was last scanned successfully.
    #[serde(default)]
    pub scanned_at: Option<DateTime<Utc>>,
    /// Why the last scan failed (or why the manifest is not scanned).
    #[serde(default)]
    pub error: Option<String>,
    /// The findings (at least the severity asked, if any), most severe first.
    pub findings: Vec<Finding>,
}

/// A project's image policy (`GET`/`PUT /api/v1/projects/{project}/image-policy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ImagePolicy {
    /// Deploys of an image with a critical finding are refused.
    #[serde(default)]
    pub block_critical_deploys: bool,
    /// The tag `latest` is refused on an image with a critical finding.
    #[serde(default)]
    pub no_critical_latest: bool,
}
