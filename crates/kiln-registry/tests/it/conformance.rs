//! The distribution spec's finer points: references that name nothing, the challenge of a
//! cross-repository mount, insufficient-scope tokens, and sha512 digests end to end.

use std::time::Duration;

use base64::Engine as _;
use kiln_store::Role;
use reqwest::{Method, RequestBuilder};
use sha2::{Digest as _, Sha512};

use crate::support::{Reg, code, digest, text};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn sha512(data: &[u8]) -> String {
    format!("sha512:{}", hex::encode(Sha512::digest(data)))
}

/// A request with a registry (bearer) token.
fn bearer(reg: &Reg, method: Method, path: &str, token: &str) -> RequestBuilder {
    reg.http.request(method, format!("{}{path}", reg.url)).bearer_auth(token)
}

/// The `access` claim of a registry token.
fn access(token: &str) -> serde_json::Value {
    let part = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap(),
    )
    .unwrap();
    claims["access"].clone()
}

/// A registry token for `scopes` (each one `scope=` parameter), asked with Kiln token `kiln`.
async fn registry_token(reg: &Reg, kiln: &str, scopes: &[&str]) -> String {
    let mut path = "/auth/token?service=kiln".to_string();
    for s in scopes {
        path.push_str(&format!("&scope={}", s.replace(' ', "%20")));
    }
    let resp = reg.req(Method::GET, &path, Some(kiln)).send().await.unwrap();
    assert_eq!(resp.status(), 200, "token: {}", text(resp).await);
    let body: serde_json::Value = resp.json().await.unwrap();
    body["token"].as_str().unwrap().to_string()
}

/// The `scope` parameter of a challenge.
fn challenge_scope(challenge: &str) -> String {
    let start = challenge.find("scope=\"").unwrap() + "scope=\"".len();
    let len = challenge[start..].find('"').unwrap();
    challenge[start..start + len].to_string()
}

/// A 401 whose challenge asks for `scope` with `error="insufficient_scope"`.
fn assert_insufficient_scope(resp: &reqwest::Response, realm: &str, scope: &str) {
    assert_eq!(resp.status(), 401);
    assert_eq!(
        www_authenticate(resp),
        format!("{realm},scope=\"{scope}\",error=\"insufficient_scope\"")
    );
}

