//! Kiln's OCI registry: the distribution spec v1.1 under `/v2/` (pull, push, chunked uploads,
//! cross-repository mounts, tags, catalog, deletes, referrers), Docker schema 2 and OCI
//! manifests and indexes, the Docker token flow at `/auth/token`, content-addressed
//! deduplicated blobs behind the [`BlobStore`] trait, online garbage collection, and push
//! events (broadcast in-process, stored, delivered to webhooks through an outbox).
//!
//! Repositories are `<project>/<name>`: the project's Kiln tokens decide who may pull, push or
//! delete (see [`auth`]). Repositories, tags and manifests live in the server's database
//! (`kiln-store`); blob bytes in the blob store. The server mounts [`Registry::router`] and
//! passes an [`Authenticator`] for its tokens; this crate does not depend on the server.
//!
//! Invariants:
//! - a blob becomes visible only whole and digest-checked: uploads are staged files, verified,
//!   synced, then committed atomically ([`BlobStore::commit`]) before the database names them;
//!   a crash mid-upload leaves a staged file that no request serves and GC removes;
//! - a manifest is stored only if the repository holds every blob and manifest it names;
//! - garbage collection never deletes a blob a manifest names, nor one touched (uploaded,
//!   mounted, checked by a pusher) within the grace window; commits and collection of blob
//!   files are serialised by one lock, so a re-upload racing a collection keeps its file.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use kiln_store::{ProjectId, Store};
use tokio::sync::{Notify, RwLock, broadcast};

pub mod auth;
pub mod blobstore;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod error;
pub mod gc;
mod http;
pub mod manifest;
pub mod names;
pub mod s3;
mod upload;
pub mod webhooks;

pub use auth::{Authenticator, Keys, Principal};
pub use blobstore::{BlobRead, BlobStore, FsBlobStore};
pub use error::{Code, RegError, RegResult};
pub use gc::GcReport;
/// A manifest push: repository, tag, digest, who.
pub use kiln_store::RegistryEvent as PushEvent;
pub use s3::{S3BlobStore, S3Config, S3Credentials};

/// A check the server adds to manifest pushes (the image policy): asked before a manifest
/// pushed with a tag is stored; an `Err` refuses the push with its message (`DENIED`).
#[async_trait::async_trait]
pub trait TagPolicy: Send + Sync + std::fmt::Debug {
    /// Whether manifest `digest` (`media_type`, `content`) of `repository` may be stored
    /// under `tag`. What it names may be missing (the store refuses that after this check):
    /// a check that cannot read it should let the push go on.
    async fn check_tag(
        &self,
        repository: &str,
        tag: &str,
        digest: &str,
        media_type: &str,
        content: &[u8],
    ) -> Result<(), String>;
}

/// How long cached project ids and repository visibility are trusted.
const CACHE_TTL: Duration = Duration::from_secs(5);

/// How to open a registry.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Its directory: `uploads/` (staged uploads), `registry.key`, and `blobs/` for the
    /// filesystem blob store.
    pub root: PathBuf,
    /// The service name in challenges and tokens.
    pub service: String,
    /// Blobs and untagged manifests younger than this are never collected.
    pub gc_grace: Duration,
    /// How often the background collection runs (`None`: only on request).
    pub gc_interval: Option<Duration>,
    /// The first wait before a failed webhook delivery is tried again; it doubles with each
    /// failure, up to 10 minutes (see [`webhooks::backoff`]).
    pub webhook_backoff: Duration,
    /// Whether webhooks may be sent to loopback, link-local and private addresses (an
    /// admin's choice: `kiln server --allow-private-webhooks`); default no.
    pub webhook_private_targets: bool,
}

impl RegistryConfig {
    /// Defaults for a registry in `root`: service `kiln`, a one-hour grace window, collection
    /// every six hours.
    pub fn new(root: impl Into<PathBuf>) -> RegistryConfig {
        RegistryConfig {
            root: root.into(),
            service: "kiln".into(),
            gc_grace: Duration::from_secs(3600),
            gc_interval: Some(Duration::from_secs(6 * 3600)),
            webhook_backoff: Duration::from_secs(1),
            webhook_private_targets: false,
        }
    }
}

/// The registry: shared by every request.
#[derive(Debug)]
pub struct Registry {
    store: Store,
    blobs: Arc<dyn BlobStore>,
    keys: Keys,
    auth: Arc<dyn Authenticator>,
    config: RegistryConfig,
    uploads_dir: PathBuf,
    uploads: upload::Sessions,
    projects: Mutex<HashMap<String, (Option<ProjectId>, Instant)>>,
    public: Mutex<HashMap<String, (bool, Instant)>>,
    /// Held (shared) around every blob commit, (exclusive) while collection deletes files.
    gc_lock: RwLock<()>,
    events: broadcast::Sender<PushEvent>,
    webhook_wake: Notify,
    http: reqwest::Client,
    tag_policy: OnceLock<Arc<dyn TagPolicy>>,
}

impl Registry {
    /// Why a webhook may not be sent to `url`, under this registry's setting
    /// ([`webhooks::target_refusal`]).
    pub async fn webhook_refusal(&self, url: &str) -> Option<String> {
        webhooks::target_refusal(url, self.config.webhook_private_targets).await
    }

