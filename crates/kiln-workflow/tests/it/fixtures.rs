//! Fixture folders: every `test_data/ok/*.yml` compiles (snapshot of its plan), every
//! `test_data/err/*.yml` fails (snapshot of all its diagnostics); the same for service files
//! in `test_data/service/{ok,err}` (snapshots in `test_data/service/snapshots`).

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
    settings_in("test_data/snapshots")
}

fn settings_in(dir: &str) -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path(crate_dir().join(dir));
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

/// Diagnostics of a service compile, one per line.
fn service_diagnostics(c: &kiln_workflow::CompiledService) -> String {
    c.diagnostics.iter().map(|d| format!("{d}\n")).collect()
}

fn read(file: &str) -> String {
    std::fs::read_to_string(crate_dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

#[test]
fn ok_service_fixtures_compile() {
    for (stem, file) in fixtures("service/ok") {
        let compiled = kiln_workflow::compile_service(&file, &read(&file));
        let errors: Vec<String> = compiled
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| d.to_string())
            .collect();
        assert!(errors.is_empty(), "{file} should compile:\n{}", errors.join("\n"));
        let Some(spec) = &compiled.spec else { panic!("{file}: no spec") };
        settings_in("test_data/service/snapshots").bind(|| {
            insta::assert_yaml_snapshot!(format!("ok__{stem}"), spec);
            if !compiled.diagnostics.is_empty() {
                insta::assert_snapshot!(
                    format!("ok__{stem}__warnings"),
                    service_diagnostics(&compiled)
                );
            }
        });
    }
}

#[test]
fn err_service_fixtures_fail_with_every_problem() {
    for (stem, file) in fixtures("service/err") {
        let compiled = kiln_workflow::compile_service(&file, &read(&file));
        assert!(compiled.spec.is_none(), "{file} should not compile");
        assert!(
            compiled.diagnostics.iter().any(|d| d.severity == Severity::Error),
            "{file}: no error reported"
        );
        let mut sorted = compiled.diagnostics.clone();
        sorted.sort_by_key(|d| (d.line, d.column));
        assert_eq!(sorted, compiled.diagnostics, "{file}: diagnostics come in file order");
        settings_in("test_data/service/snapshots").bind(|| {
            insta::assert_snapshot!(format!("err__{stem}"), service_diagnostics(&compiled))
        });
    }
}

#[test]
fn ok_metric_fixtures_compile() {
    for (stem, file) in fixtures("metric/ok") {
        let compiled = kiln_workflow::compile_metric(&file, &read(&file));
        let Some(rule) = &compiled.rule else {
            panic!("{file} should compile:\n{:?}", compiled.diagnostics)
        };
        assert!(compiled.diagnostics.is_empty(), "{file}: {:?}", compiled.diagnostics);
        settings_in("test_data/metric/snapshots")
            .bind(|| insta::assert_yaml_snapshot!(format!("ok__{stem}"), rule));
    }
}

#[test]
fn err_metric_fixtures_fail_with_every_problem() {
    for (stem, file) in fixtures("metric/err") {
        let compiled = kiln_workflow::compile_metric(&file, &read(&file));
        assert!(compiled.rule.is_none(), "{file} should not compile");
        let text: String = compiled.diagnostics.iter().map(|d| format!("{d}\n")).collect();
        assert!(text.contains(": error: "), "{file}: no error reported");
        settings_in("test_data/metric/snapshots")
            .bind(|| insta::assert_snapshot!(format!("err__{stem}"), text));
    }
}
