//! Kiln's persistence: projects, pipelines, runs and their event logs, jobs, approvals, API
//! tokens, sealed secrets, artifact and cache records, pipelines' schedules, webhook deliveries
//! and the runs triggers intend (the trigger outbox), services (their versions, instances and
//! store-wide event log), metric scraping rules, environments and their variables, the config
//! center (applications' templates and values, releases, heads, audit log), deployments, the OCI registry's repositories,
//! manifests, tags, push events and webhook outbox, vulnerability scanning (advisories, scans,
//! findings, image policies), in SQLite (the default) or PostgreSQL,
//! through one [`Store`].
//!
//! One implementation serves both databases: [`Db`] holds a typed pool per backend and the
//! `with_db!`/`with_write!`/`with_tx!` macros compile every query once per driver. The SQL text is the same
//! for both (`$n` placeholders, `INSERT … RETURNING`, `ON CONFLICT … DO UPDATE`); only the
//! column types differ between `migrations/sqlite` and `migrations/postgres` (TEXT vs
//! TIMESTAMPTZ, TEXT vs JSONB, INTEGER vs BIGINT, BLOB vs BYTEA). Ids are uuid v7 stored as TEXT on both.
//!
//! Status: SQLite is what every test run exercises. The integration tests also run on
//! PostgreSQL when `KILN_STORE_TEST_POSTGRES` names a server, which `cargo xtask ci` starts
//! (Debian's PostgreSQL 15) and sets, as it does for the server's tests. No TLS is compiled in
//! for PostgreSQL.
//!
//! Invariants:
//! - every multi-step change runs in one transaction (on SQLite `BEGIN IMMEDIATE`, so writers
//!   queue instead of failing a read-to-write upgrade);
//! - on SQLite, every write of this process (`with_tx!`, `with_write!`) holds the store's
//!   writer lock, so writers queue in order instead of polling SQLite's lock; other processes
//!   wait on the busy timeout;
//! - run numbers per pipeline and event sequence numbers per run are allocated from a counter
//!   row in the same transaction as the insert: no gaps, no duplicates, strictly increasing;
//! - a token's secret is never stored, only its SHA-256; a project secret only sealed by the
//!   server (the store never sees its plaintext);
//! - one engine step ([`Store::record_step`]) is one transaction: its events, the run's state
//!   and its jobs are stored together or not at all;
//! - a run in a final state never changes state again;
//! - a trigger's claim (webhook delivery, schedule fire) and the runs it intends are stored in
//!   one transaction, and a run made for an intent carries its unique trigger key: one run per
//!   intent, however often or from however many servers it is started;
//! - no log lines and no blobs live here (logs are files; artifact and cache rows name a blob by
//!   its path relative to the blob directory, never outside it; registry blobs are named by
//!   digest only, while registry manifests, small, are kept whole).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// Runs `$body` with `$p` bound to the backend's pool; each arm is type-checked against its
/// own driver.
macro_rules! with_db {
    ($db:expr, $p:ident => $body:expr) => {
        match $db {
            $crate::Db::Sqlite($p) => $body,
            $crate::Db::Postgres($p) => $body,
        }
    };
}

/// Like `with_db!` for a statement that writes: on SQLite it holds the store's writer lock
/// (see `with_tx!`).
macro_rules! with_write {
    ($store:expr, $p:ident => $body:expr) => {
        match &$store.db {
            $crate::Db::Sqlite($p) => {
                let _writer = $store.writer.lock().await;
                $body
            }
            $crate::Db::Postgres($p) => $body,
        }
    };
}

/// Runs `$body` inside a transaction of the store `$store`, bound to `$tx`, and commits it if
/// `$body` evaluates (an early `?` return drops the transaction, which rolls it back). On
/// SQLite the store's writer lock is held first, so that this process's transactions queue in
/// order instead of polling SQLite's write lock.
macro_rules! with_tx {
    ($store:expr, $what:expr, $tx:ident => $body:expr) => {
        match &$store.db {
            $crate::Db::Sqlite(p) => {
                let _writer = $store.writer.lock().await;
                let mut $tx = p.begin_with("BEGIN IMMEDIATE").await.ctx($what)?;
                let value = $body;
                $tx.commit().await.ctx($what)?;
                value
            }
            $crate::Db::Postgres(p) => {
                let mut $tx = p.begin().await.ctx($what)?;
                let value = $body;
                $tx.commit().await.ctx($what)?;
                value
            }
        }
    };
}

