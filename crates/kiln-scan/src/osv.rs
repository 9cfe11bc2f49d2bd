//! OSV records (<https://ossf.github.io/osv-schema/>) read into [`Advisory`]s.
//!
//! Our own serde types (see `shared/design/dependencies.md`, W2.4): an ecosystem Kiln does not
//! scan is skipped, never an error, since OSV keeps adding ecosystems.

use serde::Deserialize;
use serde_json::Value;

use crate::{Advisory, Affected, Ecosystem, Range, Severity};

/// An OSV file Kiln cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}:{line}:{column}: {message}")]
pub struct OsvError {
    /// The file (or other origin) the caller named.
    pub origin: String,
    /// 1-based line of the error.
    pub line: usize,
    /// 1-based column of the error.
    pub column: usize,
    /// What was wrong and what was expected there.
    pub message: String,
}

#[derive(Deserialize)]
struct RawOsv {
    id: String,
    #[serde(default)]
    modified: String,
    #[serde(default)]
    withdrawn: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    upstream: Vec<String>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    details: Option<String>,
    #[serde(default)]
    severity: Vec<RawSeverity>,
    #[serde(default)]
    affected: Vec<RawAffected>,
    #[serde(default)]
    database_specific: Option<Value>,
}

#[derive(Deserialize)]
struct RawSeverity {
    #[serde(rename = "type")]
    kind: String,
    score: String,
}

#[derive(Deserialize)]
struct RawAffected {
    #[serde(default)]
    package: Option<RawPackage>,
    #[serde(default)]
    ranges: Vec<RawRange>,
    #[serde(default)]
    versions: Vec<String>,
    #[serde(default)]
    severity: Vec<RawSeverity>,
    #[serde(default)]
    ecosystem_specific: Option<Value>,
    #[serde(default)]
    database_specific: Option<Value>,
}

#[derive(Deserialize)]
struct RawPackage {
    ecosystem: String,
    name: String,
}

#[derive(Deserialize)]
struct RawRange {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    events: Vec<RawEvent>,
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(default)]
    introduced: Option<String>,
    #[serde(default)]
    fixed: Option<String>,
    #[serde(default)]
    last_affected: Option<String>,
}

/// Parses OSV JSON: one advisory object, an array of them, or JSON lines (one object per
/// line). `origin` names the file in errors, which give the line and column and what was
/// expected there.
///
/// Withdrawn records are left out. Affected entries of ecosystems Kiln does not scan are
/// dropped, and so are `GIT` ranges and RustSec's informational entries (unmaintained,
/// unsound, notice). `upstream` ids (Debian's records name their CVEs there) join the
/// aliases. The severity is, in this order: the record's `database_specific.severity`, the
/// highest `affected[].ecosystem_specific.severity` or `affected[].database_specific.severity`,
/// the highest score of the CVSS vectors (v2, v3, v4) or textual ratings (Ubuntu's) in
/// `severity[]` and `affected[].severity[]`, the highest Debian `urgency`, else `Unknown`.
pub fn parse_osv(bytes: &[u8], origin: &str) -> Result<Vec<Advisory>, OsvError> {
    let err = |e: serde_json::Error| OsvError {
        origin: origin.to_string(),
        line: e.line(),
        column: e.column(),
        message: describe(&e),
    };
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace());
    let Some(start) = start else {
        return Err(OsvError {
            origin: origin.to_string(),
            line: 1,
            column: 1,
            message: "empty file, expected an OSV object, an array of them or JSON lines"
                .to_string(),
        });
    };
    let raws: Vec<RawOsv> = match bytes[start] {
        b'[' => serde_json::from_slice(bytes).map_err(err)?,
        b'{' => serde_json::Deserializer::from_slice(bytes)
            .into_iter::<RawOsv>()
            .collect::<Result<_, _>>()
            .map_err(err)?,
        _ => {
            let (line, column) = position(bytes, start);
            return Err(OsvError {
                origin: origin.to_string(),
                line,
                column,
                message:
                    "expected `{` (an OSV object, or JSON lines of them) or `[` (an array of them)"
                        .to_string(),
            });
        }
    };
    Ok(raws.into_iter().filter(|raw| raw.withdrawn.is_none()).map(convert).collect())
}

/// serde_json's message without its own " at line L column C" tail (the error has them).
fn describe(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let message = match text.rfind(" at line ") {
        Some(at) => text[..at].to_string(),
        None => text,
    };
    match e.classify() {
        serde_json::error::Category::Eof => {
            format!("{message} (the file ends inside a value: expected the rest of it)")
        }
        _ => message,
    }
}

fn position(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = offset - before.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1) + 1;
    (line, column)
}