    /// Opens the registry in `config.root` with the filesystem blob store at `root/blobs`.
    pub fn open(
        store: Store,
        auth: Arc<dyn Authenticator>,
        config: RegistryConfig,
    ) -> std::io::Result<Arc<Registry>> {
        let blobs = Arc::new(FsBlobStore::open(config.root.join("blobs"))?);
        Registry::with_blob_store(store, auth, blobs, config)
    }

    /// Opens the registry with another blob store. Uploads are still staged in
    /// `config.root/uploads`.
    pub fn with_blob_store(
        store: Store,
        auth: Arc<dyn Authenticator>,
        blobs: Arc<dyn BlobStore>,
        config: RegistryConfig,
    ) -> std::io::Result<Arc<Registry>> {
        let uploads_dir = config.root.join("uploads");
        std::fs::create_dir_all(&uploads_dir)?;
        let keys = Keys::load_or_create(&config.root, &config.service)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            // A redirect could lead inward, past the check of the webhook's URL.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Arc::new(Registry {
            store,
            blobs,
            keys,
            auth,
            config,
            uploads_dir,
            uploads: upload::Sessions::default(),
            projects: Mutex::default(),
            public: Mutex::default(),
            gc_lock: RwLock::new(()),
            events: broadcast::channel(1024).0,
            webhook_wake: Notify::new(),
            http,
            tag_policy: OnceLock::new(),
        }))
    }

    /// The `/v2/` API and the token endpoint `/auth/token`, with their own error bodies.
    pub fn router<S: Clone + Send + Sync + 'static>(self: &Arc<Self>) -> axum::Router<S> {
        http::router(self.clone())
    }

    /// Delivers due webhook deliveries now rather than at the next poll (call it after
    /// queueing some outside the registry, e.g. run events).
    pub fn wake_webhooks(&self) {
        self.webhook_wake.notify_one();
    }

    /// Every manifest push from now on (a slow subscriber misses the oldest ones).
    pub fn subscribe(&self) -> broadcast::Receiver<PushEvent> {
        self.events.subscribe()
    }

    /// A token a job uses to push to its project's repositories (developer rights on the
    /// project), valid for `ttl`. Use it as the password of `docker login`.
    pub fn job_token(&self, project: ProjectId, name: &str, ttl: Duration) -> String {
        self.keys.job_token(project, name, ttl)
    }

    /// A token an agent pulls a task's images from its project's repositories with (pull
    /// only), valid for `ttl`.
    pub fn pull_token(&self, project: ProjectId, name: &str, ttl: Duration) -> String {
        self.keys.pull_token(project, name, ttl)
    }

    /// The blob store (to read image layers).
    pub fn blob_store(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    /// Sets the check of tagged manifest pushes (once; later calls are ignored).
    pub fn set_tag_policy(&self, policy: Arc<dyn TagPolicy>) {
        let _ = self.tag_policy.set(policy);
    }

    /// The database.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Marks repository `name` public (anonymous pulls) or private.
    pub async fn set_public(
        &self,
        name: &str,
        public: bool,
    ) -> kiln_store::Result<kiln_store::RegistryRepository> {
        let repo = self.store.registry_set_public(name, public).await?;
        lock(&self.public).insert(name.to_string(), (public, Instant::now()));
        Ok(repo)
    }

    /// Starts the background workers (periodic collection, webhook delivery) until `stop`.
    pub fn spawn_workers(self: &Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        if let Some(every) = self.config.gc_interval {
            let reg = self.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        _ = tick.tick() => {}
                    }
                    match reg.gc(reg.config.gc_grace).await {
                        Ok(r) => tracing::info!(
                            "registry gc: {} manifests, {} blobs, {} bytes freed",
                            r.manifests.len(),
                            r.blobs,
                            r.bytes_freed
                        ),
                        Err(e) => tracing::warn!("registry gc failed: {e}"),
                    }
                }
            });
        }
        let reg = self.clone();
        tokio::spawn(async move { webhooks::deliver_loop(reg, stop).await });
    }

    /// The project id of a project name (cached briefly); `None` if there is no such project.
    async fn project_id(&self, project: &str) -> RegResult<Option<ProjectId>> {
        if let Some((id, at)) = lock(&self.projects).get(project).copied()
            && at.elapsed() < CACHE_TTL
        {
            return Ok(id);
        }
        let id = match self.store.project(project).await {
            Ok(p) => Some(p.id),
            Err(kiln_store::StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        lock(&self.projects).insert(project.to_string(), (id, Instant::now()));
        Ok(id)
    }

    /// Whether repository `name` is public (cached briefly).
    async fn is_public(&self, name: &str) -> RegResult<bool> {
        if let Some((p, at)) = lock(&self.public).get(name).copied()
            && at.elapsed() < CACHE_TTL
        {
            return Ok(p);
        }
        let public = self.store.registry_repository(name).await?.is_some_and(|r| r.public);
        lock(&self.public).insert(name.to_string(), (public, Instant::now()));
        Ok(public)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
