//! Vulnerability scanning, pure: what Kiln does between an image's layers and the findings it
//! stores, with no I/O besides reading the `impl Read`s the caller hands in, no clock and no
//! tokio.
//!
//! - [`packages_from_layers`] reads an image's layers in order (tar, gzip or not), applies OCI
//!   whiteouts and returns the [`Package`]s of the files it recognises: Debian/Ubuntu
//!   `var/lib/dpkg/status` and `var/lib/dpkg/status.d/*` (distroless), Alpine
//!   `lib/apk/db/installed`, `Cargo.lock`, `package-lock.json`, `poetry.lock`,
//!   `requirements*.txt` pins and Go binaries' build info; [`packages_from_file`] does the same
//!   for one file;
//! - [`parse_osv`] reads advisories in the OSV format (one object, an array, or JSON lines),
//!   with errors naming the file, line and column;
//! - [`AdvisoryIndex`] holds advisories by ecosystem and package name and
//!   [`matches`](AdvisoryIndex::matches) packages against them, comparing versions by each
//!   ecosystem's rules ([`version::compare`]: dpkg, apk, semver, PEP 440).
//!
//! Debian advisories are matched by the *source* package (dpkg's `Source:` field), as the
//! Debian security tracker and OSV's Debian records name source packages.

mod index;
mod layers;
mod osv;
mod parsers;
pub mod version;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use index::AdvisoryIndex;
pub use layers::{ScanError, packages_from_file, packages_from_layers};
pub use osv::{OsvError, parse_osv};

/// OSV ecosystems Kiln understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ecosystem {
    /// Debian (and Ubuntu images read through dpkg): dpkg version rules.
    Debian,
    /// Alpine Linux: apk version rules.
    Alpine,
    /// Rust crates (`Cargo.lock`): semver.
    CratesIo,
    /// npm packages (`package-lock.json`): semver.
    Npm,
    /// Python packages (`poetry.lock`, `requirements.txt`): PEP 440.
    PyPI,
    /// Go modules (Go binaries' build info): semver with a `v` prefix.
    Go,
}

impl Ecosystem {
    /// Every ecosystem, in the order of the enum.
    pub const ALL: [Ecosystem; 6] = [
        Ecosystem::Debian,
        Ecosystem::Alpine,
        Ecosystem::CratesIo,
        Ecosystem::Npm,
        Ecosystem::PyPI,
        Ecosystem::Go,
    ];

    /// The ecosystem's name in OSV records: `Debian`, `Alpine`, `crates.io`, `npm`, `PyPI`, `Go`.
    pub fn osv_name(&self) -> &'static str {
        match self {
            Ecosystem::Debian => "Debian",
            Ecosystem::Alpine => "Alpine",
            Ecosystem::CratesIo => "crates.io",
            Ecosystem::Npm => "npm",
            Ecosystem::PyPI => "PyPI",
            Ecosystem::Go => "Go",
        }
    }

    /// The ecosystem an OSV name stands for; a release suffix is accepted (`Debian:12`,
    /// `Alpine:v3.19`). `None` for ecosystems Kiln does not scan.
    pub fn from_osv(s: &str) -> Option<Ecosystem> {
        let base = s.split_once(':').map_or(s, |(base, _)| base);
        Ecosystem::ALL.into_iter().find(|e| e.osv_name() == base)
    }
}

impl fmt::Display for Ecosystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.osv_name())
    }
}

impl Serialize for Ecosystem {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.osv_name())
    }
}

impl<'de> Deserialize<'de> for Ecosystem {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Ecosystem::from_osv(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown ecosystem `{s}`, expected one of Debian, Alpine, crates.io, npm, PyPI, Go"
            ))
        })
    }
}

/// A package found in an image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Package {
    /// The ecosystem whose advisories apply.
    pub ecosystem: Ecosystem,
    /// The name advisories use (for dpkg: the source package's name).
    pub name: String,
    /// The installed version (for dpkg: the source package's version).
    pub version: String,
    /// Path in the image it was read from (`var/lib/dpkg/status`, `app/Cargo.lock`).
    pub source: String,
    /// The distribution release the image reports for OS packages (`12` for Debian 12,
    /// `3.19` for Alpine 3.19, `ubuntu:22.04` for Ubuntu), read from `etc/os-release`;
    /// advisories for another release of the distribution do not apply. `None` when unknown
    /// or for language packages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
}

