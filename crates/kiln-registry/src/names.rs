//! Repository names, tags and digests as the distribution spec defines them.

use sha2::{Digest as _, Sha256};

use crate::error::{Code, RegError, RegResult};

/// Longest repository name.
const MAX_NAME: usize = 255;

/// Checks a repository name: `/`-separated components of lowercase letters and digits joined
/// by `.`, `_`, `__` or dashes, at least two components (`<project>/<name>`), at most 255
/// bytes. Returns the project (the first component).
pub fn check_repository(name: &str) -> RegResult<&str> {
    let parts: Vec<&str> = name.split('/').collect();
    let ok = name.len() <= MAX_NAME && parts.len() >= 2 && parts.iter().all(|p| component(p));
    if !ok {
        return Err(RegError::new(
            Code::NameInvalid,
            format!(
                "repository name `{name}` is not valid: use `<project>/<name>` with lowercase \
                 letters, digits and `.`, `_`, `-` separators, at most {MAX_NAME} characters"
            ),
        ));
    }
    Ok(parts[0])
}

fn component(p: &str) -> bool {
    let bytes = p.as_bytes();
    if bytes.is_empty()
        || !bytes[0].is_ascii_alphanumeric()
        || !bytes[bytes.len() - 1].is_ascii_alphanumeric()
    {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            i += 1;
            continue;
        }
        // A separator run: `.`, `_`, `__` or any number of `-`.
        let start = i;
        while i < bytes.len() && matches!(bytes[i], b'.' | b'_' | b'-') {
            i += 1;
        }
        let sep = &p[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
        if i < bytes.len() && !(bytes[i].is_ascii_lowercase() || bytes[i].is_ascii_digit()) {
            return false;
        }
    }
    true
}

/// Whether `tag` is a valid tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn is_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// Checks a digest: `sha256:` and 64 lowercase hex digits (the only algorithm stored).
pub fn check_digest(digest: &str) -> RegResult<()> {
    if let Some(hex) = digest.strip_prefix("sha256:")
        && hex.len() == 64
        && hex.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    {
        return Ok(());
    }
    let message = if digest.starts_with("sha512:") || digest.starts_with("blake3:") {
        format!("digest `{digest}`: only sha256 digests are supported")
    } else {
        format!("digest `{digest}` is not valid: expected `sha256:` and 64 lowercase hex digits")
    };
    Err(RegError::new(Code::DigestInvalid, message))
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names() {
        assert_eq!(check_repository("team/app").unwrap(), "team");
        assert_eq!(check_repository("team/a.b/c__d/e--f_g").unwrap(), "team");
        for bad in ["app", "Team/app", "team/", "team//app", "team/-app", "team/a..b", "team/a___b"]
        {
            assert!(check_repository(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tags_and_digests() {
        assert!(is_tag("v1.2.3-rc_1"));
        assert!(!is_tag(".hidden"));
        assert!(!is_tag(&"a".repeat(129)));
        assert!(check_digest(&sha256_digest(b"x")).is_ok());
        assert!(check_digest("sha256:ABC").is_err());
        assert_eq!(check_digest("sha512:00").unwrap_err().code, Code::DigestInvalid);
    }
}
