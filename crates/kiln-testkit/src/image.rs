//! [`push_image`]: a tiny OCI image (a config blob naming it, no layers) pushed to a Kiln
//! server's registry over the distribution API, as `docker push` would, for tests that deploy
//! an image without building one.

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

/// `sha256:<hex>` of `data`.
fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Pushes an image tagged `tag` to repository `repo` (`<project>/<name>`, the project must
/// exist) of the server at `url` with the Kiln token `token`; its config says `label`, so
/// images pushed with different labels have different digests. Returns the manifest's digest.
pub async fn push_image(url: &str, token: &str, repo: &str, tag: &str, label: &str) -> String {
    let http = reqwest::Client::new();
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("kiln:{token}"))
    );
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Labels":{{"kiln.test":"{label}"}}}}}}"#
    );
    let config_digest = digest(config.as_bytes());
    let resp = http
        .post(format!("{url}/v2/{repo}/blobs/uploads/"))
        .header("Authorization", &auth)
        .send()
        .await
        .expect("start an upload");
    assert_eq!(resp.status(), 202, "start upload: {}", resp.text().await.unwrap_or_default());
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let location = if location.starts_with("http") { location } else { format!("{url}{location}") };
    let sep = if location.contains('?') { '&' } else { '?' };
    let resp = http
        .put(format!("{location}{sep}digest={config_digest}"))
        .header("Authorization", &auth)
        .body(config.clone())
        .send()
        .await
        .expect("finish the upload");
    assert_eq!(resp.status(), 201, "finish upload: {}", resp.text().await.unwrap_or_default());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [],
    });
    let body = serde_json::to_vec(&manifest).unwrap();
    let resp = http
        .put(format!("{url}/v2/{repo}/manifests/{tag}"))
        .header("Authorization", &auth)
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(body.clone())
        .send()
        .await
        .expect("put the manifest");
    assert_eq!(resp.status(), 201, "put manifest: {}", resp.text().await.unwrap_or_default());
    digest(&body)
}
