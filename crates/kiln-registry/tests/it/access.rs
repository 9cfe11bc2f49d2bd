//! Least privilege and no information to strangers in the registry (issue 20, points 3 and
//! 8): an agent token pulls nothing and lists nothing, a revoked token and every registry
//! token minted from it are refused at once, and another project's repository is answered
//! as a missing one.

use kiln_client::Client;
use kiln_store::{NewToken, Role};
use reqwest::Method;

use crate::support::{Reg, basic, text};

/// A registry token for `scope`, asked for with `secret` as the password.
async fn bearer(reg: &Reg, secret: &str, scope: &str) -> String {
    let resp = reg
        .req(Method::GET, &format!("/auth/token?service=kiln&scope={scope}"), Some(secret))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    v["token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn an_agent_token_pulls_nothing_and_lists_nothing() {
    let reg = Reg::start().await;
    reg.push_image("team/app", "v1", &reg.admin, &[b"private layer"]).await;
    let agent = reg.token("runner", Role::Agent, None).await;

    let resp =
        reg.req(Method::GET, "/v2/team/app/manifests/v1", Some(&agent)).send().await.unwrap();
    assert!(matches!(resp.status().as_u16(), 401 | 403 | 404), "{}", resp.status());
    let resp = reg.req(Method::GET, "/v2/_catalog", Some(&agent)).send().await.unwrap();
    let status = resp.status().as_u16();
    let body = text(resp).await;
    assert!(!body.contains("team/app"), "{status}: {body}");
    // The token endpoint grants it nothing either.
    let resp = reg
        .req(
            Method::GET,
            "/auth/token?service=kiln&scope=repository:team/app:pull%20registry:catalog:*",
            Some(&agent),
        )
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = text(resp).await;
    assert!(!body.contains("\"pull\"") && !body.contains("catalog"), "{status}: {body}");
    if status == 200 {
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let resp = reg
            .http
            .get(format!("{}/v2/team/app/manifests/v1", reg.url))
            .bearer_auth(v["token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
    }
}

#[tokio::test]
async fn a_revoked_token_and_registry_tokens_minted_from_it_are_refused_at_once() {
    let reg = Reg::start().await;
    reg.push_image("team/app", "v1", &reg.admin, &[b"layer"]).await;
    let (token, secret) = reg
        .app()
        .store
        .create_token(&NewToken { name: "ci".into(), role: Role::Developer, project: None })
        .await
        .unwrap();
    let secret = secret.expose().to_string();
    let pull = |auth: String| {
        reg.http.get(format!("{}/v2/team/app/manifests/v1", reg.url)).header("Authorization", auth)
    };
    // Used once, so the token is in every cache.
    assert_eq!(pull(basic(&secret)).send().await.unwrap().status(), 200);
    let minted = bearer(&reg, &secret, "repository:team/app:pull").await;
    assert_eq!(pull(format!("Bearer {minted}")).send().await.unwrap().status(), 200);

    Client::new(&reg.url, &reg.admin).unwrap().revoke_token(&token.id.to_string()).await.unwrap();
    assert_eq!(pull(basic(&secret)).send().await.unwrap().status(), 401);
    assert_eq!(pull(format!("Bearer {minted}")).send().await.unwrap().status(), 401);
    let resp = reg
        .req(Method::GET, "/auth/token?service=kiln&scope=repository:team/app:pull", Some(&secret))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn another_project_s_repository_is_answered_as_a_missing_one() {
    let reg = Reg::start().await;
    reg.push_image("other/tool", "v1", &reg.admin, &[b"theirs"]).await;
    let mine = reg.token("mine", Role::Developer, Some("team")).await;
    for (method, path) in [
        (Method::GET, "/v2/{}/manifests/v1"),
        (Method::GET, "/v2/{}/tags/list"),
        (Method::POST, "/v2/{}/blobs/uploads/"),
    ] {
        let theirs = reg.req(method.clone(), &path.replace("{}", "other/tool"), Some(&mine));
        let theirs = theirs.send().await.unwrap();
        let missing = reg.req(method.clone(), &path.replace("{}", "nowhere/tool"), Some(&mine));
        let missing = missing.send().await.unwrap();
        assert_eq!((theirs.status(), missing.status()), (missing.status(), theirs.status()));
        assert_eq!(theirs.status(), 404, "{method} {path}");
        let (a, b) = (text(theirs).await, text(missing).await);
        assert_eq!(a.replace("other", "X"), b.replace("nowhere", "X"), "{method} {path}");
    }
    let viewer = Client::new(&reg.url, &mine).unwrap();
    let theirs = viewer.registry_tags("other/tool").await.unwrap_err();
    let missing = viewer.registry_tags("nowhere/tool").await.unwrap_err();
    assert!(matches!(theirs, kiln_client::ClientError::Api { status: 404, .. }), "{theirs}");
    assert_eq!(
        theirs.to_string().replace("other", "X"),
        missing.to_string().replace("nowhere", "X")
    );
}