fn convert(raw: RawOsv) -> Advisory {
    let mut severity = severity_field(raw.database_specific.as_ref());
    if severity.is_none() {
        severity = raw
            .affected
            .iter()
            .flat_map(|a| {
                [
                    severity_field(a.ecosystem_specific.as_ref()),
                    severity_field(a.database_specific.as_ref()),
                ]
            })
            .flatten()
            .max();
    }
    if severity.is_none() {
        severity = raw
            .severity
            .iter()
            .chain(raw.affected.iter().flat_map(|a| a.severity.iter()))
            .filter_map(rated)
            .max();
    }
    if severity.is_none() {
        // Debian's tracker calls its rating `urgency`.
        severity = raw
            .affected
            .iter()
            .filter_map(|a| a.ecosystem_specific.as_ref()?.get("urgency")?.as_str()?.parse().ok())
            .filter(|s| *s != Severity::Unknown)
            .max();
    }
    let summary = raw
        .summary
        .filter(|s| !s.trim().is_empty())
        .or_else(|| {
            raw.details
                .as_deref()
                .and_then(|d| d.lines().find(|l| !l.trim().is_empty()))
                .map(str::to_string)
        })
        .unwrap_or_default()
        .trim()
        .to_string();
    let affected = raw.affected.into_iter().filter_map(convert_affected).collect();
    let mut aliases = raw.aliases;
    for id in raw.upstream {
        if !aliases.contains(&id) && id != raw.id {
            aliases.push(id);
        }
    }
    Advisory {
        id: raw.id,
        aliases,
        summary,
        severity: severity.unwrap_or(Severity::Unknown),
        modified: raw.modified,
        affected,
    }
}

/// A `severity` string in a `*_specific` object (GitHub's `MODERATE`, Debian's `high`).
fn severity_field(v: Option<&Value>) -> Option<Severity> {
    v?.get("severity")?.as_str()?.parse().ok().filter(|s| *s != Severity::Unknown)
}

/// A `severity[]` entry: a CVSS vector, or a distribution's word.
fn rated(s: &RawSeverity) -> Option<Severity> {
    if s.kind.starts_with("CVSS") {
        let vector: cvss::Cvss = s.score.parse().ok()?;
        return Some(match vector.severity() {
            cvss::Severity::None => Severity::Unknown,
            cvss::Severity::Low => Severity::Low,
            cvss::Severity::Medium => Severity::Medium,
            cvss::Severity::High => Severity::High,
            cvss::Severity::Critical => Severity::Critical,
        });
    }
    s.score.parse().ok().filter(|s| *s != Severity::Unknown)
}

fn convert_affected(raw: RawAffected) -> Option<Affected> {
    // RustSec's informational advisories (unmaintained, unsound, notice) are not
    // vulnerabilities.
    let informational = raw
        .database_specific
        .as_ref()
        .and_then(|d| d.get("informational"))
        .is_some_and(|i| !i.is_null());
    if informational {
        return None;
    }
    let package = raw.package?;
    let ecosystem = Ecosystem::from_osv(&package.ecosystem)?;
    let release = package
        .ecosystem
        .split_once(':')
        .map(|(_, r)| normalise_release(ecosystem, r))
        .filter(|r| !r.is_empty());
    let mut ranges = Vec::new();
    for range in raw.ranges {
        if range.kind == "GIT" {
            continue;
        }
        intervals(&range.events, &mut ranges);
    }
    Some(Affected { ecosystem, package: package.name, ranges, versions: raw.versions, release })
}

/// A release as [`crate::Package::release`] writes it: `v3.19` is `3.19`, `12` stays.
pub(crate) fn normalise_release(ecosystem: Ecosystem, release: &str) -> String {
    let release = release.trim();
    match ecosystem {
        Ecosystem::Alpine => release.strip_prefix('v').unwrap_or(release).to_string(),
        _ => release.to_string(),
    }
}

/// Turns a range's events, in the order written, into intervals.
fn intervals(events: &[RawEvent], out: &mut Vec<Range>) {
    let mut open: Option<Option<String>> = None;
    for event in events {
        if let Some(introduced) = &event.introduced {
            if let Some(start) = open.take() {
                out.push(Range { introduced: start, fixed: None, last_affected: None });
            }
            let start = (introduced != "0").then(|| introduced.clone());
            open = Some(start);
        } else if event.fixed.is_some() || event.last_affected.is_some() {
            let start = open.take().unwrap_or(None);
            out.push(Range {
                introduced: start,
                fixed: event.fixed.clone(),
                last_affected: if event.fixed.is_some() {
                    None
                } else {
                    event.last_affected.clone()
                },
            });
        }
    }
    if let Some(start) = open {
        out.push(Range { introduced: start, fixed: None, last_affected: None });
    }
}
