//! Reading workflow files from disk, compiling them and printing diagnostics.

use std::path::Path;
use std::process::ExitCode;

use kiln_workflow::{Compiled, Diagnostic, Loader, Severity, Source};

use crate::{EXIT_INVALID, Format};

/// Reads workflow and template files from the file system.
pub struct FsLoader;

impl Loader for FsLoader {
    fn load(&self, from: &str, path: &str) -> Result<Source, String> {
        let full = match Path::new(from).parent() {
            Some(dir) if !from.is_empty() => dir.join(path),
            _ => Path::new(path).to_path_buf(),
        };
        let name = full.display().to_string();
        match std::fs::read_to_string(&full) {
            Ok(text) => Ok(Source { name, text }),
            Err(e) => Err(format!("cannot read {name}: {e}")),
        }
    }
}

/// Compiles `file` (templates resolved relative to it).
pub fn compile(file: &str) -> Compiled {
    kiln_workflow::compile(file, &FsLoader)
}

/// Prints diagnostics to stderr, one per line, and a count.
pub fn print_diagnostics(diagnostics: &[Diagnostic]) {
    let red = console::Style::new().red().bold();
    let yellow = console::Style::new().yellow().bold();
    for d in diagnostics {
        let text = d.to_string();
        let styled = match d.severity {
            Severity::Error => red.apply_to(text),
            Severity::Warning => yellow.apply_to(text),
        };
        eprintln!("{styled}");
    }
    let errors = diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
    if errors > 0 {
        eprintln!("{errors} error{} found", if errors == 1 { "" } else { "s" });
    }
}

/// `kiln validate FILE`.
pub fn validate(file: &str, format: Format) -> ExitCode {
    let compiled = compile(file);
    match format {
        Format::Json => {
            let list: Vec<_> = compiled
                .diagnostics
                .iter()
                .map(|d| {
                    serde_json::json!({
                        "severity": match d.severity { Severity::Error => "error", Severity::Warning => "warning" },
                        "file": d.file,
                        "line": d.line,
                        "column": d.column,
                        "message": d.message,
                    })
                })
                .collect();
            let doc = serde_json::json!({ "valid": compiled.plan.is_some(), "diagnostics": list });
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
        Format::Table | Format::Csv => {
            print_diagnostics(&compiled.diagnostics);
            if let Some(plan) = &compiled.plan {
                let jobs = plan.jobs.len();
                println!(
                    "{file}: ok ({} stage{}, {jobs} job{})",
                    plan.stages.len(),
                    if plan.stages.len() == 1 { "" } else { "s" },
                    if jobs == 1 { "" } else { "s" }
                );
            }
        }
    }
    if compiled.plan.is_some() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_INVALID) }
}
