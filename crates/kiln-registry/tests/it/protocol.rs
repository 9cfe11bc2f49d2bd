//! The distribution protocol through the real server on loopback.

use kiln_store::Role;
use reqwest::Method;

use crate::support::{Reg, basic, code, digest, text};

#[tokio::test]
async fn token_flow_challenge_token_bearer() {
    let reg = Reg::start().await;
    let resp = reg.req(Method::GET, "/v2/", None).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert_eq!(
        challenge,
        format!("Bearer realm=\"http://{}/auth/token\",service=\"kiln\"", reg.host)
    );
    assert_eq!(code(resp).await, "UNAUTHORIZED");

    // A repository endpoint names the scope it needs.
    let resp = reg.req(Method::POST, "/v2/team/app/blobs/uploads/", None).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .ends_with(",scope=\"repository:team/app:pull,push\"")
    );

    // Wrong password: no token.
    let resp =
        reg.req(Method::GET, "/auth/token?service=kiln", Some("kiln_nope")).send().await.unwrap();
    assert_eq!(resp.status(), 401);

    // A viewer of `team` asking for pull and push gets only pull.
    let viewer = reg.token("viewer", Role::Viewer, Some("team")).await;
    let resp = reg
        .req(Method::GET, "/auth/token?service=kiln&scope=repository:team/app:pull,push&scope=repository:other/app:pull", Some(&viewer))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    let token = body["token"].as_str().unwrap().to_string();
    assert_eq!(body["access_token"], body["token"]);
    assert_eq!(body["expires_in"], 300);
    let claims: serde_json::Value = {
        use base64::Engine as _;
        let part = token.split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap(),
        )
        .unwrap()
    };
    assert_eq!(
        claims["access"],
        serde_json::json!([{"type": "repository", "name": "team/app", "actions": ["pull"]}])
    );

    let bearer =
        |m: Method, p: &str| reg.http.request(m, format!("{}{p}", reg.url)).bearer_auth(&token);
    assert_eq!(bearer(Method::GET, "/v2/").send().await.unwrap().status(), 200);
    // Pull is granted (the repository is empty: unknown manifest), push is not.
    let resp = bearer(Method::GET, "/v2/team/app/manifests/latest").send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(code(resp).await, "MANIFEST_UNKNOWN");
    let resp = bearer(Method::POST, "/v2/team/app/blobs/uploads/").send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .ends_with("scope=\"repository:team/app:pull,push\",error=\"insufficient_scope\"")
    );
    assert_eq!(code(resp).await, "UNAUTHORIZED");
    // A tampered token is refused.
    let resp = reg
        .http
        .get(format!("{}/v2/", reg.url))
        .bearer_auth(format!("{token}x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn push_and_pull_by_tag_and_digest_with_ranges() {
    let reg = Reg::start().await;
    let dev = reg.token("dev", Role::Developer, Some("team")).await;
    let layer = b"layer bytes 0123456789".to_vec();
    let m = reg.push_image("team/app", "v1", &dev, &[&layer]).await;

    for reference in ["v1", m.as_str()] {
        let resp = reg
            .req(Method::GET, &format!("/v2/team/app/manifests/{reference}"), Some(&dev))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["docker-content-digest"], m.as_str());
        assert_eq!(resp.headers()["content-type"], "application/vnd.oci.image.manifest.v1+json");
        let body = resp.bytes().await.unwrap();
        assert_eq!(digest(&body), m);
        let resp = reg
            .req(Method::HEAD, &format!("/v2/team/app/manifests/{reference}"), Some(&dev))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-length"], body.len().to_string().as_str());
    }
    let d = digest(&layer);
    let resp =
        reg.req(Method::GET, &format!("/v2/team/app/blobs/{d}"), Some(&dev)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["docker-content-digest"], d.as_str());
    assert_eq!(resp.bytes().await.unwrap().as_ref(), layer.as_slice());
    let resp = reg
        .req(Method::GET, &format!("/v2/team/app/blobs/{d}"), Some(&dev))
        .header("Range", "bytes=6-10")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.headers()["content-range"], format!("bytes 6-10/{}", layer.len()).as_str());
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"bytes");
    let resp = reg
        .req(Method::GET, &format!("/v2/team/app/blobs/{d}"), Some(&dev))
        .header("Range", "bytes=500-")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 416);
    let resp =
        reg.req(Method::HEAD, &format!("/v2/team/app/blobs/{d}"), Some(&dev)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], layer.len().to_string().as_str());

    // Another project's token sees nothing (answered as a missing repository); the private
    // repository is not pullable anonymously.
    let stranger = reg.token("stranger", Role::Admin, Some("other")).await;
    let resp =
        reg.req(Method::GET, "/v2/team/app/manifests/v1", Some(&stranger)).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(code(resp).await, "NAME_UNKNOWN");
    let resp = reg.req(Method::GET, "/v2/team/app/manifests/v1", None).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    // Made public, anyone pulls, no one anonymous pushes.
    reg.app().registry.set_public("team/app", true).await.unwrap();
    let resp = reg.req(Method::GET, "/v2/team/app/manifests/v1", None).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp = reg.req(Method::POST, "/v2/team/app/blobs/uploads/", None).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp =
        reg.req(Method::POST, "/v2/team/app/blobs/uploads/", Some(&stranger)).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    // Pushing to a project that does not exist.
    let admin = reg.admin.clone();
    let resp =
        reg.req(Method::POST, "/v2/nosuch/app/blobs/uploads/", Some(&admin)).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(code(resp).await, "NAME_UNKNOWN");
}

