//! Manifest parsing and validation: OCI image manifests and indexes, Docker schema 2
//! manifests and manifest lists. What a manifest names (blobs, child manifests, subject) is
//! extracted here, without I/O; the handler checks that the repository holds them.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::{Code, RegError, RegResult};
use crate::names::check_digest;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Largest manifest accepted (bytes).
pub const MAX_MANIFEST: usize = 4 * 1024 * 1024;

/// A content descriptor.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: Option<String>,
    /// Its digest.
    pub digest: String,
    /// Its size.
    pub size: i64,
    /// Where non-distributable content can be fetched from.
    #[serde(default)]
    pub urls: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

/// What a valid manifest is and names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// Its media type.
    pub media_type: String,
    /// `artifactType`, or an image manifest's config media type.
    pub artifact_type: Option<String>,
    /// The digest of the manifest it refers to.
    pub subject: Option<String>,
    /// Its annotations, as JSON object text.
    pub annotations: Option<String>,
    /// Blobs it names (config and layers), without repeats.
    pub blobs: Vec<String>,
    /// Manifests it names (an index's entries), without repeats.
    pub children: Vec<String>,
}

fn invalid(message: impl Into<String>) -> RegError {
    RegError::new(Code::ManifestInvalid, message)
}

fn check_descriptor(what: &str, d: &Descriptor) -> RegResult<()> {
    check_digest(&d.digest).map_err(|e| invalid(format!("{what}: {}", e.message)))?;
    if d.size < 0 {
        return Err(invalid(format!("{what}: size {} is negative", d.size)));
    }
    Ok(())
}

/// Parses and validates a manifest sent with `content_type` (the request's `Content-Type`).
pub fn parse(content_type: Option<&str>, body: &[u8]) -> RegResult<Parsed> {
    if body.len() > MAX_MANIFEST {
        let too_large = invalid(format!(
            "the manifest is {} bytes; at most {MAX_MANIFEST} are accepted",
            body.len()
        ));
        return Err(too_large.with_status(axum::http::StatusCode::PAYLOAD_TOO_LARGE));
    }
    let raw: Raw = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("the manifest is not valid JSON: {e}")))?;
    if raw.schema_version != Some(2) {
        return Err(invalid(match raw.schema_version {
            Some(1) => "schema 1 manifests are not supported; push schema 2 or OCI".to_string(),
            Some(v) => format!("schemaVersion {v} is not supported: expected 2"),
            None => "the manifest has no schemaVersion: expected 2".to_string(),
        }));
    }
    let content_type = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim())
        .filter(|c| !c.is_empty() && *c != "application/json" && *c != "application/octet-stream");
    let media_type = match (&raw.media_type, content_type) {
        (Some(body_type), Some(header)) if body_type != header => {
            return Err(invalid(format!(
                "mediaType `{body_type}` does not match the Content-Type `{header}`"
            )));
        }
        (Some(t), _) => t.clone(),
        (None, Some(h)) => h.to_string(),
        (None, None) if raw.manifests.is_some() => OCI_INDEX.to_string(),
        (None, None) => OCI_MANIFEST.to_string(),
    };
    let mut parsed = Parsed {
        media_type: media_type.clone(),
        artifact_type: raw.artifact_type.clone(),
        subject: None,
        annotations: raw.annotations.as_ref().map(|a| serde_json::to_string(a).unwrap_or_default()),
        blobs: Vec::new(),
        children: Vec::new(),
    };
    if let Some(subject) = &raw.subject {
        check_descriptor("subject", subject)?;
        parsed.subject = Some(subject.digest.clone());
    }
    match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let config =
                raw.config.as_ref().ok_or_else(|| invalid("an image manifest needs `config`"))?;
            check_descriptor("config", config)?;
            if config.media_type.is_none() {
                return Err(invalid("config: `mediaType` is missing"));
            }
            let layers =
                raw.layers.as_ref().ok_or_else(|| invalid("an image manifest needs `layers`"))?;
            if raw.manifests.is_some() {
                return Err(invalid("an image manifest cannot have `manifests`"));
            }
            if parsed.artifact_type.is_none() {
                parsed.artifact_type = config.media_type.clone();
            }
            parsed.blobs.push(config.digest.clone());
            for (i, layer) in layers.iter().enumerate() {
                check_descriptor(&format!("layers[{i}]"), layer)?;
                if layer.media_type.is_none() {
                    return Err(invalid(format!("layers[{i}]: `mediaType` is missing")));
                }
                // Non-distributable layers are fetched from their URLs, not from here.
                if !layer.urls.is_empty() {
                    continue;
                }
                if !parsed.blobs.contains(&layer.digest) {
                    parsed.blobs.push(layer.digest.clone());
                }
            }
        }
        OCI_INDEX | DOCKER_LIST => {
            let manifests =
                raw.manifests.as_ref().ok_or_else(|| invalid("an index needs `manifests`"))?;
            for (i, m) in manifests.iter().enumerate() {
                check_descriptor(&format!("manifests[{i}]"), m)?;
                if !parsed.children.contains(&m.digest) {
                    parsed.children.push(m.digest.clone());
                }
            }
        }
        other => {
            return Err(invalid(format!(
                "media type `{other}` is not a manifest type this registry stores \
                 ({OCI_MANIFEST}, {OCI_INDEX}, {DOCKER_MANIFEST}, {DOCKER_LIST})"
            )));
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    #[test]
    fn docker_manifest_names_config_and_layers_once() {
        let body = serde_json::json!({
            "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": d(1), "size": 10},
            "layers": [
                {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": d(2), "size": 5},
                {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": d(2), "size": 5}
            ]
        });
        let p = parse(Some(DOCKER_MANIFEST), body.to_string().as_bytes()).unwrap();
        assert_eq!(p.blobs, vec![d(1), d(2)]);
        assert_eq!(
            p.artifact_type.as_deref(),
            Some("application/vnd.docker.container.image.v1+json")
        );
    }

    #[test]
    fn index_with_subject() {
        let body = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX, "artifactType": "x/y",
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": d(3), "size": 1}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": d(4), "size": 1}
        });
        let p = parse(None, body.to_string().as_bytes()).unwrap();
        assert_eq!(p.children, vec![d(3)]);
        assert_eq!(p.subject, Some(d(4)));
        assert_eq!(p.artifact_type.as_deref(), Some("x/y"));
    }

    #[test]
    fn bad_manifests_say_what_is_wrong() {
        let e = parse(None, b"{not json").unwrap_err();
        assert_eq!(e.code, Code::ManifestInvalid);
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
        let e = parse(None, br#"{"schemaVersion": 1}"#).unwrap_err();
        assert!(e.message.contains("schema 1"), "{}", e.message);
        let body = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "a/b", "digest": "sha256:nothex", "size": 1}, "layers": []});
        let e = parse(None, body.to_string().as_bytes()).unwrap_err();
        assert!(e.message.starts_with("config:"), "{}", e.message);
        let e = parse(Some(OCI_INDEX), body.to_string().as_bytes()).unwrap_err();
        assert!(e.message.contains("does not match"), "{}", e.message);
    }
}