impl Package {
    /// A package with no distribution release.
    pub fn new(
        ecosystem: Ecosystem,
        name: impl Into<String>,
        version: impl Into<String>,
        source: impl Into<String>,
    ) -> Package {
        Package {
            ecosystem,
            name: name.into(),
            version: version.into(),
            source: source.into(),
            release: None,
        }
    }
}

/// How bad an advisory is; ordered from `Unknown` (lowest) to `Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// No severity given, or one Kiln cannot read.
    Unknown,
    /// Low.
    Low,
    /// Medium (also OSV's `MODERATE`).
    Medium,
    /// High (also `IMPORTANT`).
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Severity; 5] =
        [Severity::Unknown, Severity::Low, Severity::Medium, Severity::High, Severity::Critical];

    /// The lowercase name: `unknown`, `low`, `medium`, `high`, `critical`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Severity::Unknown => "unknown",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A severity name that is not one of `unknown`, `low`, `medium`, `high`, `critical`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown severity `{0}`, expected one of unknown, low, medium, high, critical")]
pub struct SeverityError(pub String);

impl FromStr for Severity {
    type Err = SeverityError;

    /// Reads a severity, case-insensitively; OSV's and distributions' synonyms are accepted
    /// (`moderate` = medium, `important` = high, `negligible` and Debian's `unimportant` =
    /// low, `not yet assigned` = unknown).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "unknown" | "not yet assigned" | "" => Ok(Severity::Unknown),
            "low" | "negligible" | "unimportant" => Ok(Severity::Low),
            "medium" | "moderate" => Ok(Severity::Medium),
            "high" | "important" => Ok(Severity::High),
            "critical" => Ok(Severity::Critical),
            _ => Err(SeverityError(s.to_string())),
        }
    }
}

/// One advisory, read from an OSV record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advisory {
    /// The OSV id (`RUSTSEC-2023-0044`, `DSA-5417-1`, `GHSA-...`).
    pub id: String,
    /// Other ids of the same vulnerability (`CVE-...`).
    pub aliases: Vec<String>,
    /// One line saying what it is (OSV `summary`, else the first line of `details`).
    pub summary: String,
    /// The advisory's severity (see [`parse_osv`] for where it comes from).
    pub severity: Severity,
    /// When the record last changed (OSV `modified`, RFC 3339 as written).
    pub modified: String,
    /// The packages it affects, in the ecosystems Kiln understands.
    pub affected: Vec<Affected>,
}

/// The versions of one package an advisory affects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Affected {
    /// The package's ecosystem.
    pub ecosystem: Ecosystem,
    /// The package's name (for Debian: the source package).
    pub package: String,
    /// Affected version intervals (from `ECOSYSTEM` and `SEMVER` ranges; `GIT` ranges are
    /// not used).
    pub ranges: Vec<Range>,
    /// Versions named one by one.
    pub versions: Vec<String>,
    /// The distribution release the entry is for (`12` of `Debian:12`, `3.19` of
    /// `Alpine:v3.19`), `None` when the ecosystem names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
}

/// One affected interval: from `introduced` (none: from the first version) up to `fixed`
/// (excluded) or `last_affected` (included); neither: every later version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    /// The first affected version; `None` (OSV's `"0"`) means every version from the first.
    pub introduced: Option<String>,
    /// The first version that is no longer affected.
    pub fixed: Option<String>,
    /// The last affected version.
    pub last_affected: Option<String>,
}

/// An installed package an advisory affects.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Finding {
    /// The advisory's id.
    pub advisory: String,
    /// The advisory's aliases.
    pub aliases: Vec<String>,
    /// The advisory's summary.
    pub summary: String,
    /// The advisory's severity.
    pub severity: Severity,
    /// The package's ecosystem.
    pub ecosystem: Ecosystem,
    /// The package's name.
    pub package: String,
    /// The installed version.
    pub installed: String,
    /// The version that fixes it: the fix of the range that matched (`None`: not fixed yet).
    pub fixed: Option<String>,
    /// Where in the image the package was read from.
    pub source: String,
}