fn www_authenticate(resp: &reqwest::Response) -> String {
    resp.headers()["www-authenticate"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn a_reference_neither_tag_nor_digest_is_manifest_unknown_but_a_bad_push_is_400() {
    let reg = Reg::start().await;
    let admin = reg.admin.clone();
    reg.push_image("team/app", "v1", &admin, &[b"layer"]).await;
    let too_long = "a".repeat(129);
    let bad = [
        ".hidden",
        "-dash",
        too_long.as_str(),
        "sha256:xyz",
        "sha256:ABCDEF",
        "sha512:00",
        "blake3:abcd",
        "v1:extra",
    ];
    for reference in bad {
        let path = format!("/v2/team/app/manifests/{reference}");
        for method in [Method::GET, Method::DELETE] {
            let resp = reg.req(method.clone(), &path, Some(&admin)).send().await.unwrap();
            assert_eq!(resp.status(), 404, "{method} {reference}");
            assert_eq!(resp.headers()["docker-distribution-api-version"], "registry/2.0");
            assert_eq!(code(resp).await, "MANIFEST_UNKNOWN", "{method} {reference}");
        }
        let resp = reg.req(Method::HEAD, &path, Some(&admin)).send().await.unwrap();
        assert_eq!(resp.status(), 404, "HEAD {reference}");
    }
    // A valid tag that is not there is the same answer; the tag pushed is still there.
    let resp =
        reg.req(Method::GET, "/v2/team/app/manifests/v2", Some(&admin)).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(code(resp).await, "MANIFEST_UNKNOWN");
    let resp =
        reg.req(Method::HEAD, "/v2/team/app/manifests/v1", Some(&admin)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    // The name is checked before the reference.
    let resp =
        reg.req(Method::GET, "/v2/Team/app/manifests/.hidden", Some(&admin)).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(code(resp).await, "NAME_INVALID");

    // Pushing to a reference that is not a tag or digest is a client error, 400.
    let config = reg.push_blob("team/app", &admin, b"{}").await;
    let m = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
        "layers": [],
    });
    let put = |reference: String| {
        reg.req(Method::PUT, &format!("/v2/team/app/manifests/{reference}"), Some(&admin))
            .header("Content-Type", OCI_MANIFEST)
            .body(serde_json::to_vec(&m).unwrap())
            .send()
    };
    for (reference, expected) in [
        (".hidden", "MANIFEST_INVALID"),
        (too_long.as_str(), "MANIFEST_INVALID"),
        ("sha256:xyz", "DIGEST_INVALID"),
        ("blake3:abcd", "DIGEST_INVALID"),
    ] {
        let resp = put(reference.to_string()).await.unwrap();
        assert_eq!(resp.status(), 400, "PUT {reference}");
        assert_eq!(code(resp).await, expected, "PUT {reference}");
    }
    let body: serde_json::Value = reg
        .req(Method::GET, "/v2/team/app/tags/list", Some(&admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["tags"], serde_json::json!(["v1"]), "a refused push stores no tag");
}

#[tokio::test]
async fn a_mount_challenge_names_the_source_pull_scope_and_its_token_mounts() {
    let reg = Reg::start().await;
    let admin = reg.admin.clone();
    let layer = vec![5u8; 2048];
    reg.push_image("team/a", "v1", &admin, &[&layer]).await;
    let d = digest(&layer);
    let dev = reg.token("dev", Role::Developer, Some("team")).await;

    // No credentials: the challenge names both repositories in one scope parameter.
    let mount = format!("/v2/team/b/blobs/uploads/?mount={d}&from=team/a");
    let resp = reg.req(Method::POST, &mount, None).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let challenge = www_authenticate(&resp);
    assert_eq!(
        challenge,
        format!(
            "Bearer realm=\"http://{}/auth/token\",service=\"kiln\",\
             scope=\"repository:team/b:pull,push repository:team/a:pull\"",
            reg.host
        )
    );
    assert_eq!(code(resp).await, "UNAUTHORIZED");

    // Following the challenge gives a token with both scopes, which mounts.
    let token = registry_token(&reg, &dev, &[&challenge_scope(&challenge)]).await;
    assert_eq!(
        access(&token),
        serde_json::json!([
            {"type": "repository", "name": "team/b", "actions": ["pull", "push"]},
            {"type": "repository", "name": "team/a", "actions": ["pull"]},
        ])
    );
    let resp = bearer(&reg, Method::POST, &mount, &token).send().await.unwrap();
    assert_eq!(resp.status(), 201, "{}", text(resp).await);
    assert_eq!(resp.headers()["location"], format!("/v2/team/b/blobs/{d}").as_str());
    assert_eq!(resp.headers()["docker-content-digest"], d.as_str());
    let resp =
        bearer(&reg, Method::GET, &format!("/v2/team/b/blobs/{d}"), &token).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), layer.as_slice());

    // The scopes as two `scope` parameters (what docker sends) work the same.
    let token =
        registry_token(&reg, &dev, &["repository:team/d:pull,push", "repository:team/a:pull"])
            .await;
    let resp = bearer(
        &reg,
        Method::POST,
        &format!("/v2/team/d/blobs/uploads/?mount={d}&from=team/a"),
        &token,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 201);

    // Without the source's pull scope: no mount, an ordinary upload session instead.
    let token = registry_token(&reg, &dev, &["repository:team/c:pull,push"]).await;
    let resp = bearer(
        &reg,
        Method::POST,
        &format!("/v2/team/c/blobs/uploads/?mount={d}&from=team/a"),
        &token,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 202);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let uuid = resp.headers()["docker-upload-uuid"].to_str().unwrap().to_string();
    assert_eq!(location, format!("/v2/team/c/blobs/uploads/{uuid}"));
    assert!(resp.headers().get("docker-content-digest").is_none());
    let resp =
        bearer(&reg, Method::HEAD, &format!("/v2/team/c/blobs/{d}"), &token).send().await.unwrap();
    assert_eq!(resp.status(), 404, "nothing was mounted");
    // The session it started takes the blob.
    let resp = bearer(&reg, Method::PUT, &format!("{location}?digest={d}"), &token)
        .body(layer.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);

    // A mount from the repository itself names one scope.
    let resp = reg
        .req(Method::POST, &format!("/v2/team/b/blobs/uploads/?mount={d}&from=team/b"), None)
        .send()
        .await
        .unwrap();
    assert!(www_authenticate(&resp).ends_with(",scope=\"repository:team/b:pull,push\""));
}

