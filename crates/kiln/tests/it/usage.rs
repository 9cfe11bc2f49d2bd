//! `kiln usage` against a real `kiln server`: the table, `-o json` and `-o csv` of a run with
//! a known reservation, and clear errors for a bad window or grouping.

use crate::server::Server;

const SLEEP: &str = "\
name: build
stages:
  - name: build
    jobs:
      compile:
        resources: { cpu: 500m, memory: 256Mi }
        script: [\"sleep 1\"]
";

#[test]
fn usage_prints_a_table_json_and_csv_and_refuses_bad_input() {
    let s = Server::start_with("process", &["--agent-attribute", "group=ci"]);
    s.pipeline("build", SLEEP);
    s.ok(&["trigger", "default/build", "--follow"], 0);

    let (json, _) = s.ok(
        &["usage", "--project", "default", "--since", "1d", "--by", "node-group", "-o", "json"],
        0,
    );
    let doc: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    let attempt = &doc["attempts"][0];
    assert_eq!(doc["attempts"].as_array().unwrap().len(), 1, "{doc:#}");
    assert_eq!(
        (attempt["cpu_millis"].as_u64(), attempt["memory_bytes"].as_u64()),
        (Some(500), Some(256 << 20))
    );
    assert_eq!(attempt["node_group"], "ci");
    let seconds = attempt["seconds"].as_u64().unwrap();
    assert!((1..30).contains(&seconds), "{doc:#}");
    assert_eq!(doc["groups"][0]["key"], "ci");
    assert_eq!(doc["total"]["cpu_core_seconds"].as_f64(), Some(0.5 * seconds as f64));
    assert_eq!(doc["total"]["memory_gib_seconds"].as_f64(), Some(0.25 * seconds as f64));

    let (table, _) =
        s.ok(&["usage", "--project", "default", "--since", "1d", "--by", "pipeline"], 0);
    assert!(table.contains("usage of project default from"), "{table}");
    let row = table.lines().find(|l| l.contains(" build ")).unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains(&format!("{:.3}", 0.5 * seconds as f64)), "{table}");
    assert!(table.lines().any(|l| l.contains("total")), "{table}");

    let (csv, _) = s.ok(&["usage", "--project", "default", "--since", "1d", "-o", "csv"], 0);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "day,attempts,seconds,cpu_core_seconds,memory_gib_seconds,disk_gib_seconds"
    );
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(
        lines[1].ends_with(&format!(
            ",1,{seconds},{},{},0",
            0.5 * seconds as f64,
            0.25 * seconds as f64
        )),
        "{csv}"
    );

    let (_, err) = s.ok(&["usage", "--project", "default", "--since", "garbage"], 2);
    assert!(err.contains("--since: `garbage` is not a time") && err.contains("7d"), "{err}");
    let (_, err) = s.ok(&["usage", "--project", "default", "--by", "nope"], 2);
    assert!(err.contains("`nope` is not a usage grouping") && err.contains("node-group"), "{err}");
    let (_, err) = s.ok(&["usage", "--project", "nope"], 2);
    assert!(err.contains("nope"), "{err}");
}
