//! Online garbage collection: untagged manifests and unreferenced blobs are removed while
//! pushes go on. Nothing touched within the grace window is collected, so a push in flight
//! (blobs uploaded or checked, manifest not yet pushed) never loses a blob.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Registry;
use crate::error::RegResult;

/// What one collection freed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    /// Untagged manifests deleted, as `repository@digest`.
    pub manifests: Vec<String>,
    /// Blobs deleted.
    pub blobs: u64,
    /// Bytes freed in the blob store.
    pub bytes_freed: u64,
    /// Blob files no database row named (left by a crash), deleted.
    pub orphans: u64,
    /// Abandoned upload sessions removed.
    pub uploads: u64,
}

impl Registry {
    /// Collects garbage older than `grace`: untagged manifests no index names (and whose
    /// subject is gone), then blobs no manifest names, then orphaned blob files and abandoned
    /// uploads.
    pub async fn gc(&self, grace: Duration) -> RegResult<GcReport> {
        let cutoff =
            chrono::Utc::now() - chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        let mut report = GcReport::default();
        {
            // Commits wait while rows and files go, so a blob re-uploaded meanwhile keeps
            // its file.
            let _exclusive = self.gc_lock.write().await;
            let rows = self.store.registry_gc(cutoff).await?;
            report.manifests = rows.manifests;
            for (digest, size) in rows.blobs {
                self.blobs.delete(&digest).await?;
                report.blobs += 1;
                report.bytes_freed += size;
            }
        }
        // Files committed but never recorded (a crash in between), past the window.
        let known: std::collections::HashSet<String> =
            self.store.registry_blob_digests().await?.into_iter().collect();
        for (digest, modified) in self.blobs.list().await? {
            let old = modified.elapsed().is_ok_and(|age| age >= grace);
            if old && !known.contains(&digest) {
                let _exclusive = self.gc_lock.write().await;
                if self.store.registry_blob(&digest).await?.is_none() {
                    if let Ok(Some(size)) = self.blobs.stat(&digest).await {
                        report.bytes_freed += size;
                    }
                    self.blobs.delete(&digest).await?;
                    report.orphans += 1;
                }
            }
        }
        report.uploads = self.sweep_uploads(grace).await? as u64;
        Ok(report)
    }
}
