//! Kiln's config center, pure: an application's config items are files rendered from
//! templates (minijinja, the same syntax in every item) with values (shared values deep-merged
//! with an environment's overrides); a render has a content digest; two renders differ by
//! unified diffs; and [`release::decide`] says what a release, rollback, gray release,
//! approval or rejection does to an environment's head.
//!
//! Nothing here does I/O, reads a clock or depends on tokio: the server stores and delivers,
//! this crate decides. Templates render with auto-escape off (a config file is not HTML),
//! the trailing newline kept, undefined values as errors (with file:line and the
//! expression that was undefined) and a fuel budget that bounds a template's work.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub mod diff;
pub mod digest;
pub mod names;
pub mod release;
pub mod render;
pub mod values;

pub use diff::{Change, FileDiff, diff, unified};
pub use digest::digest;
pub use names::check_file_name;
pub use render::{Limits, Meta, Rendered, check_template, render};
pub use values::{merge, parse_values};

/// Files by name (a config item's file name to its text), in name order.
pub type Files = BTreeMap<String, String>;

/// One problem in a template or a values file, at a position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The template's file name, or the values file's name.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (1 when only the line is known).
    pub column: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
    }
}

/// 1-based line and column of byte `offset` of `text` (columns count characters).
pub(crate) fn position(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let text = "a: 1\nbé: {{ x }}\n";
        assert_eq!(position(text, 0), (1, 1));
        assert_eq!(position(text, 5), (2, 1));
        assert_eq!(position(text, text.find("{{").unwrap()), (2, 5));
        assert_eq!(position(text, 10_000), (3, 1));
    }
}
