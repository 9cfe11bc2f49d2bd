//! Workflow spec v1: YAML text -> diagnostics -> [`plan::Plan`]; service files
//! (`kind: service`) -> diagnostics -> [`service::ServiceSpec`]; and metric rule files
//! (`kind: metric`) -> diagnostics -> [`metric::MetricRule`], read by the same reader.
//!
//! Pure: no file system, no clock, no tokio. Templates (`uses:`) are read through the
//! [`Loader`] the caller passes in.
//!
//! Pipeline: `yaml` (text -> located tree) -> `read` (tree -> `RawWorkflow`, shapes and
//! scalar types) -> `check` (meaning: names, graph, matrix, expression references) ->
//! [`plan::Plan`]; `compile` drives it across template files. Every stage reports all the
//! problems it finds and goes on, so one pass gives every diagnostic.

pub mod build;
mod check;
mod compile;
pub mod diag;
pub mod expr;
pub mod git;
pub mod metric;
mod metric_file;
mod params;
pub mod plan;
pub mod pool;
mod raw;
mod read;
pub mod run_env;
pub mod schedule;
pub mod server_job;
pub mod service;
mod service_file;
pub mod units;
mod yaml;

pub use compile::MAX_TEMPLATE_DEPTH;
pub use diag::{Diagnostic, Severity};
pub use params::{bind_params, param_value};

/// Most instances one matrix job may expand to.
pub const MAX_MATRIX_INSTANCES: usize = check::MAX_MATRIX_INSTANCES;
pub use check::{MAX_JOBS, MAX_NAME_CHARS, MAX_SCRIPT_BYTES};

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

/// What a file describes, from its top-level `kind:` ([`file_kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A workflow (`kind: workflow`, or no `kind`): [`compile`] it.
    Workflow,
    /// A long-running service (`kind: service`): [`compile_service`] it.
    Service,
    /// A metric scraping rule (`kind: metric`): [`compile_metric`] it.
    Metric,
}

impl Kind {
    /// The kinds, as written.
    pub const NAMES: &[&str] = &["workflow", "service", "metric"];
}

/// The kind of the file `file_name` holding `text`, read from its top-level `kind:`; no
/// `kind` means a workflow. An unknown `kind` is an error diagnostic at its place. Text that
/// is not YAML, or whose top level is not a mapping, counts as a workflow: compiling it
/// reports what is wrong.
pub fn file_kind(file_name: &str, text: &str) -> Result<Kind, Diagnostic> {
    let (root, _) = yaml::parse(text);
    match root.as_ref().and_then(service_file::declared_kind) {
        None => Ok(Kind::Workflow),
        Some((_, Ok(kind))) => Ok(kind),
        Some((pos, Err(message))) => Err(Diagnostic {
            severity: Severity::Error,
            file: file_name.to_owned(),
            line: pos.line,
            column: pos.column,
            message,
        }),
    }
}

/// The result of [`compile_service`]: a spec when there were no errors, and every
/// diagnostic found.
#[derive(Debug, Clone)]
pub struct CompiledService {
    /// The spec; `None` when any diagnostic is an error.
    pub spec: Option<service::ServiceSpec>,
    /// All problems found in one pass, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

/// Compiles the service file `file_name` (used in diagnostics) holding `text`. A file that
/// is not `kind: service` is an error. Never panics; every problem is a diagnostic.
pub fn compile_service(file_name: &str, text: &str) -> CompiledService {
    service_file::compile(file_name, text)
}

/// The JSON Schema (draft 7) of service files, for editors. `docs/service.schema.json` is
/// this value, pretty-printed.
pub fn service_json_schema() -> serde_json::Value {
    service_file::json_schema()
}

/// The result of [`compile_metric`]: a rule when there were no errors, and every diagnostic
/// found.
#[derive(Debug, Clone)]
pub struct CompiledMetric {
    /// The rule; `None` when any diagnostic is an error.
    pub rule: Option<metric::MetricRule>,
    /// All problems found in one pass, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

/// Compiles the metric rule file `file_name` (used in diagnostics) holding `text`. A file
/// that is not `kind: metric` is an error. Never panics; every problem is a diagnostic.
pub fn compile_metric(file_name: &str, text: &str) -> CompiledMetric {
    metric_file::compile(file_name, text)
}

/// The JSON Schema (draft 7) of metric rule files, for editors. `docs/metric.schema.json` is
/// this value, pretty-printed.
pub fn metric_json_schema() -> serde_json::Value {
    metric_file::json_schema()
}