/// Inside a `with_tx!` body: one pending `registry_outbox` row of `$kind` (`push`,
/// `vulnerability`) for the registry event `$event` per webhook of `$project` that takes that
/// kind, due at `$at`. The registry's push events and the scanner's vulnerability events queue
/// their deliveries here, in the transaction that records the event.
macro_rules! enqueue_deliveries {
    ($tx:ident, $what:expr, $project:expr, $kind:expr, $event:expr, $at:expr) => {{
        let hooks: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, events FROM registry_webhooks WHERE project_id = $1 ORDER BY id",
        )
        .bind($project)
        .fetch_all(&mut *$tx)
        .await
        .ctx($what)?;
        for (hook, _) in hooks.iter().filter(|(_, events)| crate::registry::takes(events, $kind)) {
            sqlx::query(
                "INSERT INTO registry_outbox (id, webhook_id, kind, event_id, attempts, next_at, \
                 state, updated_at) VALUES ($1, $2, $3, $4, 0, $5, 'pending', $5)",
            )
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(hook)
            .bind($kind)
            .bind($event)
            .bind($at)
            .execute(&mut *$tx)
            .await
            .ctx($what)?;
        }
    }};
}

mod artifacts;
mod caches;
mod config;
mod deployments;
mod environments;
mod error;
mod ids;
mod intents;
mod links;
mod metric_rules;
mod model;
mod nodes;
mod notices;
mod projects;
mod quotas;
mod registry;
mod runs;
mod scans;
mod schedules;
mod secrets;
mod services;
mod tokens;
mod usage;
mod webhooks;

pub use config::{
    ConfigAppRecord, ConfigAuditRecord, ConfigDecided, ConfigDecision, ConfigHead,
    ConfigItemRecord, ConfigReleaseRecord, ConfigSnapshot, ConfigTarget, ConfigValuesRecord,
    NewConfigRelease,
};
pub use deployments::{
    DEPLOYMENT_KINDS, DEPLOYMENT_STATES, DeploymentEnd, DeploymentRecord, DeploymentRun,
    NewDeployment,
};
pub use environments::{EnvValue, EnvVariableRecord, EnvironmentRecord};
pub use error::{Fault, Result, StoreError};
pub use ids::{
    ConfigAppId, EnvironmentId, GroupId, PipelineId, ProjectId, RunId, ServiceId, TokenId,
};
pub use intents::{IntentRun, RunIntent};
pub use links::{NewRunSet, RunGroup, RunSet};
pub use metric_rules::{MetricRuleRecord, RuleChange};
pub use model::{
    ApprovalDecision, ApprovalRecord, ArrayRecord, ArtifactFile, ArtifactRecord, CacheRecord,
    ExpiredArtifacts, JobRecord, NewArtifact, NewRun, NewToken, Pipeline, PipelineSource, Project,
    PullRequestRef, Role, Run, RunFilter, RunParent, RunSource, SealedSecret, SecretInfo, Step,
    StoredEvent, Token, TokenSecret, is_valid_name,
};
pub use nodes::{NodeChange, NodeRecord};
pub use notices::{NoticeRun, Recorded, RunEventKind, RunNotice};
pub use quotas::{ProjectQuota, QuotaLimits};
pub use registry::{
    DeliveryPayload, ManifestPut, NewRegistryManifest, RegistryDelivery, RegistryDeliveryInfo,
    RegistryEvent, RegistryGcRows, RegistryManifest, RegistryReferrer, RegistryRepository,
    RegistryWebhook, WEBHOOK_EVENTS,
};
pub use scans::{
    AdvisoryImport, FindingRecord, ImagePolicy, NewAdvisory, PackageRecord, ScanOutcome,
    ScanRecord, StoredAdvisory,
};
pub use schedules::{ScheduleEntry, ScheduleRecord};
pub use services::{
    DeployedAs, InstanceRecord, NewServiceVersion, ServiceEvent, ServiceOwner, ServiceRecord,
    ServiceVersionRecord,
};
pub use usage::{UsageEnd, UsageRecord, UsageStart, billed_seconds};
pub use webhooks::{Delivery, NewDelivery};

use error::Ctx;

/// The database behind a [`Store`]: one typed pool per backend.
#[derive(Debug, Clone)]
pub enum Db {
    /// SQLite (the default; a file, or memory in tests).
    Sqlite(SqlitePool),
    /// PostgreSQL (for larger installations; tested by `cargo xtask ci`, see the crate doc).
    Postgres(PgPool),
}

/// Kiln's persistent state. Cheap to clone (the pool is shared); every method may be called
/// concurrently.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
    /// Held around every SQLite write. SQLite has one writer at a time, and a writer
    /// waiting in its busy handler sleeps and polls (1 ms, 2 ms, 5 ms… up to 100 ms): waiting
    /// here instead is a fair queue that wakes the next writer at once. Unused on PostgreSQL,
    /// whose writers lock rows.
    writer: Arc<tokio::sync::Mutex<()>>,
}

