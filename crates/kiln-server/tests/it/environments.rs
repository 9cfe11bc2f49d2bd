//! Environments through the API: their order and protected flag, variables with secrets
//! sealed like project secrets (`***` in every answer, never plaintext in the database), what
//! an environment's jobs are to get, and who may change what.

use kiln_api::CreateToken;
use kiln_api::environments::{CreateEnvironment, SetVariable, UpdateEnvironment};
use kiln_client::Client;

use crate::support::{Backend, TestServer};

fn env(name: &str, after: Option<&str>, protected: bool) -> CreateEnvironment {
    CreateEnvironment { name: name.into(), after: after.map(str::to_string), protected }
}

fn var(value: &str, secret: bool) -> SetVariable {
    SetVariable { value: value.into(), secret }
}

/// A client with a new token of `role` named `name`.
pub async fn user(s: &TestServer, name: &str, role: &str) -> Client {
    let t = s
        .admin
        .create_token(&CreateToken { name: name.into(), role: role.into(), project: None })
        .await
        .unwrap();
    Client::new(&s.url, &t.secret).unwrap()
}

#[tokio::test]
async fn environments_keep_their_order_and_variables_with_secrets_masked() {
    environments_keep_their_order_and_variables_with_secrets_masked_on(Backend::Sqlite).await;
}

/// The test above on `backend` (`postgres.rs` runs it on PostgreSQL).
pub async fn environments_keep_their_order_and_variables_with_secrets_masked_on(backend: Backend) {
    let s = TestServer::start_on_with(backend, 0).await;
    let a = &s.admin;
    a.create_project("shop").await.unwrap();
    a.create_environment("shop", &env("dev", None, false)).await.unwrap();
    a.create_environment("shop", &env("prod", None, true)).await.unwrap();
    a.create_environment("shop", &env("staging", Some("dev"), false)).await.unwrap();
    let prod = a
        .update_environment(
            "shop",
            "prod",
            &UpdateEnvironment { after: Some("staging".into()), protected: None },
        )
        .await
        .unwrap();
    assert!(prod.protected);
    let order: Vec<(String, Option<String>)> =
        a.environments("shop").await.unwrap().into_iter().map(|e| (e.name, e.after)).collect();
    assert_eq!(
        order,
        [
            ("dev".to_string(), None),
            ("staging".to_string(), Some("dev".to_string())),
            ("prod".to_string(), Some("staging".to_string()))
        ]
    );
    let e = a.create_environment("shop", &env("qa", Some("nope"), false)).await.unwrap_err();
    assert_eq!(e.code(), Some("bad_request"), "{e}");
    assert!(e.to_string().contains("no environment `nope`"), "{e}");
    let e = a
        .update_environment(
            "shop",
            "dev",
            &UpdateEnvironment { after: Some("prod".into()), protected: None },
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("`prod` already comes after `dev`"), "{e}");

    a.set_env_variable("shop", "prod", "LOG_LEVEL", &var("warn", false)).await.unwrap();
    let secret =
        a.set_env_variable("shop", "prod", "DB_PASSWORD", &var("pr0d-s3cret", true)).await.unwrap();
    assert_eq!((secret.value.as_str(), secret.secret), ("***", true));
    a.set_env_variable("shop", "staging", "DB_PASSWORD", &var("st4ging-s3cret", true))
        .await
        .unwrap();
    let shown = a.environment("shop", "prod").await.unwrap();
    let vars: Vec<(&str, &str, bool)> =
        shown.variables.iter().map(|v| (v.name.as_str(), v.value.as_str(), v.secret)).collect();
    assert_eq!(vars, [("DB_PASSWORD", "***", true), ("LOG_LEVEL", "warn", false)]);
    let listed = serde_json::to_string(&a.environments("shop").await.unwrap()).unwrap();
    assert!(!listed.contains("s3cret"), "{listed}");
    assert!(!s.database_contains(b"pr0d-s3cret").await, "a secret is stored sealed");

    // What the environment's jobs and instances are to get: opened, and listed for masking.
    let app = &s.server.as_ref().unwrap().app;
    let got = app.environments.variables("shop", "prod").await.unwrap();
    assert_eq!(got.env.get("DB_PASSWORD").map(String::as_str), Some("pr0d-s3cret"));
    assert_eq!(got.env.get("LOG_LEVEL").map(String::as_str), Some("warn"));
    assert_eq!(got.masked, ["pr0d-s3cret"]);
    assert!(!format!("{got:?}").contains("s3cret"), "a debug print shows no value");
    let staging = app.environments.variables("shop", "staging").await.unwrap();
    assert_eq!(staging.masked, ["st4ging-s3cret"], "each environment has its own secrets");

    let e = a.delete_environment("shop", "staging").await.unwrap_err();
    assert_eq!(e.code(), Some("conflict"), "{e}");
    assert!(e.to_string().contains("`prod` comes after `staging`"), "{e}");
    a.unset_env_variable("shop", "prod", "LOG_LEVEL").await.unwrap();
    let e = a.unset_env_variable("shop", "prod", "LOG_LEVEL").await.unwrap_err();
    assert_eq!(e.code(), Some("not_found"), "{e}");
    s.stop().await;
}

#[tokio::test]
async fn developers_set_variables_admins_set_secrets_and_environments() {
    let s = TestServer::start_with(0).await;
    s.admin.create_project("shop").await.unwrap();
    s.admin.create_environment("shop", &env("prod", None, true)).await.unwrap();
    let dev = user(&s, "dana", "developer").await;
    let viewer = user(&s, "vic", "viewer").await;
    dev.set_env_variable("shop", "prod", "REGION", &var("eu", false)).await.unwrap();
    let e = dev.set_env_variable("shop", "prod", "TOKEN", &var("t0k3n", true)).await.unwrap_err();
    assert_eq!(e.code(), Some("forbidden"), "{e}");
    let e = dev.create_environment("shop", &env("qa", None, false)).await.unwrap_err();
    assert_eq!(e.code(), Some("forbidden"), "{e}");
    let e = dev
        .update_environment(
            "shop",
            "prod",
            &UpdateEnvironment { after: None, protected: Some(false) },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("forbidden"), "a developer cannot lift the protection: {e}");
    s.admin.set_env_variable("shop", "prod", "TOKEN", &var("t0k3n", true)).await.unwrap();
    let e = dev.unset_env_variable("shop", "prod", "TOKEN").await.unwrap_err();
    assert_eq!(e.code(), Some("forbidden"), "{e}");
    let e = viewer.set_env_variable("shop", "prod", "REGION", &var("us", false)).await.unwrap_err();
    assert_eq!(e.code(), Some("forbidden"), "{e}");
    let shown = viewer.environment("shop", "prod").await.unwrap();
    assert!(shown.variables.iter().any(|v| v.name == "TOKEN" && v.value == "***"));
    let e =
        s.admin.set_env_variable("shop", "prod", "bad-name", &var("x", false)).await.unwrap_err();
    assert_eq!(e.code(), Some("bad_request"), "{e}");
    s.stop().await;
}
