//! Vulnerability scanning of the registry's images (docs/registry.md#vulnerability-scanning).
//!
//! [`Scanner`] reads an image's layers from the registry's blob store (an index: its
//! linux/amd64 manifest, else its first), hands them to `kiln_scan::packages_from_layers`,
//! matches the packages against an in-memory `kiln_scan::AdvisoryIndex` (loaded from the store
//! at start, rebuilt by each import) and stores the scan, its packages and its findings per
//! manifest digest. `worker.rs` scans every pushed manifest (the registry's push events; at
//! start and after a missed event, every manifest without a scan: the queue is the store).
//! `import.rs` imports OSV files and notifies (`vulnerability` registry events and webhook
//! deliveries) the images newly matched. `policy.rs` is the project image policy: the
//! registry's tag check (`latest`) and the deploys' check.
//!
//! Invariants: an import and the matching it causes hold the index's write lock, a scan's
//! matching and storing its read lock, so no scan stores findings of an index an import has
//! replaced; an import's advisories, changed findings, events and deliveries are one
//! transaction (`Store::import_advisories`), made only after every file was read.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use futures::StreamExt;
use futures::stream::BoxStream;
use kiln_registry::Registry;
use kiln_scan::{Advisory, AdvisoryIndex, Ecosystem, Package};
use kiln_store::{FindingRecord, PackageRecord, ScanOutcome, ScanRecord, Store, StoreError};
use serde_json::Value;
use tokio::sync::RwLock;

mod import;
pub mod policy;
pub mod worker;

/// The media types of an image's config; any other config makes a manifest an artifact
/// (a signature, an SBOM…), which is not scanned.
const IMAGE_CONFIGS: [&str; 2] =
    ["application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"];

/// The advisories in memory: by id, and indexed for matching.
#[derive(Debug, Default)]
struct Advisories {
    by_id: BTreeMap<String, Advisory>,
    index: Arc<AdvisoryIndex>,
}

impl Advisories {
    fn new(by_id: BTreeMap<String, Advisory>) -> Advisories {
        let index = Arc::new(AdvisoryIndex::new(by_id.values().cloned()));
        Advisories { by_id, index }
    }
}

#[derive(Debug)]
struct Inner {
    store: Store,
    registry: Arc<Registry>,
    advisories: RwLock<Advisories>,
}

/// The server's scanner (cheap to clone).
#[derive(Debug, Clone)]
pub struct Scanner {
    inner: Arc<Inner>,
}

/// What reading an image gave.
#[derive(Debug)]
enum Contents {
    Packages(Vec<Package>),
    Failed(String),
    Skipped(String),
}

impl Scanner {
    /// A scanner of `registry`'s images with no advisories yet (see [`Scanner::load`]).
    pub fn new(store: Store, registry: Arc<Registry>) -> Scanner {
        Scanner { inner: Arc::new(Inner { store, registry, advisories: RwLock::default() }) }
    }

    /// Loads the stored advisories into memory; returns how many. A stored advisory this
    /// version cannot read is left out with a warning (importing it again replaces it).
    pub async fn load(&self) -> Result<usize, StoreError> {
        let mut by_id = BTreeMap::new();
        for json in self.inner.store.advisories().await? {
            match serde_json::from_value::<Advisory>(json.clone()) {
                Ok(a) => {
                    by_id.insert(a.id.clone(), a);
                }
                Err(e) => tracing::warn!(
                    "stored advisory {} cannot be read and is not used (import it again): {e}",
                    json.get("id").and_then(serde_json::Value::as_str).unwrap_or("without an id")
                ),
            }
        }
        let n = by_id.len();
        *self.inner.advisories.write().await = Advisories::new(by_id);
        Ok(n)
    }

    /// How many advisories are loaded.
    pub async fn advisory_count(&self) -> usize {
        self.inner.advisories.read().await.by_id.len()
    }

