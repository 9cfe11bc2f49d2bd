//! Fuzzes the git providers' webhook deliveries (`kiln_server::webhooks`): GitHub, GitLab
//! and Gitea headers and payloads read, signatures checked. None may panic, and a body signed
//! with a secret must verify with that secret and not with another.
//!
//! Input: a first byte choosing the provider, then header lines `name: value`, a blank line,
//! and the body (as HTTP writes them).

#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use kiln_server::webhooks::{self, Provider};
use libfuzzer_sys::fuzz_target;

const PROVIDERS: [Provider; 3] = [Provider::GitHub, Provider::GitLab, Provider::Gitea];

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else { return };
    let provider = PROVIDERS[usize::from(kind) % PROVIDERS.len()];
    let split = rest.windows(2).position(|w| w == b"\n\n");
    let (head, body) = match split {
        Some(at) => (&rest[..at], &rest[at + 2..]),
        None => (&b""[..], rest),
    };
    let mut headers = HeaderMap::new();
    for line in head.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(&line[colon + 1..]))
        else {
            continue;
        };
        headers.append(name, value);
    }
    if let Ok(delivery) = webhooks::parse(provider, &headers, body) {
        assert!(!delivery.id.is_empty(), "a delivery without an id");
    }
    let _ = webhooks::verify(provider, &headers, body, "s3cret");
    // A body signed with a secret verifies with it, and not with another.
    let signature = webhooks::sign(provider, body, "s3cret");
    let header = HeaderName::from_bytes(provider.signature_header().as_bytes())
        .expect("a signature header name is a header name");
    let mut signed = HeaderMap::new();
    signed
        .insert(header, HeaderValue::from_str(&signature).expect("a signature is a header value"));
    assert!(webhooks::verify(provider, &signed, body, "s3cret"), "its own signature refused");
    assert!(!webhooks::verify(provider, &signed, body, "other"), "another secret's accepted");
});
