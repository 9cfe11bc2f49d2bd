//! The content digest of a set of rendered files: the release's identity for "did anything
//! change" and the delivery's `ETag`.

use sha2::{Digest, Sha256};

use crate::Files;

/// `sha256:<hex>` over every file's name and bytes, in name order, each length-prefixed (so
/// moving bytes from one file to another, or renaming a file, changes it).
pub fn digest(files: &Files) -> String {
    let mut h = Sha256::new();
    h.update((files.len() as u64).to_le_bytes());
    for (name, text) in files {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((text.len() as u64).to_le_bytes());
        h.update(text.as_bytes());
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(pairs: &[(&str, &str)]) -> Files {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn same_files_same_digest_any_change_another() {
        let a = files(&[("a.yml", "x: 1\n"), ("b.yml", "y: 2\n")]);
        assert_eq!(digest(&a), digest(&a.clone()));
        assert!(digest(&a).starts_with("sha256:") && digest(&a).len() == 7 + 64);
        let variants = [
            files(&[("a.yml", "x: 1\n"), ("b.yml", "y: 3\n")]),
            files(&[("a.yml", "x: 1\ny"), ("b.yml", ": 2\n")]),
            files(&[("a.yml", "x: 1\n"), ("c.yml", "y: 2\n")]),
            files(&[("a.yml", "x: 1\n")]),
            files(&[]),
        ];
        for v in &variants {
            assert_ne!(digest(&a), digest(v), "{v:?}");
        }
    }
}
