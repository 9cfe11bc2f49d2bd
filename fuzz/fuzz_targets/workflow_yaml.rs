//! Fuzzes the workflow reader: `compile` of a workflow file (and a template it may `uses:`),
//! `file_kind`, `compile_service` and `compile_metric` on the same text. None may panic, and
//! a compile without an error diagnostic must give a plan (and one with an error none).
//!
//! Input: the entry file's text; after a line `%%%`, the text every other file read resolves to.

#![no_main]

use kiln_workflow::{Loader, Severity, Source};
use libfuzzer_sys::fuzz_target;

/// The entry file, and the text of any template it names.
struct Files<'a> {
    entry: &'a str,
    template: Option<&'a str>,
}

impl Loader for Files<'_> {
    fn load(&self, from: &str, path: &str) -> Result<Source, String> {
        let text = if from.is_empty() { Some(self.entry) } else { self.template };
        let text = text.ok_or_else(|| format!("{path}: no such file"))?;
        Ok(Source { name: path.to_string(), text: text.to_string() })
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (entry, template) = match text.split_once("\n%%%\n") {
        Some((entry, template)) => (entry, Some(template)),
        None => (text, None),
    };
    let compiled = kiln_workflow::compile("kiln.yml", &Files { entry, template });
    let errors = compiled.diagnostics.iter().any(|d| d.severity == Severity::Error);
    assert_eq!(compiled.plan.is_some(), !errors, "a plan exactly when there is no error");
    let _ = kiln_workflow::file_kind("kiln.yml", entry);
    let _ = kiln_workflow::compile_service("service.yml", entry);
    let _ = kiln_workflow::compile_metric("metric.yml", entry);
});
