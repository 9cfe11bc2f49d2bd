//! Compiling stored workflows: the entry YAML plus the template files it was applied with.

use std::collections::BTreeMap;
use std::path::Path;

use kiln_api::{Diagnostic, ParamInfo};
use kiln_workflow::plan::{ParamKind, Plan};
use kiln_workflow::{Compiled, Loader, Source};

/// Serves the entry file and its templates from memory, resolving `uses:` paths the way the
/// CLI's file loader does (relative to the directory of the file that names them), so names
/// recorded by the CLI match.
pub struct MapLoader<'a> {
    /// Entry file name.
    pub entry: &'a str,
    /// Entry text.
    pub yaml: &'a str,
    /// Template files by resolved name.
    pub files: &'a BTreeMap<String, String>,
}

impl Loader for MapLoader<'_> {
    fn load(&self, from: &str, path: &str) -> Result<Source, String> {
        if from.is_empty() && path == self.entry {
            return Ok(Source { name: self.entry.to_string(), text: self.yaml.to_string() });
        }
        let full = match Path::new(from).parent() {
            Some(dir) if !from.is_empty() => dir.join(path),
            _ => Path::new(path).to_path_buf(),
        };
        let name = full.display().to_string();
        match self.files.get(&name) {
            Some(text) => Ok(Source { name, text: text.clone() }),
            None => Err(format!(
                "template `{name}` was not sent with the pipeline (apply it with `kiln pipeline apply`, which sends the files `uses:` names)"
            )),
        }
    }
}

/// Compiles a stored workflow.
pub fn compile(entry: &str, yaml: &str, files: &BTreeMap<String, String>) -> Compiled {
    kiln_workflow::compile(entry, &MapLoader { entry, yaml, files })
}

/// The API form of a diagnostic.
pub fn diagnostic(d: &kiln_workflow::Diagnostic) -> Diagnostic {
    Diagnostic {
        severity: match d.severity {
            kiln_workflow::Severity::Error => "error",
            kiln_workflow::Severity::Warning => "warning",
        }
        .to_string(),
        file: d.file.clone(),
        line: d.line,
        column: d.column,
        message: d.message.clone(),
    }
}

/// The 422 of a file that does not compile: `code`, every diagnostic, and a message naming
/// `what` (`the workflow`, `the service file`), how many errors it has and the first.
pub fn refused(
    code: &'static str,
    what: &str,
    diagnostics: &[kiln_workflow::Diagnostic],
) -> crate::error::ApiErr {
    let diagnostics: Vec<Diagnostic> = diagnostics.iter().map(diagnostic).collect();
    let errors = diagnostics.iter().filter(|d| d.severity == "error");
    let count = errors.clone().count();
    let first = errors.map(ToString::to_string).next().unwrap_or_default();
    let mut e = crate::error::ApiErr::new(
        axum::http::StatusCode::UNPROCESSABLE_ENTITY,
        code,
        format!("{what} has {count} error(s); the first: {first}"),
    );
    e.diagnostics = diagnostics;
    e
}

/// The API form of a plan's parameters.
pub fn params(plan: &Plan) -> Vec<ParamInfo> {
    plan.params
        .iter()
        .map(|p| {
            let (kind, choices) = match &p.kind {
                ParamKind::String => ("string", Vec::new()),
                ParamKind::Number => ("number", Vec::new()),
                ParamKind::Bool => ("bool", Vec::new()),
                ParamKind::Choice(c) => ("choice", c.clone()),
            };
            ParamInfo {
                name: p.name.clone(),
                kind: kind.to_string(),
                choices,
                default: p.default.as_ref().map(|v| v.to_string()),
                required: p.required,
                description: p.description.clone(),
            }
        })
        .collect()
}
