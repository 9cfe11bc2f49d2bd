//! Templates: `uses` + `with`, depth and cycles, and where problems are reported.

use kiln_workflow::plan::ParamValue;

use crate::support::{FsLoader, check_files, diagnostics};

#[test]
fn a_template_compiles_on_its_own() {
    let compiled = kiln_workflow::compile("test_data/templates/build-test-deploy.yml", &FsLoader);
    assert_eq!(diagnostics(&compiled), "");
    let Some(plan) = compiled.plan else { panic!("no plan") };
    let service = plan.params.iter().find(|p| p.name == "service");
    assert!(service.is_some_and(|p| p.required && p.default.is_none()));
}

#[test]
fn with_values_become_defaults_and_caller_wins() {
    let compiled = kiln_workflow::compile("test_data/ok/uses.yml", &FsLoader);
    let Some(plan) = compiled.plan else { panic!("{}", diagnostics(&compiled)) };
    assert_eq!(plan.name, "project-a");
    let default =
        |n: &str| plan.params.iter().find(|p| p.name == n).and_then(|p| p.default.clone());
    assert_eq!(default("service"), Some(ParamValue::String("api".into())));
    assert_eq!(default("go_version"), Some(ParamValue::String("1.22".into())));
    assert_eq!(default("replicas"), Some(ParamValue::Number(1.0)));
    assert_eq!(plan.env.get("STAGE").map(String::as_str), Some("caller"));
    assert_eq!(plan.env.get("SERVICE").map(String::as_str), Some("${{ params.service }}"));
    assert_eq!(plan.timeout, Some(std::time::Duration::from_secs(1200)));
}

#[test]
fn nested_templates_bind_at_each_level() {
    let compiled = kiln_workflow::compile("test_data/ok/uses_nested.yml", &FsLoader);
    let Some(plan) = compiled.plan else { panic!("{}", diagnostics(&compiled)) };
    assert_eq!(plan.name, "project-b");
    let default =
        |n: &str| plan.params.iter().find(|p| p.name == n).and_then(|p| p.default.clone());
    assert_eq!(default("service"), Some(ParamValue::String("web".into())));
    assert_eq!(default("replicas"), Some(ParamValue::Number(3.0)));
}

#[test]
fn in_memory_templates_resolve_relative_to_the_caller() {
    let out = check_files(&[
        ("main.yml", "name: m\nuses: lib/t.yml\nwith: { n: 2 }\n"),
        (
            "lib/t.yml",
            "name: t\nparams: { n: { type: number } }\nstages:\n  - name: s\n    jobs: { a: { script: 'echo ${{ params.n }}' } }\n",
        ),
    ]);
    insta::assert_snapshot!(out, @r#"
    lib/t.yml:5:36: warning: `${{ params.n }}` is spliced into the script as text: a value holding `"` or `;` runs as commands; use the variable "$n" instead
    plan m
    param n: Number = 2
    stage 0 s: a
    job a <- [] gate - if success() | script ["echo ${{ params.n }}"]
    "#);
}

#[test]
fn a_file_can_not_use_itself() {
    let out = check_files(&[("main.yml", "name: m\nuses: main.yml\n")]);
    insta::assert_snapshot!(out, @"main.yml:2:7: error: template cycle: main.yml -> main.yml");
}
