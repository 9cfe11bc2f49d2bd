//! Limits answered as documented: a request body over its cap is 413 on every route that
//! takes one (`too_large` on the JSON API and the webhook endpoint; the registry's manifests
//! and token endpoint in the distribution spec's error shape), never a 400.

use crate::support::TestServer;

/// Sends `body` (JSON) with `method` to `path`; the status and the error code.
async fn send(s: &TestServer, method: reqwest::Method, path: &str, body: Vec<u8>) -> (u16, String) {
    let resp = reqwest::Client::new()
        .request(method, format!("{}{path}", s.url))
        .bearer_auth(&s.admin_token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let json: serde_json::Value = resp.json().await.unwrap_or_default();
    (status, json["error"]["code"].as_str().unwrap_or_default().to_string())
}

/// A JSON object of about `size` bytes: `{"yaml": "xxx…"}`.
fn big_json(size: usize) -> Vec<u8> {
    format!("{{\"yaml\": \"{}\"}}", "x".repeat(size)).into_bytes()
}

#[tokio::test]
async fn bodies_over_the_cap_are_413_too_large_everywhere() {
    let s = TestServer::start_with(0).await;
    s.admin.create_project("lim").await.unwrap();
    let over = 3 << 20; // past the API's 2 MiB
    let cases = [
        (reqwest::Method::PUT, "/api/v1/projects/lim/pipelines/p"),
        (reqwest::Method::POST, "/api/v1/projects/lim/pipelines/p/runs"),
        (reqwest::Method::PUT, "/api/v1/projects/lim/secrets/S"),
        (reqwest::Method::POST, "/api/v1/tokens"),
        (reqwest::Method::POST, "/api/v1/projects"),
    ];
    for (method, path) in cases {
        let got = send(&s, method.clone(), path, big_json(over)).await;
        assert_eq!(got, (413, "too_large".to_string()), "{method} {path}");
    }
    // The webhook endpoint's own cap is 25 MB (GitHub's).
    let got = send(&s, reqwest::Method::POST, "/api/v1/hooks/github", big_json(26 << 20)).await;
    assert_eq!(got, (413, "too_large".to_string()), "POST /api/v1/hooks/github");
    // The registry: a manifest over its 4 MiB cap, a token request over 64 KiB.
    let http = reqwest::Client::new();
    let manifest = http
        .put(format!("{}/v2/lim/app/manifests/v1", s.url))
        .basic_auth("admin", Some(&s.admin_token))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(vec![b' '; 5 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(manifest.status().as_u16(), 413, "PUT /v2/.../manifests/v1");
    let body: serde_json::Value = manifest.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "MANIFEST_INVALID", "{body}");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("at most"), "{body}");
    let token = http
        .post(format!("{}/auth/token", s.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type=password&password={}", "x".repeat(100 << 10)))
        .send()
        .await
        .unwrap();
    assert_eq!(token.status().as_u16(), 413, "POST /auth/token");
    s.stop().await;
}

/// Token and agent names refuse control characters (an `ESC` would rewrite a terminal that
/// lists them) and run to at most 128 characters.
#[tokio::test]
async fn names_refuse_control_characters_and_excess_length() {
    let s = TestServer::start_with(0).await;
    let token = |name: &str| kiln_api::CreateToken {
        name: name.into(),
        role: "viewer".into(),
        project: None,
    };
    for (name, says) in [
        ("ops\u{1b}]0;pwned\u{7}", "control character"),
        ("two\nlines", "control character"),
        (&"n".repeat(129), "at most 128"),
    ] {
        let err = s.admin.create_token(&token(name)).await.unwrap_err();
        assert_eq!(err.code(), Some("bad_request"), "{name:?}: {err}");
        assert!(err.to_string().contains(says), "{name:?}: {err}");
    }
    s.admin.create_token(&token(&"n".repeat(128))).await.unwrap();
    let mut req = kiln_api::agent::RegisterAgent {
        name: "edge\u{1b}[2J".into(),
        executor: "process".into(),
        capacity: 1,
        hostname: "edge".into(),
        ip: "10.0.0.8".into(),
        resources: None,
        ports: None,
        attributes: Default::default(),
        held: vec![],
        protocol: kiln_api::agent::PROTOCOL,
        version: "0.1.0".into(),
        images: None,
    };
    let err = s.admin.register_agent(&req).await.unwrap_err();
    assert!(err.to_string().contains("agent name"), "{err}");
    req.name = "edge".into();
    s.admin.register_agent(&req).await.unwrap();
    s.stop().await;
}
