//! `docs/workflow.schema.json`, `docs/service.schema.json` and `docs/metric.schema.json` are
//! generated from the Rust types that describe the file formats; these tests fail when a
//! committed file is stale.

use crate::support::crate_dir;

/// Fails unless `docs/<name>` holds `schema` pretty-printed; with `KILN_BLESS=1`, writes it.
fn assert_fresh(name: &str, schema: &serde_json::Value) {
    let path = crate_dir().join("../../docs").join(name);
    let want = match serde_json::to_string_pretty(schema) {
        Ok(text) => text + "\n",
        Err(e) => panic!("schema does not serialize: {e}"),
    };
    if std::env::var_os("KILN_BLESS").is_some_and(|v| v == "1") {
        if let Err(e) = std::fs::write(&path, &want) {
            panic!("can not write {}: {e}", path.display());
        }
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/{name} is stale (or missing). Refresh it with:\n\n    \
         KILN_BLESS=1 cargo test -p kiln-workflow --test it schema\n"
    );
}

#[test]
fn schema_file_is_fresh() {
    assert_fresh("workflow.schema.json", &kiln_workflow::json_schema());
}

#[test]
fn schema_describes_the_spec() {
    let schema = kiln_workflow::json_schema();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    assert_eq!(schema["additionalProperties"], false);
    let job = &schema["definitions"]["RawJob"]["properties"];
    for key in ["image", "script", "command", "args", "needs", "if", "matrix", "services"] {
        assert!(job.get(key).is_some(), "job key {key} missing from the schema");
    }
}

#[test]
fn service_schema_file_is_fresh() {
    assert_fresh("service.schema.json", &kiln_workflow::service_json_schema());
}

#[test]
fn service_schema_describes_the_spec() {
    let schema = kiln_workflow::service_json_schema();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["properties"]["kind"]["const"], "service");
    assert_eq!(schema["required"], serde_json::json!(["kind", "name"]));
    let health = &schema["definitions"]["RawHealth"]["properties"];
    for key in ["tcp", "http", "command", "grace", "interval", "timeout", "failures"] {
        assert!(health.get(key).is_some(), "health key {key} missing from the schema");
    }
    let workflow = kiln_workflow::json_schema();
    assert_eq!(workflow["properties"]["kind"]["const"], "workflow");
}

#[test]
fn metric_schema_file_is_fresh() {
    assert_fresh("metric.schema.json", &kiln_workflow::metric_json_schema());
}

#[test]
fn metric_schema_describes_the_rule() {
    let schema = kiln_workflow::metric_json_schema();
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["properties"]["kind"]["const"], "metric");
    assert_eq!(schema["required"], serde_json::json!(["kind", "name", "selector", "port"]));
    let formats = schema["properties"]["format"]["enum"].as_array().cloned().unwrap_or_default();
    assert!(formats.contains(&"prometheus".into()) && formats.contains(&"plain".into()));
}
