//! The registry's blobs in an S3 bucket ([`S3BlobStore`]), on `kiln-objstore`'s S3 store
//! (where the S3 settings, the connector and the probe at start live).
//!
//! Keys mirror the filesystem store under the store's prefix: `<prefix>/sha256/ab/ab…`. A
//! commit is one `PutObject` or a multipart upload completed at the end: a reader never sees
//! part of a blob.

use std::io;
use std::path::Path;
use std::time::SystemTime;

use async_trait::async_trait;
use kiln_objstore::{Objects, S3Objects};

pub use kiln_objstore::s3::{
    DEFAULT_PART_SIZE, MIN_PART_SIZE, S3Config, S3Credentials, S3Error, parse_credentials,
    read_credentials_file,
};

use crate::blobstore::{BlobRead, BlobStore};
use crate::names::{Algorithm, parse_digest};

/// A [`BlobStore`] on an S3 bucket.
#[derive(Debug, Clone)]
pub struct S3BlobStore {
    objects: S3Objects,
}

impl S3BlobStore {
    /// Sets up the store and probes the bucket ([`S3Objects::open`]): an unreachable
    /// endpoint, refused credentials or a missing bucket are an [`S3Error::Unusable`] within
    /// seconds. Nothing is written.
    pub async fn open(config: S3Config) -> Result<S3BlobStore, S3Error> {
        Ok(S3BlobStore { objects: S3Objects::open(config).await? })
    }

    /// The blobs under the keys of `objects` (a store already probed, maybe scoped).
    pub fn from_objects(objects: S3Objects) -> S3BlobStore {
        S3BlobStore { objects }
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &S3Config {
        self.objects.config()
    }

    /// The key of blob `digest` in the store: `<algorithm>/<first two hex digits>/<hex>`.
    pub fn key(&self, digest: &str) -> io::Result<String> {
        key_of(digest).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("`{digest}` is not a digest"))
        })
    }
}

/// The key of blob `digest`, if `digest` is one.
fn key_of(digest: &str) -> Option<String> {
    let algorithm = parse_digest(digest)?;
    let hex = &digest[algorithm.as_str().len() + 1..];
    Some(format!("{}/{}/{hex}", algorithm.as_str(), &hex[..2]))
}

/// The digest a listed key names, if it is a blob's key.
fn digest_of(key: &str) -> Option<String> {
    let mut parts = key.split('/');
    let (algorithm, dir, hex) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || dir.len() != 2 || !hex.starts_with(dir) {
        return None;
    }
    let digest = format!("{algorithm}:{hex}");
    parse_digest(&digest).map(|_| digest)
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn stat(&self, digest: &str) -> io::Result<Option<u64>> {
        Ok(self.objects.head(&self.key(digest)?).await?.map(|m| m.size))
    }

    async fn read(&self, digest: &str, range: Option<(u64, u64)>) -> io::Result<Option<BlobRead>> {
        let object = self.objects.get(&self.key(digest)?, range).await?;
        Ok(object.map(|o| BlobRead { size: o.size, body: o.body }))
    }

    async fn commit(&self, digest: &str, staged: &Path) -> io::Result<()> {
        let key = self.key(digest)?;
        if self.objects.head(&key).await?.is_some() {
            tokio::fs::remove_file(staged).await?;
            return Ok(());
        }
        self.objects.put_file(&key, staged).await
    }

    async fn delete(&self, digest: &str) -> io::Result<()> {
        self.objects.delete(&self.key(digest)?).await
    }

    async fn list(&self) -> io::Result<Vec<(String, SystemTime)>> {
        let mut out = Vec::new();
        for algorithm in Algorithm::ALL {
            for meta in self.objects.list(algorithm.as_str()).await? {
                if let Some(digest) = digest_of(&meta.key) {
                    out.push((digest, meta.modified));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::{digest_of, key_of};

    const HEX: &str = "ab34567890123456789012345678901234567890123456789012345678901234";

    #[test]
    fn keys_mirror_the_filesystem_layout() {
        let digest = format!("sha256:{HEX}");
        let key = format!("sha256/ab/{HEX}");
        assert_eq!(key_of(&digest), Some(key.clone()));
        assert_eq!(key_of("sha256:short"), None);
        assert_eq!(digest_of(&key), Some(digest));
        for other in [
            format!("sha256/cd/{HEX}"),
            format!("sha256/ab/{HEX}/x"),
            format!("md5/ab/{HEX}"),
            "sha256/ab/abc".to_string(),
        ] {
            assert_eq!(digest_of(&other), None, "{other}");
        }
    }
}
