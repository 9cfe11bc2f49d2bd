//! Fuzzes the registry's manifest parser (`kiln_registry::manifest::parse`): OCI image
//! manifests and indexes, Docker schema 2 manifests and manifest lists, under each media type
//! a client may send. It may not panic, and what it accepts must name only valid digests.
//!
//! Input: a first byte choosing the `Content-Type`, then the manifest's bytes.

#![no_main]

use kiln_registry::manifest::{self, DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use kiln_registry::names::check_digest;
use libfuzzer_sys::fuzz_target;

const CONTENT_TYPES: [Option<&str>; 7] = [
    None,
    Some(OCI_MANIFEST),
    Some(OCI_INDEX),
    Some(DOCKER_MANIFEST),
    Some(DOCKER_LIST),
    Some("application/json"),
    Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else { return };
    let content_type = CONTENT_TYPES[usize::from(kind) % CONTENT_TYPES.len()];
    let Ok(parsed) = manifest::parse(content_type, body) else { return };
    for digest in parsed.blobs.iter().chain(&parsed.children).chain(&parsed.subject) {
        assert!(check_digest(digest).is_ok(), "accepted a manifest naming {digest:?}");
    }
    if let Some(annotations) = &parsed.annotations {
        assert!(
            serde_json::from_str::<serde_json::Value>(annotations).is_ok_and(|v| v.is_object()),
            "annotations {annotations:?} are not a JSON object"
        );
    }
});