/// How long a SQLite connection waits for another writer before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection to PostgreSQL may take before the server gives up.
pub const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a connection to PostgreSQL at `at` failed, in one line a person can act on.
fn connect_cause(e: &sqlx::Error, at: &str, options: &PgConnectOptions) -> String {
    match e {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("connection refused at {at} (is PostgreSQL running there?)")
        }
        sqlx::Error::Io(io) => format!("{at}: {io}"),
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("28P01") | Some("28000") => {
                format!("authentication failed for user {} at {at}", options.get_username())
            }
            Some("3D000") => format!(
                "database {} does not exist at {at}",
                options.get_database().unwrap_or(options.get_username())
            ),
            _ => format!("{at}: {}", db.message()),
        },
        other => format!("{at}: {other}"),
    }
}

impl Store {
    /// Opens (creating it if missing) the SQLite database at `path` in WAL mode with foreign
    /// keys on, and applies pending migrations. Opening an up-to-date database changes nothing.
    pub async fn open(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref();
        let what = || format!("open SQLite database `{}`", path.display());
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .after_release(|conn, _| Box::pin(release_settled(conn)))
            .connect_with(options)
            .await
            .ctx(what)?;
        Store::with_db(Db::Sqlite(pool)).await
    }

    /// A fresh private in-memory SQLite database, for tests. One connection, so every caller
    /// sees the same database; it lives as long as the store (and its clones).
    pub async fn memory() -> Result<Store> {
        let what = || "open in-memory SQLite database".to_string();
        let options = SqliteConnectOptions::new()
            .in_memory(true)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .ctx(what)?;
        Store::with_db(Db::Sqlite(pool)).await
    }

    /// Connects to PostgreSQL at `url` (`postgres://user@host/db`) and applies pending
    /// migrations. No TLS support is compiled in: use a local socket or a trusted network.
    ///
    /// A first connection is tried once, for at most [`PG_CONNECT_TIMEOUT`], so that a server
    /// that is down, a wrong password or a missing database fails at once with its cause
    /// ([`StoreError::Connect`]) rather than after the pool's retries.
    pub async fn connect_postgres(url: &str) -> Result<Store> {
        use sqlx::{ConnectOptions, Connection};
        use std::str::FromStr;
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Connect(format!("bad URL: {e}")))?;
        let at = format!("{}:{}", options.get_host(), options.get_port());
        match tokio::time::timeout(PG_CONNECT_TIMEOUT, options.connect()).await {
            Err(_) => {
                return Err(StoreError::Connect(format!(
                    "no answer from {at} within {}s",
                    PG_CONNECT_TIMEOUT.as_secs()
                )));
            }
            Ok(Err(e)) => return Err(StoreError::Connect(connect_cause(&e, &at, &options))),
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
            }
        }
        let what = || format!("connect to PostgreSQL at {at}");
        let pool = PgPoolOptions::new()
            .acquire_timeout(PG_CONNECT_TIMEOUT)
            .connect_with(options)
            .await
            .ctx(what)?;
        Store::with_db(Db::Postgres(pool)).await
    }

    /// Wraps an existing pool and applies pending migrations.
    pub async fn with_db(db: Db) -> Result<Store> {
        let what = || "apply database migrations".to_string();
        match &db {
            Db::Sqlite(p) => sqlx::migrate!("./migrations/sqlite")
                .run(p)
                .await
                .map_err(sqlx::Error::from)
                .ctx(what)?,
            Db::Postgres(p) => sqlx::migrate!("./migrations/postgres")
                .run(p)
                .await
                .map_err(sqlx::Error::from)
                .ctx(what)?,
        }
        Ok(Store { db, writer: Arc::default() })
    }

    /// The underlying pools, for callers that need a backend-specific query. Writes through
    /// them bypass the store's SQLite writer lock (and wait on the busy timeout instead).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Closes every connection; later calls fail.
    pub async fn close(&self) {
        with_db!(&self.db, p => p.close().await)
    }
}

/// Whether a SQLite connection given back to the pool may serve again: not if it is still
/// inside a transaction. A commit that fails on a full disk (or a failing file system) may
/// already have been rolled back by SQLite, so the driver's own rollback then fails and the
/// connection keeps counting a transaction that no longer exists: every later `BEGIN` on it
/// would fail ("non-zero transaction depth") until the server restarted. Such a connection is
/// closed instead, and the pool opens a fresh one when needed.
async fn release_settled(conn: &mut sqlx::SqliteConnection) -> Result<bool, sqlx::Error> {
    use sqlx::Connection;
    // Queued after the rollback that dropping the transaction started: once it answers, the
    // rollback has been tried.
    conn.ping().await?;
    Ok(!conn.is_in_transaction())
}

/// The current time, truncated to microseconds so that it round-trips through PostgreSQL.
fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}
