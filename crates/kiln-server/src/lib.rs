//! Kiln's server: pipelines and runs kept in the store, run coordination through the engine,
//! job attempts leased to agents, logs with live follow, artifacts and caches in a blob
//! directory, project secrets, schedules, services and the scraping of their metrics,
//! environments and the config center, deploys (rollbacks, promotions), bearer-token auth,
//! the REST API under `/api/v1` with its OpenAPI document, Prometheus metrics, and the OCI
//! registry (`kiln-registry`) at `/v2/`.
//!
//! The server never runs a container itself and depends on no executor: agents (the embedded
//! one included, wired by the `kiln` binary) lease attempts over HTTP. See ARCHITECTURE.md.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_logs::{LogError, LogStore};
use kiln_store::{NewToken, Role, Store, StoreError};
use tokio_util::sync::CancellationToken;

pub mod arrays;
pub mod auth;
pub mod blobs;
pub mod config_center;
pub mod coord;
pub mod deploys;
pub mod dispatch;
pub mod environments;
pub mod error;
pub mod gc;
pub mod metrics;
pub mod plans;
pub mod pool;
pub mod registry;
pub mod reports;
pub mod routes;
pub mod run_events;
pub mod scans;
pub mod schedules;
pub mod scrape;
pub mod secrets;
pub mod services;
pub mod stats;
pub mod storage;
pub mod task_token;
pub mod triggers;
pub mod usage;
pub mod webhooks;

use coord::Coord;
use dispatch::Dispatch;
pub use gc::GcConfig;
use metrics::Metrics;
use secrets::{SecretBox, SecretError};

