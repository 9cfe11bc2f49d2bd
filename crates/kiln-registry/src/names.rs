//! Repository names, tags and digests as the distribution spec defines them; the digest
//! algorithms this registry computes and verifies (sha256, the canonical one, and sha512).

use sha2::{Digest as _, Sha256, Sha512};

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

/// A digest algorithm this registry computes and verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `sha256`: the canonical algorithm (manifests pushed by tag, the default of uploads).
    Sha256,
    /// `sha512`.
    Sha512,
}

impl Algorithm {
    /// Every supported algorithm.
    pub const ALL: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Sha512];

    /// The algorithm named `name` (`sha256`, `sha512`), if supported.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }

    /// Its name, as written before the `:` of a digest.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// The number of hex digits of its digests.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    /// A fresh incremental hasher.
    pub fn hasher(self) -> Hasher {
        match self {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    /// `<algorithm>:<hex>` of `bytes`.
    pub fn digest(self, bytes: &[u8]) -> String {
        let mut h = self.hasher();
        h.update(bytes);
        h.finish()
    }
}

/// An incremental hash of one of the supported algorithms.
#[derive(Clone)]
pub enum Hasher {
    /// sha256.
    Sha256(Sha256),
    /// sha512.
    Sha512(Sha512),
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hasher({})", self.algorithm().as_str())
    }
}

impl Hasher {
    /// Its algorithm.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// Hashes `bytes` after what it already hashed.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    /// The digest, `<algorithm>:<lowercase hex>`.
    pub fn finish(self) -> String {
        match self {
            Hasher::Sha256(h) => format!("sha256:{}", hex::encode(h.finalize())),
            Hasher::Sha512(h) => format!("sha512:{}", hex::encode(h.finalize())),
        }
    }
}

/// The algorithm of a well-formed digest of a supported algorithm: `sha256:` and 64, or
/// `sha512:` and 128, lowercase hex digits. `None` for anything else.
pub fn parse_digest(digest: &str) -> Option<Algorithm> {
    let (name, hex) = digest.split_once(':')?;
    let algorithm = Algorithm::from_name(name)?;
    let ok = hex.len() == algorithm.hex_len()
        && hex.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
    ok.then_some(algorithm)
}

/// Whether `digest` has the grammar of the image spec (`algorithm ":" encoded`), whatever its
/// algorithm.
fn is_digest_shaped(digest: &str) -> bool {
    let Some((algorithm, encoded)) = digest.split_once(':') else { return false };
    let components_ok = algorithm
        .split(['+', '.', '_', '-'])
        .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    components_ok
        && !encoded.is_empty()
        && encoded.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'))
}

/// Checks a digest (see [`parse_digest`]) and returns its algorithm. A malformed digest, and
/// one of an algorithm this registry cannot verify, are `DIGEST_INVALID` (400).
pub fn check_digest(digest: &str) -> RegResult<Algorithm> {
    if let Some(algorithm) = parse_digest(digest) {
        return Ok(algorithm);
    }
    let message = match digest.split_once(':').map(|(a, _)| Algorithm::from_name(a)) {
        Some(Some(a)) => format!(
            "digest `{digest}` is not valid: expected `{}:` and {} lowercase hex digits",
            a.as_str(),
            a.hex_len()
        ),
        Some(None) if is_digest_shaped(digest) => format!(
            "digest `{digest}`: algorithm `{}` is not supported (use sha256 or sha512)",
            digest.split_once(':').map_or("", |(a, _)| a)
        ),
        _ => format!(
            "digest `{digest}` is not valid: expected `sha256:` and 64 or `sha512:` and 128 \
             lowercase hex digits"
        ),
    };
    Err(RegError::new(Code::DigestInvalid, message))
}

/// `sha256:<hex>` of `bytes` (the canonical digest).
pub fn sha256_digest(bytes: &[u8]) -> String {
    Algorithm::Sha256.digest(bytes)
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
        let long = Algorithm::Sha512.digest(b"x");
        assert_eq!(long.len(), "sha512:".len() + 128);
        assert_eq!(check_digest(&long).unwrap(), Algorithm::Sha512);
        assert_eq!(check_digest(&sha256_digest(b"x")).unwrap(), Algorithm::Sha256);
        let e = check_digest("blake3:abcd").unwrap_err();
        assert_eq!(e.code, Code::DigestInvalid);
        assert!(e.message.contains("not supported"), "{}", e.message);
        assert!(check_digest(&long.to_uppercase()).is_err());
        assert!(check_digest("nocolon").is_err());
        assert!(parse_digest("sha512:abc").is_none());
    }

    #[test]
    fn hashers_match_one_shot_digests() {
        for a in Algorithm::ALL {
            let mut h = a.hasher();
            h.update(b"hello ");
            h.update(b"world");
            assert_eq!(h.algorithm(), a);
            assert_eq!(h.finish(), a.digest(b"hello world"));
        }
        assert_eq!(
            Algorithm::Sha256.digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