#[tokio::test]
async fn a_token_lacking_the_scope_gets_401_insufficient_scope_and_basic_auth_403() {
    let reg = Reg::start().await;
    let admin = reg.admin.clone();
    let m = reg.push_image("team/app", "v1", &admin, &[b"layer"]).await;
    let realm = format!("Bearer realm=\"http://{}/auth/token\",service=\"kiln\"", reg.host);
    let viewer = reg.token("viewer", Role::Viewer, Some("team")).await;
    let dev = reg.token("dev", Role::Developer, Some("team")).await;

    // A viewer's token pulls but does not push.
    let token = registry_token(&reg, &viewer, &["repository:team/app:pull,push"]).await;
    let resp = bearer(&reg, Method::GET, "/v2/team/app/manifests/v1", &token).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp =
        bearer(&reg, Method::POST, "/v2/team/app/blobs/uploads/", &token).send().await.unwrap();
    assert_insufficient_scope(&resp, &realm, "repository:team/app:pull,push");
    assert_eq!(code(resp).await, "UNAUTHORIZED");

    // A developer's pull-and-push token does not delete.
    let token = registry_token(&reg, &dev, &["repository:team/app:pull,push"]).await;
    let resp = bearer(&reg, Method::DELETE, &format!("/v2/team/app/manifests/{m}"), &token)
        .send()
        .await
        .unwrap();
    assert_insufficient_scope(&resp, &realm, "repository:team/app:delete");
    assert_eq!(code(resp).await, "UNAUTHORIZED");

    // A token for another repository.
    let token = registry_token(&reg, &dev, &["repository:team/other:pull"]).await;
    let resp = bearer(&reg, Method::GET, "/v2/team/app/manifests/v1", &token).send().await.unwrap();
    assert_insufficient_scope(&resp, &realm, "repository:team/app:pull");

    // Following the challenge with a role that allows it gives a token that works.
    let token = registry_token(&reg, &dev, &["repository:team/app:pull,push"]).await;
    let resp =
        bearer(&reg, Method::POST, "/v2/team/app/blobs/uploads/", &token).send().await.unwrap();
    assert_eq!(resp.status(), 202);

    // Basic auth whose role forbids the action: 403 DENIED, nothing to re-authenticate for.
    let resp =
        reg.req(Method::POST, "/v2/team/app/blobs/uploads/", Some(&viewer)).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.headers().get("www-authenticate").is_none());
    assert_eq!(code(resp).await, "DENIED");
    let resp = reg
        .req(Method::DELETE, &format!("/v2/team/app/manifests/{m}"), Some(&dev))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(code(resp).await, "DENIED");
}

