//! Fixture folders: every `test_data/ok/*.yml` compiles (snapshot of its plan), every
//! `test_data/err/*.yml` fails (snapshot of all its diagnostics).

use std::path::PathBuf;

use kiln_workflow::Severity;

use crate::support::{FsLoader, crate_dir, diagnostics};

/// The `.yml` files of `test_data/<dir>`, sorted, as names relative to the crate.
fn fixtures(dir: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(crate_dir().join("test_data").join(dir))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "yml"))
                .filter_map(|p: PathBuf| {
                    let stem = p.file_stem()?.to_string_lossy().into_owned();
                    let name = p.file_name()?.to_string_lossy().into_owned();
                    Some((stem, format!("test_data/{dir}/{name}")))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    assert!(!out.is_empty(), "no fixtures in test_data/{dir}");
    out
}

fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path(crate_dir().join("test_data/snapshots"));
    s.set_prepend_module_to_snapshot(false);
    s
}

#[test]
fn ok_fixtures_compile() {
    for (stem, file) in fixtures("ok") {
        let compiled = kiln_workflow::compile(&file, &FsLoader);
        let errors: Vec<String> = compiled
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| d.to_string())
            .collect();
        assert!(errors.is_empty(), "{file} should compile:\n{}", errors.join("\n"));
        let Some(plan) = compiled.plan else { panic!("{file}: no plan") };
        settings().bind(|| {
            insta::assert_yaml_snapshot!(format!("ok__{stem}"), plan);
            if !compiled.diagnostics.is_empty() {
                insta::assert_snapshot!(
                    format!("ok__{stem}__warnings"),
                    diagnostics(&kiln_workflow::Compiled { plan: None, ..compiled })
                );
            }
        });
    }
}

#[test]
fn err_fixtures_fail_with_every_problem() {
    for (stem, file) in fixtures("err") {
        let compiled = kiln_workflow::compile(&file, &FsLoader);
        assert!(compiled.plan.is_none(), "{file} should not compile");
        assert!(
            compiled.diagnostics.iter().any(|d| d.severity == Severity::Error),
            "{file}: no error reported"
        );
        settings().bind(|| insta::assert_snapshot!(format!("err__{stem}"), diagnostics(&compiled)));
    }
}

#[test]
fn several_problems_in_one_file_are_all_reported() {
    let compiled = kiln_workflow::compile("test_data/err/many_problems.yml", &FsLoader);
    let errors = compiled.diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
    assert!(errors >= 8, "expected every problem, got:\n{}", diagnostics(&compiled));
    let mut sorted = compiled.diagnostics.clone();
    sorted.sort_by_key(|d| (d.line, d.column));
    assert_eq!(sorted, compiled.diagnostics, "diagnostics come in file order");
}
