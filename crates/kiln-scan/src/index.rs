//! Advisories by (ecosystem, package name), and the matching of installed packages.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use crate::version::compare;
use crate::{Advisory, Affected, Ecosystem, Finding, Package, Range};

/// Advisories indexed by ecosystem and package name, ready to match packages.
#[derive(Debug, Clone, Default)]
pub struct AdvisoryIndex {
    advisories: Vec<Advisory>,
    /// (ecosystem, normalised name) -> (advisory, affected entry) positions.
    by_package: HashMap<(Ecosystem, String), Vec<(usize, usize)>>,
}

/// The name as advisories and packages are compared: PyPI names are normalised (PEP 503:
/// lowercase, runs of `-`, `_`, `.` as one `-`); other ecosystems compare names as written.
pub(crate) fn normalise_name(ecosystem: Ecosystem, name: &str) -> String {
    match ecosystem {
        Ecosystem::PyPI => {
            let mut out = String::with_capacity(name.len());
            let mut dash = false;
            for c in name.trim().chars() {
                if matches!(c, '-' | '_' | '.') {
                    dash = true;
                } else {
                    if dash && !out.is_empty() {
                        out.push('-');
                    }
                    dash = false;
                    out.push(c.to_ascii_lowercase());
                }
            }
            out
        }
        _ => name.trim().to_string(),
    }
}

impl AdvisoryIndex {
    /// Indexes advisories. An advisory given twice (same id) is kept once: the one with the
    /// latest `modified`, the later one given on a tie.
    pub fn new(advisories: impl IntoIterator<Item = Advisory>) -> Self {
        let mut by_id: BTreeMap<String, Advisory> = BTreeMap::new();
        for advisory in advisories {
            match by_id.get(&advisory.id) {
                Some(kept) if kept.modified > advisory.modified => {}
                _ => {
                    by_id.insert(advisory.id.clone(), advisory);
                }
            }
        }
        let advisories: Vec<Advisory> = by_id.into_values().collect();
        let mut by_package: HashMap<(Ecosystem, String), Vec<(usize, usize)>> = HashMap::new();
        for (a, advisory) in advisories.iter().enumerate() {
            for (e, affected) in advisory.affected.iter().enumerate() {
                by_package
                    .entry((
                        affected.ecosystem,
                        normalise_name(affected.ecosystem, &affected.package),
                    ))
                    .or_default()
                    .push((a, e));
            }
        }
        AdvisoryIndex { advisories, by_package }
    }

    /// How many advisories it holds.
    pub fn len(&self) -> usize {
        self.advisories.len()
    }

    /// Whether it holds no advisory.
    pub fn is_empty(&self) -> bool {
        self.advisories.is_empty()
    }

    /// The advisories it holds, by id.
    pub fn advisories(&self) -> &[Advisory] {
        &self.advisories
    }

    /// The advisory with this id.
    pub fn get(&self, id: &str) -> Option<&Advisory> {
        self.advisories
            .binary_search_by(|a| a.id.as_str().cmp(id))
            .ok()
            .map(|i| &self.advisories[i])
    }

    /// The findings of these packages: one per (package as found, advisory), sorted by
    /// package name, ecosystem, installed version, source, then advisory id.
    ///
    /// An advisory's entry for a distribution release (`Debian:12`) applies to packages of
    /// that release, and to packages whose release is unknown. When several entries of one
    /// advisory match, the finding takes the fix of an entry for the package's own release
    /// first, then the lowest fix above the installed version (`None` when one of them has
    /// no fix).
    pub fn matches(&self, packages: &[Package]) -> Vec<Finding> {
        let mut found: BTreeMap<FindingKey, Candidate> = BTreeMap::new();
        for package in packages {
            let key = (package.ecosystem, normalise_name(package.ecosystem, &package.name));
            let Some(entries) = self.by_package.get(&key) else {
                continue;
            };
            for &(a, e) in entries {
                let advisory = &self.advisories[a];
                let affected = &advisory.affected[e];
                let same_release = match (&affected.release, &package.release) {
                    (Some(theirs), Some(ours)) if !release_matches(theirs, ours) => continue,
                    (Some(_), Some(_)) => true,
                    _ => false,
                };
                let Some(fixed) = affects(affected, &package.version) else {
                    continue;
                };
                let candidate = Candidate { advisory: a, same_release, fixed };
                let key = (
                    package.name.clone(),
                    package.ecosystem,
                    package.version.clone(),
                    package.source.clone(),
                    advisory.id.clone(),
                );
                match found.get_mut(&key) {
                    Some(kept) => {
                        if candidate.better_than(kept, package.ecosystem) {
                            *kept = candidate;
                        }
                    }
                    None => {
                        found.insert(key, candidate);
                    }
                }
            }
        }
        found
            .into_iter()
            .map(|((package, ecosystem, installed, source, _), c)| {
                let advisory = &self.advisories[c.advisory];
                Finding {
                    advisory: advisory.id.clone(),
                    aliases: advisory.aliases.clone(),
                    summary: advisory.summary.clone(),
                    severity: advisory.severity,
                    ecosystem,
                    package,
                    installed,
                    fixed: c.fixed,
                    source,
                }
            })
            .collect()
    }
}

type FindingKey = (String, Ecosystem, String, String, String);

struct Candidate {
    advisory: usize,
    same_release: bool,
    fixed: Option<String>,
}

impl Candidate {
    fn better_than(&self, other: &Candidate, ecosystem: Ecosystem) -> bool {
        if self.same_release != other.same_release {
            return self.same_release;
        }
        match (&self.fixed, &other.fixed) {
            (None, Some(_)) => true,
            (None, None) | (Some(_), None) => false,
            (Some(a), Some(b)) => compare(ecosystem, a, b) == Ordering::Less,
        }
    }
}

/// Whether an advisory's release (`12`, `3.19`) names the package's (`12`, `3.19.1`).
fn release_matches(advisory: &str, package: &str) -> bool {
    advisory == package || package.strip_prefix(advisory).is_some_and(|rest| rest.starts_with('.'))
}

/// Whether the entry affects `version`; `Some(fix)` if it does, the fix being the one of
/// the range that matched (for a version listed one by one: the lowest fix above it).
fn affects(affected: &Affected, version: &str) -> Option<Option<String>> {
    let eco = affected.ecosystem;
    for range in &affected.ranges {
        if in_range(eco, range, version) {
            return Some(range.fixed.clone());
        }
    }
    if affected.versions.iter().any(|v| v == version || compare(eco, v, version) == Ordering::Equal)
    {
        let fix = affected
            .ranges
            .iter()
            .filter_map(|r| r.fixed.as_deref())
            .filter(|f| compare(eco, f, version) == Ordering::Greater)
            .min_by(|a, b| compare(eco, a, b));
        return Some(fix.map(str::to_string));
    }
    None
}

fn in_range(eco: Ecosystem, range: &Range, version: &str) -> bool {
    if let Some(introduced) = &range.introduced
        && compare(eco, version, introduced) == Ordering::Less
    {
        return false;
    }
    if let Some(fixed) = &range.fixed {
        return compare(eco, version, fixed) == Ordering::Less;
    }
    if let Some(last) = &range.last_affected {
        return compare(eco, version, last) != Ordering::Greater;
    }
    true
}
