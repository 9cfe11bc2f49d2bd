//! `docs/openapi.json` is the server's OpenAPI document, committed so that every change of
//! the API shows in review; this test fails when the committed file is stale.

use std::path::PathBuf;

#[test]
fn openapi_file_is_fresh() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    let want = match serde_json::to_string_pretty(&kiln_server::routes::openapi()) {
        Ok(text) => text + "\n",
        Err(e) => panic!("the OpenAPI document does not serialize: {e}"),
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
        "docs/openapi.json is stale (or missing). Refresh it with:\n\n    \
         KILN_BLESS=1 cargo test -p kiln-server --test it openapi\n"
    );
}

#[test]
fn openapi_file_describes_the_agent_protocol() {
    let doc: serde_json::Value = serde_json::to_value(kiln_server::routes::openapi()).unwrap();
    for path in ["/api/v1/agents", "/api/v1/agents/{agent}/lease", "/api/v1/agents/{agent}/events"]
    {
        assert!(doc["paths"].get(path).is_some(), "{path} missing from the OpenAPI document");
    }
    let register = &doc["components"]["schemas"]["RegisterAgent"]["properties"];
    assert!(register.get("protocol").is_some(), "RegisterAgent has no protocol: {register}");
}

#[test]
fn run_and_job_states_are_one_enum_each_with_the_engines_names() {
    let doc: serde_json::Value = serde_json::to_value(kiln_server::routes::openapi()).unwrap();
    let schemas = &doc["components"]["schemas"];
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["enum"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
    };
    let runs: Vec<String> = kiln_engine::RunState::ALL.iter().map(|s| s.to_string()).collect();
    let jobs: Vec<String> = kiln_engine::JobState::ALL.iter().map(|s| s.to_string()).collect();
    assert_eq!(names(&schemas["RunSummary"]["properties"]["state"]), runs);
    assert_eq!(names(&schemas["JobInfo"]["properties"]["state"]), jobs);
}