/// Why [`start`] could not start a server.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory could not be created.
    #[error("create data directory `{}`: {source}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// [`ServerConfig::database`] is not a PostgreSQL URL.
    #[error(
        "the database must be a postgres:// URL (leave it unset for SQLite in the data directory)"
    )]
    DatabaseUrl,
    /// The database could not be opened, migrated or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The log directory could not be opened.
    #[error(transparent)]
    Logs(#[from] LogError),
    /// The blob directory could not be opened.
    #[error("blob directory: {0}")]
    Blobs(std::io::Error),
    /// The secret key could not be loaded or created.
    #[error(transparent)]
    Secrets(#[from] SecretError),
    /// The first admin token could not be written.
    #[error("write `{}`: {source}", path.display())]
    AdminToken {
        /// The token file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The system gave no random bytes for the agent secret.
    #[error("no randomness: {0}")]
    Randomness(String),
    /// The listen address could not be bound.
    #[error("listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The registry's directories could not be opened.
    #[error("open the registry: {0}")]
    Registry(std::io::Error),
    /// The registry's S3 blob store is unusable (unreachable endpoint, refused credentials,
    /// missing bucket), found by a probe before anything is stored.
    #[error(transparent)]
    BlobStore(#[from] kiln_registry::s3::S3Error),
    /// A pipeline's stored schedules could not be brought in step with it.
    #[error("schedules of pipeline {pipeline}: {message}")]
    Schedules {
        /// `project/name`.
        pipeline: String,
        /// What went wrong.
        message: String,
    },
}

/// Everything a request handler can reach.
#[derive(Debug)]
pub struct AppState {
    /// Database.
    pub store: Store,
    /// Job logs.
    pub logs: LogStore,
    /// Artifacts and caches.
    pub blobs: blobs::Blobs,
    /// Runs.
    pub coord: Coord,
    /// Leases.
    pub dispatch: Arc<Dispatch>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Secret encryption.
    pub secrets: Arc<SecretBox>,
    /// Verified tokens.
    pub tokens: auth::TokenCache,
    /// The registry's check of Kiln tokens (told of revokes).
    pub token_auth: Arc<registry::TokenAuth>,
    /// The embedded agent's bearer secret (this process only, never stored).
    pub agent_secret: String,
    /// Queue and pool samples of the last hour.
    pub stats: stats::History,
    /// The OCI registry (`/v2/`, `/auth/token`).
    pub registry: Arc<kiln_registry::Registry>,
    /// `host:port` of the registry as jobs reach it (`KILN_REGISTRY`).
    pub registry_host: String,
    /// The schedules' task (`on: schedule:`).
    pub scheduler: schedules::Scheduler,
    /// Services and their instances.
    pub services: services::Services,
    /// Checks the discovery tokens of jobs and instances.
    pub task_tokens: task_token::TaskTokens,
    /// Metric rules and what they scraped.
    pub scraper: scrape::Scraper,
    /// Environments of projects and their variables.
    pub environments: environments::Environments,
    /// The config center: applications' config, releases and their delivery.
    pub config: config_center::ConfigCenter,
    /// Deploys of services to environments, rollbacks and promotions.
    pub deploys: deploys::Deploys,
    /// Vulnerability scanning of the registry's images.
    pub scanner: scans::Scanner,
    /// [`ServerConfig::crash_after_claim`]: a fault for tests only.
    #[doc(hidden)]
    pub crash_after_claim: bool,
    /// The garbage collector's limits.
    pub gc: GcConfig,
    /// Held by a garbage collection pass.
    pub gc_lock: gc::GcLock,
    /// The data directory and the database, checked before each write of the API.
    pub storage: storage::Storage,
}

/// Shared state of the API.
pub type App = Arc<AppState>;

/// How to start a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Data directory: `kiln.db` (unless [`ServerConfig::database`] is set), `logs/`,
    /// `blobs/`, `secret.key`.
    pub data: PathBuf,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// A PostgreSQL database (`postgres://user[:password]@host[:port]/db`) to keep the state
    /// in instead of SQLite at `<data>/kiln.db`; its schema is migrated on start. Logs, blobs
    /// and the secret key stay in the data directory either way (the registry's blobs unless
    /// [`ServerConfig::registry_blobs`] is set).
    pub database: Option<String>,
    /// An agent that has not polled for this long is lost: its node shows `lost` and its
    /// attempts fail as "agent lost" (their jobs' retry policy decides what follows).
    pub agent_lost_after: Duration,
    /// `host:port` at which jobs reach the registry (`KILN_REGISTRY`); default: the listen
    /// address (`127.0.0.1:port` when listening on every address). Set it to an address
    /// containers can reach when jobs push images.
    pub registry_host: Option<String>,
    /// A fault for tests only: the server stops handling a trigger right after its claim is
    /// stored, before the claimed runs are created, as if the process died there (a webhook
    /// delivery is answered 500; the scheduler task ends). What a start after such a crash
    /// does is what the tests check. Never set outside tests.
    #[doc(hidden)]
    pub crash_after_claim: bool,
    /// Limits of the caches and artifacts, and the garbage collector that keeps them.
    pub gc: GcConfig,
    /// The first wait before a failed webhook delivery is tried again (it doubles with each
    /// failure, up to 10 minutes); default 1 s. Tests shorten it.
    pub webhook_backoff: Duration,
    /// Whether webhooks may target loopback, link-local and private addresses (default no:
    /// a project admin could otherwise make the server call its own network, or a cloud
    /// metadata service).
    pub allow_private_webhooks: bool,
    /// Where the registry keeps blob bytes: `None` (the default) in the data directory
    /// (`<data>/registry/blobs`), or an S3 bucket (`kiln server --blob-store s3://…`), probed
    /// at start.
    pub registry_blobs: Option<kiln_registry::S3Config>,
}

impl ServerConfig {
    /// The defaults for `data` and `listen`: SQLite in the data directory, agents lost after
    /// 30 s, the garbage collector's defaults ([`GcConfig::default`]).
    pub fn new(data: PathBuf, listen: SocketAddr) -> ServerConfig {
        ServerConfig {
            data,
            listen,
            database: None,
            agent_lost_after: Duration::from_millis(kiln_api::agent::LEASE_TTL_MS),
            registry_host: None,
            crash_after_claim: false,
            gc: GcConfig::default(),
            webhook_backoff: Duration::from_secs(1),
            allow_private_webhooks: false,
            registry_blobs: None,
        }
    }
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// `http://addr`.
    pub url: String,
    /// On the first start only: the admin token's secret (also in `<data>/admin.token`).
    pub first_admin_token: Option<String>,
    /// The secret the embedded agent authenticates with.
    pub agent_token: String,
    /// Runs resumed from an earlier start.
    pub resumed: usize,
    /// The state, for tests and the binary.
    pub app: App,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    scheduler: tokio::task::JoinHandle<()>,
    gc: tokio::task::JoinHandle<()>,
    scrapes: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Stops accepting requests and waits for the listener to close.
    pub async fn stop(self) {
        self.app.coord.stop();
        self.shutdown.cancel();
        let _ = self.task.await;
        let _ = self.scheduler.await;
        let _ = self.gc.await;
        let _ = self.scrapes.await;
    }

    /// Waits until the server stops (it runs until [`Server::stop`] or an error).
    pub async fn wait(self) {
        let _ = self.task.await;
        self.app.coord.stop();
        self.shutdown.cancel();
        let _ = self.scheduler.await;
        let _ = self.gc.await;
        let _ = self.scrapes.await;
    }
}

/// Keeps the data directory from other users (and from process-executor jobs, which run as
/// `nobody` when the server is root): the directory itself is `0711` (no listing), each of
/// its files `0600` and directories `0700`, except the embedded agent's work directory
/// `agent/`, whose service instances read their config files as the jobs' user.
fn tighten_data_dir(data: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = |m| std::fs::Permissions::from_mode(m);
    std::fs::set_permissions(data, mode(0o711))?;
    for entry in std::fs::read_dir(data)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if entry.file_name() == "agent" || kind.is_symlink() {
            continue;
        }
        std::fs::set_permissions(entry.path(), mode(if kind.is_dir() { 0o700 } else { 0o600 }))?;
    }
    Ok(())
}

/// Opens (or creates) the data directory and the database (SQLite in it, or the PostgreSQL
/// one of [`ServerConfig::database`]), recovers unfinished runs, creates the runs of triggers
/// claimed before a crash (webhook deliveries, schedule fires) and starts serving.
pub async fn start(config: ServerConfig) -> Result<Server, StartError> {
    // First, before anything is created or stored: a wrong S3 endpoint, key or bucket
    // stops the start here, in seconds.
    let registry_blobs = match &config.registry_blobs {
        Some(s3) => Some(kiln_registry::S3BlobStore::open(s3.clone()).await?),
        None => None,
    };
    let data = &config.data;
    std::fs::create_dir_all(data)
        .map_err(|source| StartError::DataDir { path: data.clone(), source })?;
    let store = match &config.database {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Store::connect_postgres(url).await?
        }
        Some(_) => return Err(StartError::DatabaseUrl),
        None => Store::open(data.join("kiln.db")).await?,
    };
    let logs = LogStore::open(data.join("logs"))?;
    let blobs = blobs::Blobs::open(data.join("blobs")).map_err(StartError::Blobs)?;
    let secrets = Arc::new(SecretBox::load_or_create(data)?);
    let metrics = Arc::new(Metrics::new());
    let dispatch = Arc::new(Dispatch::new(config.agent_lost_after));
    dispatch.load_nodes(&store.nodes().await?);
    let first_admin_token = first_admin(&store, data).await?;
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| StartError::Randomness(e.to_string()))?;
    let agent_secret = format!("kiln_agent_{}", hex::encode(secret));
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Listen { addr: config.listen, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| StartError::Listen { addr: config.listen, source })?;
    let token_auth = Arc::new(registry::TokenAuth::load(store.clone()).await?);
    let registry_config = kiln_registry::RegistryConfig {
        webhook_backoff: config.webhook_backoff,
        webhook_private_targets: config.allow_private_webhooks,
        ..kiln_registry::RegistryConfig::new(data.join("registry"))
    };
    let registry = match registry_blobs {
        Some(s3) => kiln_registry::Registry::with_blob_store(
            store.clone(),
            token_auth.clone(),
            Arc::new(s3),
            registry_config,
        ),
        None => kiln_registry::Registry::open(store.clone(), token_auth.clone(), registry_config),
    }
    .map_err(StartError::Registry)?;
    if let Err(e) = tighten_data_dir(data) {
        tracing::warn!("could not restrict the permissions of {}: {e}", data.display());
    }
    let registry_host = match &config.registry_host {
        Some(host) => host.clone(),
        None if addr.ip().is_unspecified() => format!("127.0.0.1:{}", addr.port()),
        None => addr.to_string(),
    };
    // Tasks reach the server where they reach its registry.
    let task_tokens = task_token::TaskTokens::new(&secrets, format!("http://{registry_host}"))
        .with_registry(registry.clone(), registry_host.clone());
    let environments = environments::Environments::new(store.clone(), secrets.clone());
    let config_center = config_center::ConfigCenter::new(store.clone());
    let services = services::Services::new(
        store.clone(),
        logs.clone(),
        dispatch.clone(),
        metrics.clone(),
        task_tokens.clone(),
        (environments.clone(), config_center.clone()),
    );
    let scraper = scrape::Scraper::new(store.clone(), services.clone(), metrics.clone());
    let shutdown = CancellationToken::new();
    let scanner = scans::Scanner::new(store.clone(), registry.clone());
    scanner.load().await?;
    registry.set_tag_policy(Arc::new(scanner.clone()));
    let deploys = deploys::Deploys::new(
        store.clone(),
        services.clone(),
        config_center.clone(),
        registry_host.clone(),
        shutdown.clone(),
    )
    .with_scanner(scanner.clone());
    let coord = Coord::new(coord::CoordParts {
        store: store.clone(),
        logs: logs.clone(),
        dispatch: dispatch.clone(),
        metrics: metrics.clone(),
        secrets: secrets.clone(),
        registry: registry.clone(),
        registry_host: registry_host.clone(),
        services: services.clone(),
        environments: environments.clone(),
        deploys: deploys.clone(),
    });
    let storage = storage::Storage::new(data, &store);
    let app = Arc::new(AppState {
        environments,
        config: config_center,
        deploys: deploys.clone(),
        scanner: scanner.clone(),
        services: services.clone(),
        task_tokens,
        scraper: scraper.clone(),
        store,
        logs,
        blobs,
        coord: coord.clone(),
        dispatch: dispatch.clone(),
        metrics,
        secrets,
        tokens: auth::TokenCache::default(),
        token_auth,
        agent_secret: agent_secret.clone(),
        stats: stats::History::default(),
        registry,
        registry_host,
        scheduler: schedules::Scheduler::default(),
        crash_after_claim: config.crash_after_claim,
        gc: config.gc.clone(),
        gc_lock: gc::GcLock::default(),
        storage,
    });
    routes::quotas::load(&app).await?;
    // Services first: a recovered run takes its service pools back, and pools whose run
    // ended while the server was down are deleted before any run resumes.
    services.recover().await?;
    coord.sweep_pools().await?;
    // Running deployments wait for their services' versions again (never a second one).
    deploys.recover().await?;
    let resumed = coord.recover().await?;
    triggers::recover_intents(&app).await?;
    spawn_reaper(app.clone(), shutdown.clone());
    stats::spawn_sampler(app.clone(), shutdown.clone());
    app.registry.spawn_workers(shutdown.clone());
    triggers::spawn_image_triggers(app.clone(), shutdown.clone());
    scans::worker::spawn(scanner, shutdown.clone());
    schedules::reconcile(&app).await?;
    let scheduler = schedules::spawn(app.clone(), shutdown.clone());
    let gc = gc::spawn(app.clone(), shutdown.clone());
    let scrapes = scrape::spawn(scraper, shutdown.clone());
    let feed_app = app.clone();
    let closing = shutdown.clone();
    tokio::spawn(async move {
        closing.cancelled().await;
        // Open `runs/events` streams never end by themselves: end them so shutdown can finish.
        feed_app.coord.run_feed().close();
    });
    let router = routes::router(app.clone());
    let stop = shutdown.clone();
    let task = tokio::spawn(async move {
        let router = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!("server stopped: {e}");
        }
    });
    Ok(Server {
        addr,
        url: format!("http://{addr}"),
        first_admin_token,
        agent_token: agent_secret,
        resumed,
        app,
        shutdown,
        task,
        scheduler,
        gc,
        scrapes,
    })
}

/// On an empty database: creates the `admin` token and writes its secret to
/// `<data>/admin.token` (mode 0600), like Jenkins' initial admin password.
async fn first_admin(store: &Store, data: &Path) -> Result<Option<String>, StartError> {
    if !store.tokens().await?.is_empty() {
        return Ok(None);
    }
    let (_, secret) = store
        .create_token(&NewToken { name: "admin".into(), role: Role::Admin, project: None })
        .await?;
    let path = data.join("admin.token");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&path).and_then(|mut file| {
        std::io::Write::write_all(&mut file, format!("{}\n", secret.expose()).as_bytes())
    });
    written.map_err(|source| StartError::AdminToken { path, source })?;
    Ok(Some(secret.expose().to_string()))
}

/// Every few seconds: fails attempts whose agent stopped renewing their lease.
fn spawn_reaper(app: App, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            for (ctx, why) in app.dispatch.reap() {
                reports::lose([&*ctx], &why);
            }
            app.metrics.agents.set(app.dispatch.agents().len() as i64);
            app.metrics.leases.set(app.dispatch.lease_count() as i64);
        }
    });
}

/// Time since `at`, in milliseconds.
pub fn elapsed_ms(at: Instant) -> u64 {
    u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX)
}
