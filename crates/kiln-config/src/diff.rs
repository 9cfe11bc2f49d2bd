//! Unified diffs between two sets of rendered files (two releases, a draft and a release, two
//! environments), git-style: `--- old/file`, `+++ new/file`, `@@` hunks with 3 lines of
//! context; an added file is diffed against `/dev/null`.

use serde::{Deserialize, Serialize};
use similar::TextDiff;

use crate::Files;

/// How a file differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// Only in the new set.
    Added,
    /// Only in the old set.
    Removed,
    /// In both, with other text.
    Changed,
}

impl Change {
    /// `added`, `removed` or `changed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Changed => "changed",
        }
    }
}

/// One file that differs, with its unified diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDiff {
    /// The file's name.
    pub file: String,
    /// How it differs.
    pub change: Change,
    /// Its unified diff (headers and hunks).
    pub unified: String,
}

/// The files that differ between `old` and `new`, in name order; `old_label` and
/// `new_label` prefix the file names in the headers (`release-3/app.yaml`).
pub fn diff(old: &Files, new: &Files, old_label: &str, new_label: &str) -> Vec<FileDiff> {
    let names: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let mut out = Vec::new();
    for name in names {
        let (a, b) = (old.get(name), new.get(name));
        let change = match (a, b) {
            (Some(a), Some(b)) if a == b => continue,
            (Some(_), Some(_)) => Change::Changed,
            (None, Some(_)) => Change::Added,
            (Some(_), None) => Change::Removed,
            (None, None) => continue,
        };
        let from =
            if a.is_some() { format!("{old_label}/{name}") } else { "/dev/null".to_string() };
        let to = if b.is_some() { format!("{new_label}/{name}") } else { "/dev/null".to_string() };
        let (a, b) = (a.map_or("", String::as_str), b.map_or("", String::as_str));
        let unified = TextDiff::from_lines(a, b)
            .unified_diff()
            .context_radius(3)
            .header(&from, &to)
            .to_string();
        out.push(FileDiff { file: name.clone(), change, unified });
    }
    out
}

/// Every file's diff, one after the other (what `kiln config diff` prints); empty when
/// nothing differs.
pub fn unified(diffs: &[FileDiff]) -> String {
    diffs.iter().map(|d| d.unified.as_str()).collect()
}
