//! Workflow spec v1: YAML text -> diagnostics -> [`plan::Plan`].
//!
//! Pure: no file system, no clock, no tokio. Templates (`uses:`) are read through the
//! [`Loader`] the caller passes in.
//!
//! Pipeline: `yaml` (text -> located tree) -> `read` (tree -> `RawWorkflow`, shapes and
//! scalar types) -> `check` (meaning: names, graph, matrix, expression references) ->
//! [`plan::Plan`]; `compile` drives it across template files. Every stage reports all the
//! problems it finds and goes on, so one pass gives every diagnostic.

mod check;
mod compile;
pub mod diag;
pub mod expr;
pub mod git;
mod params;
pub mod plan;
mod raw;
mod read;
pub mod run_env;
pub mod schedule;
pub mod units;
mod yaml;

pub use compile::MAX_TEMPLATE_DEPTH;
pub use diag::{Diagnostic, Severity};
pub use params::{bind_params, param_value};

/// Most instances one matrix job may expand to.
pub const MAX_MATRIX_INSTANCES: usize = check::MAX_MATRIX_INSTANCES;

/// Reads files named by a workflow (its `uses:` template). The binary passes one over the
/// file system; tests pass an in-memory map.
pub trait Loader {
    /// Returns the text of `path`. `path` is as written in the file, resolved against the
    /// directory of `from` (the file that names it). [`compile`] reads the entry file with
    /// `from = ""`.
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

/// Compiles the workflow file `entry`, read through `loader` (as `loader.load("", entry)`),
/// with its templates. Never panics; every problem of every file is a diagnostic.
pub fn compile(entry: &str, loader: &dyn Loader) -> Compiled {
    compile::compile(entry, loader)
}

/// The JSON Schema (draft 7) of workflow files, for editors. `docs/workflow.schema.json` is
/// this value, pretty-printed.
pub fn json_schema() -> serde_json::Value {
    raw::json_schema()
}