    /// Scans manifest `digest` of `repository` now and stores the outcome (a failure too:
    /// its error is on the scan, earlier findings are kept).
    pub async fn scan(&self, repository: &str, digest: &str) -> Result<ScanRecord, StoreError> {
        let read = match self.inner.store.registry_manifest(repository, digest).await? {
            Some(m) => self.read(repository, &m.media_type, &m.content).await?,
            None => Contents::Failed(format!("manifest {digest} is not in `{repository}`")),
        };
        self.record(digest, read).await
    }

    /// Scans a manifest given whole (one not stored yet: a push being checked) and stores
    /// the outcome under `digest`.
    pub(crate) async fn scan_content(
        &self,
        repository: &str,
        digest: &str,
        media_type: &str,
        content: &[u8],
    ) -> Result<ScanRecord, StoreError> {
        let read = self.read(repository, media_type, content).await?;
        self.record(digest, read).await
    }

    async fn record(&self, digest: &str, read: Contents) -> Result<ScanRecord, StoreError> {
        match read {
            Contents::Packages(packages) => {
                // Matched and stored under the read lock: an import waits for it, then
                // matches these packages again.
                let advisories = self.inner.advisories.read().await;
                let findings = advisories.index.matches(&packages);
                let outcome = ScanOutcome::Scanned {
                    packages: packages.iter().map(package_record).collect(),
                    findings: findings.iter().map(finding_record).collect(),
                };
                let r = self.inner.store.record_scan(digest, &outcome).await?;
                drop(advisories);
                tracing::info!(
                    "scanned {digest}: {} packages, {} findings",
                    packages.len(),
                    findings.len()
                );
                Ok(r)
            }
            Contents::Failed(e) => {
                tracing::warn!("scan of {digest} failed: {e}");
                self.inner.store.record_scan(digest, &ScanOutcome::Failed(e)).await
            }
            Contents::Skipped(e) => {
                self.inner.store.record_scan(digest, &ScanOutcome::Skipped(e)).await
            }
        }
    }