#[tokio::test]
async fn sha512_blobs_monolithic_chunked_and_pulled() {
    let reg = Reg::start().await;
    let dev = reg.token("dev", Role::Developer, Some("team")).await;

    // Monolithic POST with the body.
    let one = b"monolithic sha512 content".to_vec();
    let d1 = sha512(&one);
    assert_eq!(d1.len(), "sha512:".len() + 128);
    let resp = reg
        .req(Method::POST, &format!("/v2/team/app/blobs/uploads/?digest={d1}"), Some(&dev))
        .body(one.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", text(resp).await);
    assert_eq!(resp.headers()["location"], format!("/v2/team/app/blobs/{d1}").as_str());
    assert_eq!(resp.headers()["docker-content-digest"], d1.as_str());

    // POST then PUT with the body.
    let two = b"post then put".to_vec();
    let d2 = sha512(&two);
    let resp =
        reg.req(Method::POST, "/v2/team/app/blobs/uploads/", Some(&dev)).send().await.unwrap();
    let loc = resp.headers()["location"].to_str().unwrap().to_string();
    let resp = reg
        .req(Method::PUT, &format!("{loc}?digest={d2}"), Some(&dev))
        .body(two.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", text(resp).await);
    assert_eq!(resp.headers()["docker-content-digest"], d2.as_str());

    // Chunked, with and without `digest-algorithm` (the staged file is hashed again).
    let data: Vec<u8> = (0..5000u32).map(|i| (i % 241) as u8).collect();
    let d3 = sha512(&data);
    for start in
        ["/v2/team/app/blobs/uploads/?digest-algorithm=sha512", "/v2/team/c/blobs/uploads/"]
    {
        let resp = reg.req(Method::POST, start, Some(&dev)).send().await.unwrap();
        assert_eq!(resp.status(), 202, "{start}");
        let loc = resp.headers()["location"].to_str().unwrap().to_string();
        let resp = reg
            .req(Method::PATCH, &loc, Some(&dev))
            .header("Content-Range", "0-2999")
            .body(data[..3000].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        assert_eq!(resp.headers()["range"], "0-2999");
        let resp = reg
            .req(Method::PUT, &format!("{loc}?digest={d3}"), Some(&dev))
            .header("Content-Range", "3000-4999")
            .body(data[3000..].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{start}: {}", text(resp).await);
        assert_eq!(resp.headers()["docker-content-digest"], d3.as_str());
    }

    // A sha512 digest that is not the content's.
    let wrong = sha512(b"something else");
    let resp = reg
        .req(Method::POST, &format!("/v2/team/app/blobs/uploads/?digest={wrong}"), Some(&dev))
        .body(one.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body = text(resp).await;
    assert!(body.contains("DIGEST_INVALID") && body.contains(&d1), "{body}");
    let resp = reg
        .req(Method::HEAD, &format!("/v2/team/app/blobs/{wrong}"), Some(&dev))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // Pulled by its sha512 digest, whole, by range, HEAD.
    for (d, bytes) in [(&d1, &one), (&d2, &two), (&d3, &data)] {
        let resp = reg
            .req(Method::GET, &format!("/v2/team/app/blobs/{d}"), Some(&dev))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["docker-content-digest"], d.as_str());
        assert_eq!(resp.bytes().await.unwrap().as_ref(), bytes.as_slice());
    }
    let resp = reg
        .req(Method::HEAD, &format!("/v2/team/app/blobs/{d3}"), Some(&dev))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], "5000");
    assert_eq!(resp.headers()["docker-content-digest"], d3.as_str());
    let resp = reg
        .req(Method::GET, &format!("/v2/team/app/blobs/{d3}"), Some(&dev))
        .header("Range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &data[10..20]);
    // Stored under the digest it was pushed with only.
    let resp = reg
        .req(Method::HEAD, &format!("/v2/team/app/blobs/{}", digest(&one)), Some(&dev))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    // In the blob store by algorithm: one copy of the chunked blob for both repositories.
    let hex = d3.strip_prefix("sha512:").unwrap();
    let path = reg.data.join("registry/blobs/sha512").join(&hex[..2]).join(hex);
    assert_eq!(std::fs::read(path).unwrap(), data);
    assert!(reg.blob_files().is_empty(), "no sha256 files: {:?}", reg.blob_files());

    // Algorithms the registry cannot verify.
    let resp = reg
        .req(Method::POST, "/v2/team/app/blobs/uploads/?digest-algorithm=blake3", Some(&dev))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(code(resp).await, "UNSUPPORTED");
    let resp = reg
        .req(Method::POST, "/v2/team/app/blobs/uploads/?digest=blake3:abcd", Some(&dev))
        .body(one.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body = text(resp).await;
    assert!(body.contains("DIGEST_INVALID") && body.contains("not supported"), "{body}");
    let resp =
        reg.req(Method::GET, "/v2/team/app/blobs/blake3:abcd", Some(&dev)).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(code(resp).await, "DIGEST_INVALID");
    let resp =
        reg.req(Method::GET, "/v2/team/app/blobs/sha512:abcd", Some(&dev)).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(code(resp).await, "DIGEST_INVALID");
}

/// Pushes `data` as a blob of `repo` by its sha512 digest; returns the digest.
async fn push_sha512_blob(reg: &Reg, repo: &str, token: &str, data: &[u8]) -> String {
    let d = sha512(data);
    let resp = reg
        .req(Method::POST, &format!("/v2/{repo}/blobs/uploads/?digest={d}"), Some(token))
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", text(resp).await);
    d
}

#[tokio::test]
async fn sha512_manifests_referrers_and_deletes() {
    let reg = Reg::start().await;
    let admin = reg.admin.clone();
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let layer = b"a sha512 layer";
    let config_digest = push_sha512_blob(&reg, "team/app", &admin, config).await;
    let layer_digest = push_sha512_blob(&reg, "team/app", &admin, layer).await;
    let m = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
    });
    let body = serde_json::to_vec(&m).unwrap();
    let d512 = sha512(&body);
    let put = |reference: String, body: Vec<u8>| {
        reg.req(Method::PUT, &format!("/v2/team/app/manifests/{reference}"), Some(&admin))
            .header("Content-Type", OCI_MANIFEST)
            .body(body)
            .send()
    };

    // Pushed by its sha512 digest: stored and answered under it.
    let resp = put(d512.clone(), body.clone()).await.unwrap();
    assert_eq!(resp.status(), 201, "{}", text(resp).await);
    assert_eq!(resp.headers()["docker-content-digest"], d512.as_str());
    assert_eq!(resp.headers()["location"], format!("/v2/team/app/manifests/{d512}").as_str());
    let resp = reg
        .req(Method::GET, &format!("/v2/team/app/manifests/{d512}"), Some(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["docker-content-digest"], d512.as_str());
    assert_eq!(resp.headers()["content-type"], OCI_MANIFEST);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), body.as_slice());
    let resp = reg
        .req(Method::HEAD, &format!("/v2/team/app/manifests/{d512}"), Some(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], body.len().to_string().as_str());
    let resp = reg
        .req(Method::GET, &format!("/v2/team/app/manifests/{}", digest(&body)), Some(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404, "not stored under its sha256 digest");
    assert_eq!(code(resp).await, "MANIFEST_UNKNOWN");

    // Pushed by tag, the same bytes get the canonical sha256 digest.
    let d256 = reg.put_manifest("team/app", "v1", &admin, &m).await;
    assert_eq!(d256, digest(&body));
    let resp =
        reg.req(Method::GET, "/v2/team/app/manifests/v1", Some(&admin)).send().await.unwrap();
    assert_eq!(resp.headers()["docker-content-digest"], d256.as_str());

    // A sha512 reference that is not the body's digest.
    let resp = put(sha512(b"another body"), body.clone()).await.unwrap();
    assert_eq!(resp.status(), 400);
    let text_ = text(resp).await;
    assert!(text_.contains("DIGEST_INVALID") && text_.contains(&d512), "{text_}");

    // A referrer of the sha512 manifest.
    let empty = push_sha512_blob(&reg, "team/app", &admin, b"{}").await;
    let r = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": d512, "size": body.len()},
    });
    let r_body = serde_json::to_vec(&r).unwrap();
    let r_digest = sha512(&r_body);
    let resp = put(r_digest.clone(), r_body).await.unwrap();
    assert_eq!(resp.status(), 201, "{}", text(resp).await);
    assert_eq!(resp.headers()["oci-subject"], d512.as_str());
    let resp = reg
        .req(Method::GET, &format!("/v2/team/app/referrers/{d512}"), Some(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let list: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(list["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(list["manifests"][0]["digest"], r_digest.as_str());
    assert_eq!(list["manifests"][0]["artifactType"], "application/vnd.example.sig");

    // Deleted by its sha512 digest.
    let resp = reg
        .req(Method::DELETE, &format!("/v2/team/app/manifests/{r_digest}"), Some(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let resp = reg
        .req(Method::GET, &format!("/v2/team/app/manifests/{r_digest}"), Some(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let list: serde_json::Value = reg
        .req(Method::GET, &format!("/v2/team/app/referrers/{d512}"), Some(&admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["manifests"], serde_json::json!([]));
}

#[tokio::test]
async fn gc_collects_sha512_blobs_by_their_own_paths() {
    let reg = Reg::start().await;
    let admin = reg.admin.clone();
    let kept_config = br#"{"os":"linux"}"#;
    let kept_layer = b"kept layer";
    let kept_config_digest = push_sha512_blob(&reg, "team/app", &admin, kept_config).await;
    let kept_layer_digest = push_sha512_blob(&reg, "team/app", &admin, kept_layer).await;
    let m = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": kept_config_digest, "size": kept_config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": kept_layer_digest, "size": kept_layer.len()}],
    });
    reg.put_manifest("team/app", "v1", &admin, &m).await;
    let loose = push_sha512_blob(&reg, "team/app", &admin, b"named by no manifest").await;
    let file = |d: &str| {
        let hex = d.strip_prefix("sha512:").unwrap().to_string();
        reg.data.join("registry/blobs/sha512").join(&hex[..2]).join(hex)
    };
    assert!(file(&loose).exists());
    // A committed file the database never recorded (a crash in between).
    let orphan = sha512(b"orphan");
    std::fs::create_dir_all(file(&orphan).parent().unwrap()).unwrap();
    std::fs::write(file(&orphan), b"orphan").unwrap();

    let report = reg.app().registry.gc(Duration::ZERO).await.unwrap();
    assert_eq!(report.blobs, 1, "{report:?}");
    assert_eq!(report.bytes_freed, "named by no manifest".len() as u64 + 6, "{report:?}");
    assert_eq!(report.orphans, 1, "{report:?}");
    assert!(!file(&loose).exists());
    assert!(!file(&orphan).exists());
    assert!(file(&kept_config_digest).exists() && file(&kept_layer_digest).exists());
    let resp = reg
        .req(Method::GET, &format!("/v2/team/app/blobs/{kept_layer_digest}"), Some(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.bytes().await.unwrap().as_ref(), kept_layer);
    let resp = reg
        .req(Method::HEAD, &format!("/v2/team/app/blobs/{loose}"), Some(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn a_sha512_upload_resumes_after_a_restart() {
    let reg = Reg::start().await;
    let admin = reg.admin.clone();
    let data: Vec<u8> = (0..8000u32).map(|i| (i * 13 % 256) as u8).collect();
    let resp = reg
        .req(Method::POST, "/v2/team/app/blobs/uploads/?digest-algorithm=sha512", Some(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let loc = resp.headers()["location"].to_str().unwrap().to_string();
    let resp = reg
        .req(Method::PATCH, &loc, Some(&admin))
        .header("Content-Range", "0-3999")
        .body(data[..4000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    // The running hash is lost with the process: the staged file is hashed again at the end.
    let reg = reg.restart().await;
    let resp = reg
        .req(Method::PATCH, &loc, Some(&admin))
        .header("Content-Range", "4000-7999")
        .body(data[4000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let d = sha512(&data);
    let resp =
        reg.req(Method::PUT, &format!("{loc}?digest={d}"), Some(&admin)).send().await.unwrap();
    assert_eq!(resp.status(), 201, "{}", text(resp).await);
    assert_eq!(resp.headers()["docker-content-digest"], d.as_str());
    let got = reg
        .req(Method::GET, &format!("/v2/team/app/blobs/{d}"), Some(&admin))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), data.as_slice());
}
