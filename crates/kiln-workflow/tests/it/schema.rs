//! `docs/workflow.schema.json` is generated from the Rust types that describe the file
//! format; this test fails when the committed file is stale.

use crate::support::crate_dir;

#[test]
fn schema_file_is_fresh() {
    let path = crate_dir().join("../../docs/workflow.schema.json");
    let want = match serde_json::to_string_pretty(&kiln_workflow::json_schema()) {
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
        "docs/workflow.schema.json is stale (or missing). Refresh it with:\n\n    \
         KILN_BLESS=1 cargo test -p kiln-workflow --test it schema\n"
    );
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