    /// Reads the packages of a manifest of `repository`.
    async fn read(
        &self,
        repository: &str,
        media_type: &str,
        content: &[u8],
    ) -> Result<Contents, StoreError> {
        let Ok(json) = serde_json::from_slice::<Value>(content) else {
            return Ok(Contents::Failed("the manifest is not JSON".into()));
        };
        let mut json = json;
        let mut media_type = media_type.to_string();
        if let Some(children) = json.get("manifests").and_then(Value::as_array) {
            let Some(child) = pick_platform(children) else {
                return Ok(Contents::Skipped("an index without manifests".into()));
            };
            let Some(m) = self.inner.store.registry_manifest(repository, &child).await? else {
                return Ok(Contents::Failed(format!(
                    "manifest {child} named by the index is not in `{repository}`"
                )));
            };
            match serde_json::from_slice::<Value>(&m.content) {
                Ok(v) if v.get("manifests").is_none() => json = v,
                Ok(_) => return Ok(Contents::Skipped("an index of indexes".into())),
                Err(_) => return Ok(Contents::Failed(format!("manifest {child} is not JSON"))),
            }
            media_type = m.media_type;
        }
        let config = json.pointer("/config/mediaType").and_then(Value::as_str).unwrap_or("");
        if !IMAGE_CONFIGS.contains(&config) {
            return Ok(Contents::Skipped(format!(
                "not an image: a {media_type} whose config is `{config}`"
            )));
        }
        let layers: Vec<String> = json
            .get("layers")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter(|d| d.get("urls").and_then(Value::as_array).is_none_or(Vec::is_empty))
                    .filter_map(|d| d.get("digest").and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let blobs = self.inner.registry.blob_store().clone();
        for (i, layer) in layers.iter().enumerate() {
            match blobs.stat(layer).await {
                Ok(Some(_)) => {}
                Ok(None) => {
                    return Ok(Contents::Failed(format!(
                        "layer {} of {} ({layer}) is not in the registry's blob store",
                        i + 1,
                        layers.len()
                    )));
                }
                Err(e) => {
                    return Ok(Contents::Failed(format!("layer {layer} cannot be read: {e}")));
                }
            }
        }
        let handle = tokio::runtime::Handle::current();
        let read = tokio::task::spawn_blocking(move || {
            let readers = layers.into_iter().map(|digest| {
                let body: BoxStream<'static, std::io::Result<Bytes>> =
                    match handle.block_on(blobs.read(&digest, None)) {
                        Ok(Some(r)) => r.body,
                        Ok(None) => futures::stream::once(async move {
                            Err(std::io::Error::other(format!("layer {digest} vanished")))
                        })
                        .boxed(),
                        Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
                    };
                BlobReader { handle: handle.clone(), body, buf: Bytes::new() }
            });
            kiln_scan::packages_from_layers(readers)
        })
        .await;
        Ok(match read {
            Ok(Ok(packages)) => Contents::Packages(packages),
            Ok(Err(e)) => Contents::Failed(e.to_string()),
            Err(e) => Contents::Failed(format!("the scan stopped: {e}")),
        })
    }

    fn store(&self) -> &Store {
        &self.inner.store
    }
}

/// The manifest of an index to scan: linux/amd64's, else the first.
fn pick_platform(children: &[Value]) -> Option<String> {
    let digest = |v: &Value| v.get("digest").and_then(Value::as_str).map(str::to_string);
    children
        .iter()
        .find(|c| {
            c.pointer("/platform/os").and_then(Value::as_str) == Some("linux")
                && c.pointer("/platform/architecture").and_then(Value::as_str) == Some("amd64")
        })
        .and_then(digest)
        .or_else(|| children.first().and_then(digest))
}

/// A blob's byte stream read synchronously (inside `spawn_blocking`).
struct BlobReader {
    handle: tokio::runtime::Handle,
    body: BoxStream<'static, std::io::Result<Bytes>>,
    buf: Bytes,
}

impl Read for BlobReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.buf.is_empty() {
            match self.handle.block_on(self.body.next()) {
                Some(Ok(b)) => self.buf = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf.advance(n);
        Ok(n)
    }
}

/// A package as stored.
pub(crate) fn package_record(p: &Package) -> PackageRecord {
    PackageRecord {
        ecosystem: p.ecosystem.osv_name().to_string(),
        name: p.name.clone(),
        version: p.version.clone(),
        source: p.source.clone(),
        release: p.release.clone(),
    }
}

/// A stored package, if its ecosystem is one this version knows.
pub(crate) fn package_of(r: &PackageRecord) -> Option<Package> {
    Some(Package {
        ecosystem: Ecosystem::from_osv(&r.ecosystem)?,
        name: r.name.clone(),
        version: r.version.clone(),
        source: r.source.clone(),
        release: r.release.clone(),
    })
}

/// A finding as stored.
pub(crate) fn finding_record(f: &kiln_scan::Finding) -> FindingRecord {
    FindingRecord {
        advisory: f.advisory.clone(),
        aliases: f.aliases.clone(),
        summary: f.summary.clone(),
        severity: f.severity.to_string(),
        ecosystem: f.ecosystem.osv_name().to_string(),
        package: f.package.clone(),
        installed: f.installed.clone(),
        fixed: f.fixed.clone(),
        source: f.source.clone(),
    }
}

/// The API's finding.
pub fn finding_dto(f: FindingRecord) -> kiln_api::scan::Finding {
    kiln_api::scan::Finding {
        advisory: f.advisory,
        aliases: f.aliases,
        summary: f.summary,
        severity: f.severity,
        ecosystem: f.ecosystem,
        package: f.package,
        installed: f.installed,
        fixed: f.fixed,
        source: f.source,
    }
}

/// The severity of a stored finding (`Unknown` for a word this version does not know).
pub fn severity_of(f: &FindingRecord) -> kiln_scan::Severity {
    f.severity.parse().unwrap_or(kiln_scan::Severity::Unknown)
}
