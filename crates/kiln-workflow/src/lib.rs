//! Workflow spec v1: YAML text -> diagnostics -> [`plan::Plan`].
//!
//! Pure: no file system, no clock, no tokio. Templates (`uses:`) are read through the
//! [`Loader`] the caller passes in.

pub mod diag;
pub mod expr;
pub mod plan;

pub use diag::{Diagnostic, Severity};

/// Reads files named by a workflow (its `uses:` template). The binary passes one over the
/// file system; tests pass an in-memory map.
pub trait Loader {
    /// Returns the text of `path`. `path` is as written in the file, resolved against the
    /// directory of `from` (the file that names it).
    fn load(&self, from: &str, path: &str) -> Result<Source, String>;
}

/// A workflow file's name (for diagnostics) and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The file's path as the user would recognise it.
    pub name: String,
    /// Its text.
    pub text: String,
}

/// The result of [`compile`]: a plan when there were no errors, and every diagnostic found.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The plan; `None` when any diagnostic is an error.
    pub plan: Option<plan::Plan>,
    /// All problems found in one pass, in file order.
    pub diagnostics: Vec<Diagnostic>,
}
