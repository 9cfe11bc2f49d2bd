//! Diffs between two renders: the unified text a person reads (insta snapshots), and which
//! files are added, removed or changed.

use kiln_config::{Change, Files, Limits, Meta, diff, render, unified};
use serde_json::{Value, json};

fn templates() -> Files {
    [
        ("app.yaml", "name: {{ kiln.app }}\nenv: {{ kiln.environment }}\nport: {{ port }}\ndb:\n  host: {{ db.host }}\n  pool: {{ db.pool }}\nlog: info\n"),
        ("features.env", "{% for f in features %}FEATURE_{{ f | upper }}=1\n{% endfor %}"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn shared() -> Value {
    json!({"port": 8080, "db": {"host": "db.local", "pool": 5}, "features": ["search"]})
}

fn rendered(env: &str, over: Value) -> Files {
    let values = kiln_config::merge(&shared(), &over);
    let meta = Meta { project: "shop", app: "api", environment: env };
    render(&templates(), &values, &meta, &Limits::default()).unwrap().files
}

#[test]
fn two_environments_differ_only_where_their_values_do() {
    let staging = rendered("staging", json!({"db": {"host": "db.staging"}}));
    let prod = rendered(
        "prod",
        json!({"db": {"host": "db.prod", "pool": 20}, "features": ["search", "checkout"]}),
    );
    let diffs = diff(&staging, &prod, "staging", "prod");
    let changes: Vec<(&str, Change)> = diffs.iter().map(|d| (d.file.as_str(), d.change)).collect();
    assert_eq!(changes, [("app.yaml", Change::Changed), ("features.env", Change::Changed)]);
    insta::assert_snapshot!(unified(&diffs));
}

#[test]
fn added_and_removed_files_are_diffed_against_dev_null() {
    let old: Files =
        [("gone.conf".to_string(), "a = 1\n".to_string()), ("same".into(), "x\n".into())].into();
    let new: Files =
        [("new.conf".to_string(), "b = 2\n".to_string()), ("same".into(), "x\n".into())].into();
    let diffs = diff(&old, &new, "release-1", "release-2");
    let changes: Vec<(&str, Change)> = diffs.iter().map(|d| (d.file.as_str(), d.change)).collect();
    assert_eq!(changes, [("gone.conf", Change::Removed), ("new.conf", Change::Added)]);
    insta::assert_snapshot!(unified(&diffs));
}

#[test]
fn equal_renders_have_no_diff_and_one_line_changes_a_small_hunk() {
    let a = rendered("prod", json!({}));
    assert!(diff(&a, &a.clone(), "a", "b").is_empty());
    let mut long = a.clone();
    let body: String = (1..=30).map(|i| format!("line {i}\n")).collect();
    long.insert("long.txt".into(), body.clone());
    let mut changed = long.clone();
    changed.insert("long.txt".into(), body.replace("line 15\n", "line fifteen\n"));
    let diffs = diff(&long, &changed, "release-4", "draft");
    assert_eq!(diffs.len(), 1);
    insta::assert_snapshot!(diffs[0].unified);
}

#[test]
fn a_missing_trailing_newline_is_shown() {
    let old: Files = [("a".to_string(), "x = 1\n".to_string())].into();
    let new: Files = [("a".to_string(), "x = 1".to_string())].into();
    insta::assert_snapshot!(unified(&diff(&old, &new, "old", "new")));
}

#[test]
fn render_problems_read_as_file_line_column_messages() {
    let templates: Files = [
        ("app.yaml", "port: {{ port }}\nhost: {{ db.host }}\n"),
        ("broken.conf", "a = 1\nb = {% if x %}\n"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let meta = Meta { project: "shop", app: "api", environment: "prod" };
    let syntax = kiln_config::check_template("broken.conf", &templates["broken.conf"]).unwrap_err();
    let one: Files = [("app.yaml".to_string(), templates["app.yaml"].clone())].into();
    let undefined =
        render(&one, &json!({"port": 1, "db": {}}), &meta, &Limits::default()).unwrap_err();
    let lines: Vec<String> = std::iter::once(syntax.to_string())
        .chain(undefined.iter().map(|p| p.to_string()))
        .collect();
    insta::assert_snapshot!(lines.join("\n"));
}