#[tokio::test]
async fn chunked_upload_in_order_out_of_order_and_status() {
    let reg = Reg::start().await;
    let dev = reg.token("dev", Role::Developer, Some("team")).await;
    let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let resp =
        reg.req(Method::POST, "/v2/team/app/blobs/uploads/", Some(&dev)).send().await.unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.headers()["range"], "0-0");
    let loc = resp.headers()["location"].to_str().unwrap().to_string();
    let uuid = resp.headers()["docker-upload-uuid"].to_str().unwrap().to_string();
    assert!(loc.ends_with(&uuid));

    let patch = |range: &str, body: &[u8]| {
        reg.req(Method::PATCH, &loc, Some(&dev))
            .header("Content-Range", range)
            .header("Content-Type", "application/octet-stream")
            .body(body.to_vec())
            .send()
    };
    let resp = patch("0-999", &data[..1000]).await.unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.headers()["range"], "0-999");
    // Out of order: 416, and the upload keeps its 1000 bytes.
    let resp = patch("2000-2999", &data[2000..]).await.unwrap();
    assert_eq!(resp.status(), 416);
    assert_eq!(resp.headers()["range"], "0-999");
    assert_eq!(code(resp).await, "BLOB_UPLOAD_INVALID");
    let resp = reg.req(Method::GET, &loc, Some(&dev)).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(resp.headers()["range"], "0-999");
    let resp = patch("1000-1999", &data[1000..2000]).await.unwrap();
    assert_eq!(resp.status(), 202);
    // The last chunk comes with the final PUT.
    let d = digest(&data);
    let resp = reg
        .req(Method::PUT, &format!("{loc}?digest={d}"), Some(&dev))
        .header("Content-Range", "2000-2999")
        .body(data[2000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", text(resp).await);
    let resp =
        reg.req(Method::GET, &format!("/v2/team/app/blobs/{d}"), Some(&dev)).send().await.unwrap();
    assert_eq!(resp.bytes().await.unwrap().as_ref(), data.as_slice());
    // The finished session is gone.
    let resp = reg.req(Method::GET, &loc, Some(&dev)).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(code(resp).await, "BLOB_UPLOAD_UNKNOWN");

    // A blob larger than axum's default body limit, in one PATCH.
    let large: Vec<u8> = (0..5_000_000u32).map(|i| (i % 253) as u8).collect();
    let resp =
        reg.req(Method::POST, "/v2/team/app/blobs/uploads/", Some(&dev)).send().await.unwrap();
    let loc = resp.headers()["location"].to_str().unwrap().to_string();
    let resp = reg.req(Method::PATCH, &loc, Some(&dev)).body(large.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.headers()["range"], "0-4999999");
    let d = digest(&large);
    let resp = reg.req(Method::PUT, &format!("{loc}?digest={d}"), Some(&dev)).send().await.unwrap();
    assert_eq!(resp.status(), 201);

    // Monolithic POST with ?digest=.
    let small = b"monolithic".to_vec();
    let d = digest(&small);
    let resp = reg
        .req(Method::POST, &format!("/v2/team/app/blobs/uploads/?digest={d}"), Some(&dev))
        .body(small.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["location"], format!("/v2/team/app/blobs/{d}").as_str());
}

#[tokio::test]
async fn bad_inputs_get_the_spec_codes_and_store_nothing() {
    let reg = Reg::start().await;
    let dev = reg.token("dev", Role::Developer, Some("team")).await;
    let data = b"the real content".to_vec();
    let wrong = digest(b"something else");

    // Wrong digest, monolithic.
    let resp = reg
        .req(Method::POST, &format!("/v2/team/app/blobs/uploads/?digest={wrong}"), Some(&dev))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(code(resp).await, "DIGEST_INVALID");
    let resp = reg
        .req(Method::HEAD, &format!("/v2/team/app/blobs/{wrong}"), Some(&dev))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // Truncated upload: half the bytes, then a PUT claiming the whole blob's digest.
    let resp =
        reg.req(Method::POST, "/v2/team/app/blobs/uploads/", Some(&dev)).send().await.unwrap();
    let loc = resp.headers()["location"].to_str().unwrap().to_string();
    reg.req(Method::PATCH, &loc, Some(&dev)).body(data[..8].to_vec()).send().await.unwrap();
    let d = digest(&data);
    let resp = reg.req(Method::PUT, &format!("{loc}?digest={d}"), Some(&dev)).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let body = text(resp).await;
    assert!(body.contains("DIGEST_INVALID") && body.contains("8 bytes"), "{body}");
    let resp =
        reg.req(Method::HEAD, &format!("/v2/team/app/blobs/{d}"), Some(&dev)).send().await.unwrap();
    assert_eq!(resp.status(), 404, "a partial blob is never visible");
    assert!(reg.blob_files().is_empty());

    // Malformed digest.
    let resp =
        reg.req(Method::GET, "/v2/team/app/blobs/sha256:xyz", Some(&dev)).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(code(resp).await, "DIGEST_INVALID");
    // Malformed name.
    let resp = reg.req(Method::GET, "/v2/Team/App/manifests/v1", Some(&dev)).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(code(resp).await, "NAME_INVALID");

    // Invalid manifest JSON.
    let resp = reg
        .req(Method::PUT, "/v2/team/app/manifests/v1", Some(&dev))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body("{\"schemaVersion\": 2, \"config\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body = text(resp).await;
    assert!(body.contains("MANIFEST_INVALID") && body.contains("not valid JSON"), "{body}");

    // A manifest naming a blob the repository does not have.
    let config = reg.push_blob("team/app", &dev, b"{}").await;
    let missing = digest(b"never pushed");
    let m = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": missing, "size": 12}],
    });
    let resp = reg
        .req(Method::PUT, "/v2/team/app/manifests/v1", Some(&dev))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(serde_json::to_vec(&m).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body = text(resp).await;
    assert!(body.contains("MANIFEST_BLOB_UNKNOWN") && body.contains(&missing), "{body}");
    let resp = reg.req(Method::GET, "/v2/team/app/manifests/v1", Some(&dev)).send().await.unwrap();
    assert_eq!(resp.status(), 404);

    // A manifest PUT by a digest that is not its own.
    let resp = reg
        .req(Method::PUT, &format!("/v2/team/app/manifests/{wrong}"), Some(&dev))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(serde_json::to_vec(&m).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(code(resp).await, "DIGEST_INVALID");
}

#[tokio::test]
async fn mounts_dedup_tags_catalog_and_deletes() {
    let reg = Reg::start().await;
    let admin = reg.admin.clone();
    let layer = vec![7u8; 4096];
    reg.push_image("team/a", "v1", &admin, &[&layer]).await;
    let d = digest(&layer);

    // Mount with `from`.
    let resp = reg
        .req(
            Method::POST,
            &format!("/v2/team/b/blobs/uploads/?mount={d}&from=team/a"),
            Some(&admin),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["location"], format!("/v2/team/b/blobs/{d}").as_str());
    // Mount without `from` (found in the same project).
    let resp = reg
        .req(Method::POST, &format!("/v2/team/c/blobs/uploads/?mount={d}"), Some(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    // An unknown blob falls back to an upload.
    let unknown = digest(b"nope");
    let resp = reg
        .req(
            Method::POST,
            &format!("/v2/team/c/blobs/uploads/?mount={unknown}&from=team/a"),
            Some(&admin),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    // A project-limited token cannot mount from another project's private repository.
    let other = reg.token("other-dev", Role::Developer, Some("other")).await;
    let resp = reg
        .req(
            Method::POST,
            &format!("/v2/other/x/blobs/uploads/?mount={d}&from=team/a"),
            Some(&other),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202, "no mount across projects without pull rights");
    let resp = reg
        .req(Method::POST, &format!("/v2/other/x/blobs/uploads/?mount={d}"), Some(&other))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);

    // One copy on disk, whatever the number of repositories: the same layer and config.
    reg.push_image("team/b", "v1", &admin, &[&layer]).await;
    assert_eq!(reg.blob_files().len(), 2, "{:?}", reg.blob_files());

    // Tags with n/last and Link.
    for t in ["v2", "v3", "latest"] {
        reg.push_image("team/a", t, &admin, &[&layer]).await;
    }
    let resp = reg.req(Method::GET, "/v2/team/a/tags/list?n=2", Some(&admin)).send().await.unwrap();
    assert_eq!(resp.headers()["link"], "</v2/team/a/tags/list?n=2&last=v1>; rel=\"next\"");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"name": "team/a", "tags": ["latest", "v1"]}));
    let body: serde_json::Value = reg
        .req(Method::GET, "/v2/team/a/tags/list?n=2&last=v1", Some(&admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["tags"], serde_json::json!(["v2", "v3"]));
    let resp = reg.req(Method::GET, "/v2/team/zzz/tags/list", Some(&admin)).send().await.unwrap();
    assert_eq!(code(resp).await, "NAME_UNKNOWN");

    // Catalog: all for the admin, the own project's for a limited token.
    let body: serde_json::Value = reg
        .req(Method::GET, "/v2/_catalog", Some(&admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["repositories"], serde_json::json!(["other/x", "team/a", "team/b", "team/c"]));
    let body: serde_json::Value = reg
        .req(Method::GET, "/v2/_catalog?n=1&last=team/a", Some(&admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["repositories"], serde_json::json!(["team/b"]));
    let body: serde_json::Value = reg
        .req(Method::GET, "/v2/_catalog", Some(&other))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["repositories"], serde_json::json!(["other/x"]));

    // Deletes: a tag, a manifest by digest (its tags go), a blob from one repository.
    let dev = reg.token("dev", Role::Developer, Some("team")).await;
    let resp = reg.req(Method::DELETE, "/v2/team/a/manifests/v3", Some(&dev)).send().await.unwrap();
    assert_eq!(resp.status(), 403, "developers do not delete");
    let resp =
        reg.req(Method::DELETE, "/v2/team/a/manifests/v3", Some(&admin)).send().await.unwrap();
    assert_eq!(resp.status(), 202);
    let resp = reg.req(Method::GET, "/v2/team/a/manifests/v3", Some(&admin)).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let m = reg
        .req(Method::GET, "/v2/team/a/manifests/v2", Some(&admin))
        .send()
        .await
        .unwrap()
        .headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_string();
    let resp = reg
        .req(Method::DELETE, &format!("/v2/team/a/manifests/{m}"), Some(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let body: serde_json::Value = reg
        .req(Method::GET, "/v2/team/a/tags/list", Some(&admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["tags"], serde_json::json!(["latest", "v1"]));
    let resp = reg
        .req(Method::DELETE, &format!("/v2/team/c/blobs/{d}"), Some(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let resp =
        reg.req(Method::GET, &format!("/v2/team/c/blobs/{d}"), Some(&admin)).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let resp =
        reg.req(Method::GET, &format!("/v2/team/a/blobs/{d}"), Some(&admin)).send().await.unwrap();
    assert_eq!(resp.status(), 200, "other repositories keep the blob");
}

#[tokio::test]
async fn indexes_docker_lists_and_referrers() {
    let reg = Reg::start().await;
    let admin = reg.admin.clone();
    let m1 = reg.push_image("team/app", "amd64", &admin, &[b"one"]).await;
    let m2 = reg.push_image("team/app", "arm64", &admin, &[b"two"]).await;
    let size = |d: &str| {
        let reg = &reg;
        let admin = admin.clone();
        let d = d.to_string();
        async move {
            reg.req(Method::GET, &format!("/v2/team/app/manifests/{d}"), Some(&admin))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .len()
        }
    };
    let list = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m1, "size": size(&m1).await, "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m2, "size": size(&m2).await, "platform": {"architecture": "arm64", "os": "linux"}},
        ],
    });
    let idx = reg.put_manifest("team/app", "multi", &admin, &list).await;
    let resp =
        reg.req(Method::GET, "/v2/team/app/manifests/multi", Some(&admin)).send().await.unwrap();
    assert_eq!(
        resp.headers()["content-type"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    assert_eq!(resp.headers()["docker-content-digest"], idx.as_str());
    // An index naming a manifest the repository lacks is refused.
    let mut bad = list.clone();
    bad["manifests"][0]["digest"] = serde_json::json!(digest(b"absent"));
    let resp = reg
        .req(Method::PUT, "/v2/team/app/manifests/bad", Some(&admin))
        .header("Content-Type", "application/vnd.docker.distribution.manifest.list.v2+json")
        .body(serde_json::to_vec(&bad).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(code(resp).await, "MANIFEST_BLOB_UNKNOWN");

    // Two referrers of m1 with different artifact types.
    let empty = reg.push_blob("team/app", &admin, b"{}").await;
    let sig = reg.push_blob("team/app", &admin, b"signature").await;
    let mut referrers = Vec::new();
    for (kind, note) in
        [("application/vnd.example.sig", "signed"), ("application/vnd.example.sbom", "sbom")]
    {
        let r = serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": kind,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [{"mediaType": "application/octet-stream", "digest": sig, "size": 9}],
            "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m1, "size": size(&m1).await},
            "annotations": {"note": note},
        });
        let body = serde_json::to_vec(&r).unwrap();
        let d = digest(&body);
        let resp = reg
            .req(Method::PUT, &format!("/v2/team/app/manifests/{d}"), Some(&admin))
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        assert_eq!(resp.headers()["oci-subject"], m1.as_str());
        referrers.push(d);
    }
    let resp = reg
        .req(Method::GET, &format!("/v2/team/app/referrers/{m1}"), Some(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/vnd.oci.image.index.v1+json");
    assert!(resp.headers().get("oci-filters-applied").is_none());
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["manifests"].as_array().unwrap().len(), 2);
    assert_eq!(body["manifests"][0]["digest"], referrers[0].as_str());
    assert_eq!(body["manifests"][0]["artifactType"], "application/vnd.example.sig");
    assert_eq!(body["manifests"][0]["annotations"]["note"], "signed");
    let resp = reg
        .req(
            Method::GET,
            &format!("/v2/team/app/referrers/{m1}?artifactType=application/vnd.example.sbom"),
            Some(&admin),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["oci-filters-applied"], "artifactType");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(body["manifests"][0]["digest"], referrers[1].as_str());
    let body: serde_json::Value = reg
        .req(Method::GET, &format!("/v2/team/app/referrers/{m2}"), Some(&admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["manifests"], serde_json::json!([]));
}

#[tokio::test]
async fn an_upload_resumes_after_a_restart() {
    let reg = Reg::start().await;
    let admin = reg.admin.clone();
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let resp =
        reg.req(Method::POST, "/v2/team/app/blobs/uploads/", Some(&admin)).send().await.unwrap();
    let loc = resp.headers()["location"].to_str().unwrap().to_string();
    let resp = reg
        .req(Method::PATCH, &loc, Some(&admin))
        .header("Content-Range", "0-4999")
        .body(data[..5000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let reg = reg.restart().await;
    let resp = reg.req(Method::GET, &loc, Some(&admin)).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(resp.headers()["range"], "0-4999");
    let resp = reg
        .req(Method::PATCH, &loc, Some(&admin))
        .header("Content-Range", "5000-9999")
        .body(data[5000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let d = digest(&data);
    let resp =
        reg.req(Method::PUT, &format!("{loc}?digest={d}"), Some(&admin)).send().await.unwrap();
    assert_eq!(resp.status(), 201, "{}", text(resp).await);
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

#[tokio::test]
async fn a_job_token_pushes_to_its_own_project_only() {
    let reg = Reg::start().await;
    let team = reg.app().store.project("team").await.unwrap().id;
    let token = reg.app().registry.job_token(
        team,
        "job team/build#1 image",
        std::time::Duration::from_secs(60),
    );
    reg.push_image("team/app", "ci", &token, &[b"built"]).await;
    let resp =
        reg.req(Method::POST, "/v2/other/app/blobs/uploads/", Some(&token)).send().await.unwrap();
    assert_eq!(resp.status(), 404, "another project is answered as a missing one");
    let resp = reg
        .req(
            Method::GET,
            "/auth/token?service=kiln&scope=repository:team/app:pull,push",
            Some(&token),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The push event names the job.
    let events = reg.app().store.registry_events(None, 10).await.unwrap();
    assert_eq!(events[0].actor, "job team/build#1 image");
    assert_eq!(events[0].tag.as_deref(), Some("ci"));
    let resp = reg
        .http
        .get(format!("{}/v2/", reg.url))
        .header("Authorization", basic("kiln_job_forged.sig"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn the_registry_on_postgresql() {
    let Some(reg) = Reg::start_postgres("the_registry_on_postgresql").await else { return };
    let admin = reg.admin.clone();
    let layer = vec![3u8; 3000];
    let old = reg.push_image("team/app", "v1", &admin, &[&layer, b"old only"]).await;
    let m = reg.push_image("team/app", "v2", &admin, &[&layer]).await;
    let resp =
        reg.req(Method::GET, "/v2/team/app/manifests/v2", Some(&admin)).send().await.unwrap();
    assert_eq!(resp.headers()["docker-content-digest"], m.as_str());
    let resp = reg
        .req(
            Method::POST,
            &format!("/v2/team/b/blobs/uploads/?mount={}&from=team/app", digest(&layer)),
            Some(&admin),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let body: serde_json::Value = reg
        .req(Method::GET, "/v2/team/app/tags/list?n=1", Some(&admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["tags"], serde_json::json!(["v1"]));
    let body: serde_json::Value = reg
        .req(Method::GET, "/v2/_catalog", Some(&admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["repositories"], serde_json::json!(["team/app", "team/b"]));
    reg.app().registry.set_public("team/app", true).await.unwrap();
    assert_eq!(
        reg.req(Method::GET, "/v2/team/app/manifests/v2", None).send().await.unwrap().status(),
        200
    );
    reg.req(Method::DELETE, "/v2/team/app/manifests/v1", Some(&admin)).send().await.unwrap();
    let report = reg.app().registry.gc(std::time::Duration::ZERO).await.unwrap();
    assert_eq!(report.manifests, vec![format!("team/app@{old}")]);
    assert_eq!(report.blobs, 2, "{report:?}");
    let team = reg.app().store.project("team").await.unwrap().id;
    let events = reg.app().store.registry_events(Some(&team), 10).await.unwrap();
    assert_eq!(events.len(), 2);
}
