//! [`TestServer`]: a real server on loopback with a temporary data directory and its agent
//! on the process executor (host processes: real, fast, no images needed), on SQLite in the
//! data directory or on a fresh PostgreSQL database ([`Backend`]); more agents with
//! [`TestServer::agent`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_api::{ApplyPipeline, RunDetail, RunSummary, TriggerRequest};
use kiln_client::Client;
use kiln_exec_process::{ProcessConfig, ProcessExecutor};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use crate::postgres::TestDb;
use crate::wait::is_final;

/// Where a test server keeps its state.
#[derive(Debug, Clone)]
pub enum Backend {
    /// SQLite at `<data>/kiln.db`.
    Sqlite,
    /// A fresh database of the PostgreSQL server of `KILN_STORE_TEST_POSTGRES`.
    Postgres(TestDb),
}

impl Backend {
    /// A fresh database `kiln_test_server_<uuid>` (see [`crate::postgres::fresh_database`]),
    /// or `None` when no PostgreSQL server is named.
    pub async fn postgres(test: &str) -> Option<Backend> {
        crate::postgres::fresh_database("kiln_test_server", test).await.map(Backend::Postgres)
    }

    /// The URL the server gets as its database, if not SQLite.
    pub fn database_url(&self) -> Option<String> {
        match self {
            Backend::Sqlite => None,
            Backend::Postgres(db) => Some(db.url()),
        }
    }
}

/// The first retry wait of webhook deliveries in test servers (1 s in real ones).
pub const WEBHOOK_BACKOFF: Duration = Duration::from_millis(50);

/// A real server on loopback with a temporary data directory, and (unless started with
/// capacity 0) an embedded agent on the process executor. Stop it with [`TestServer::stop`].
pub struct TestServer {
    /// The server (None between [`TestServer::stop_server`] and [`TestServer::start_again`]).
    pub server: Option<kiln_server::Server>,
    /// Where it keeps its state.
    pub backend: Backend,
    /// A client with the first admin token.
    pub admin: Client,
    /// The first admin token.
    pub admin_token: String,
    /// `http://127.0.0.1:port`.
    pub url: String,
    /// Its data directory.
    pub data: PathBuf,
    stop_agent: CancellationToken,
    agent: Option<tokio::task::JoinHandle<()>>,
    lost_after: Duration,
    gc: kiln_server::GcConfig,
    /// [`kiln_server::ServerConfig::object_store`], kept for restarts.
    object_store: Option<kiln_objstore::S3Config>,
    _dir: TempDir,
}

impl TestServer {
    /// A server on SQLite with an agent of 4 slots.
    pub async fn start() -> TestServer {
        TestServer::start_with(4).await
    }

    /// A server on SQLite with an agent of `capacity` slots (none for 0).
    pub async fn start_with(capacity: u32) -> TestServer {
        TestServer::start_on_with(Backend::Sqlite, capacity).await
    }

    /// A server on `backend` with an agent of 4 slots.
    pub async fn start_on(backend: Backend) -> TestServer {
        TestServer::start_on_with(backend, 4).await
    }

    /// A server on `backend` with an agent of `capacity` slots (none for 0).
    pub async fn start_on_with(backend: Backend, capacity: u32) -> TestServer {
        TestServer::start_full(backend, capacity, Duration::from_secs(30)).await
    }

    /// A server whose agents are lost after `lost_after`, with an embedded agent of
    /// `capacity` slots (none for 0).
    pub async fn start_full(backend: Backend, capacity: u32, lost_after: Duration) -> TestServer {
        TestServer::start_gc(backend, capacity, lost_after, kiln_server::GcConfig::default()).await
    }

    /// A server like [`TestServer::start_full`] whose garbage collector has the limits of
    /// `gc` (small ones, for the tests of eviction and expiry).
    pub async fn start_gc(
        backend: Backend,
        capacity: u32,
        lost_after: Duration,
        gc: kiln_server::GcConfig,
    ) -> TestServer {
        TestServer::start_prepared(backend, capacity, lost_after, gc, |_| {}).await
    }

    /// A server like [`TestServer::start_gc`] whose data directory is made by the test
    /// first: `prepare` gets its path (which does not exist yet) before the server starts,
    /// to mount a small file system there, say.
    pub async fn start_prepared(
        backend: Backend,
        capacity: u32,
        lost_after: Duration,
        gc: kiln_server::GcConfig,
        prepare: impl FnOnce(&std::path::Path),
    ) -> TestServer {
        TestServer::start_stored(backend, capacity, lost_after, gc, prepare, None).await
    }

    /// A server on SQLite with an agent of `capacity` slots whose registry blobs,
    /// artifacts, caches and finished job logs are in the S3 bucket of `object_store`
    /// ([`kiln_server::ServerConfig::object_store`]; restarts keep it).
    pub async fn start_on_s3(capacity: u32, object_store: kiln_objstore::S3Config) -> TestServer {
        let (lost_after, gc) = (Duration::from_secs(30), kiln_server::GcConfig::default());
        TestServer::start_stored(
            Backend::Sqlite,
            capacity,
            lost_after,
            gc,
            |_| {},
            Some(object_store),
        )
        .await
    }

    async fn start_stored(
        backend: Backend,
        capacity: u32,
        lost_after: Duration,
        gc: kiln_server::GcConfig,
        prepare: impl FnOnce(&std::path::Path),
        object_store: Option<kiln_objstore::S3Config>,
    ) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        prepare(&data);
        let server = kiln_server::start(kiln_server::ServerConfig {
            database: backend.database_url(),
            agent_lost_after: lost_after,
            gc: gc.clone(),
            webhook_backoff: WEBHOOK_BACKOFF,
            // The tests' webhook receivers listen on loopback.
            allow_private_webhooks: true,
            object_store: object_store.clone(),
            ..kiln_server::ServerConfig::new(data.clone(), "127.0.0.1:0".parse().unwrap())
        })
        .await
        .unwrap();
        let admin_token =
            server.first_admin_token.clone().expect("first start makes an admin token");
        let on_disk = std::fs::read_to_string(data.join("admin.token")).unwrap();
        assert_eq!(on_disk.trim(), admin_token, "the admin token is saved in the data dir");
        let admin = Client::new(&server.url, &admin_token).unwrap();
        let stop_agent = CancellationToken::new();
        let agent_client = Client::new(&server.url, &server.agent_token).unwrap();
        let exec = Arc::new(ProcessExecutor::new(ProcessConfig {
            root: dir.path().join("ws"),
            ..ProcessConfig::default()
        }));
        std::fs::create_dir_all(dir.path().join("ws")).unwrap();
        let config = kiln_agent::AgentConfig {
            name: "embedded".into(),
            capacity: capacity.max(1),
            work_dir: data.join("agent"),
            host: kiln_agent::HostFacts::default(),
            image_cache_size: None,
        };
        let stop = stop_agent.clone();
        // Capacity 0: no agent (tests that bring their own).
        let agent = (capacity > 0).then(|| {
            tokio::spawn(async move {
                kiln_agent::run(agent_client, exec, config, stop).await.unwrap();
            })
        });
        let url = server.url.clone();
        TestServer {
            server: Some(server),
            backend,
            admin,
            admin_token,
            url,
            data,
            stop_agent,
            agent,
            lost_after,
            gc,
            object_store,
            _dir: dir,
        }
    }

    /// The test's temporary directory (the data directory is `data` inside it).
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// Stops the server (not the agents of [`TestServer::agent`]) and starts it again on the
    /// same data directory and database, on a new port.
    pub async fn restart(&mut self) {
        self.stop_server().await;
        self.start_again().await;
    }

    /// Stops the server (not the agents), as [`TestServer::restart`] does first.
    pub async fn stop_server(&mut self) {
        if let Some(s) = self.server.take() {
            s.stop().await;
        }
    }

    /// Starts the server again after [`TestServer::stop_server`].
    pub async fn start_again(&mut self) {
        self.start_again_with(|_| {}).await;
    }

    /// [`TestServer::start_again`] with its configuration changed by `configure` first (a
    /// test fault such as `crash_after_claim`, say).
    pub async fn start_again_with(
        &mut self,
        configure: impl FnOnce(&mut kiln_server::ServerConfig),
    ) {
        let mut config = kiln_server::ServerConfig {
            database: self.backend.database_url(),
            agent_lost_after: self.lost_after,
            gc: self.gc.clone(),
            webhook_backoff: WEBHOOK_BACKOFF,
            allow_private_webhooks: true,
            object_store: self.object_store.clone(),
            ..kiln_server::ServerConfig::new(self.data.clone(), "127.0.0.1:0".parse().unwrap())
        };
        configure(&mut config);
        let server = kiln_server::start(config).await.unwrap();
        self.url = server.url.clone();
        self.admin = Client::new(&server.url, &self.admin_token).unwrap();
        self.server = Some(server);
    }

    /// Starts another agent on the process executor, named `name`, declaring `host`; it runs
    /// until the handle is stopped or dropped.
    pub fn agent(&self, name: &str, capacity: u32, host: kiln_agent::HostFacts) -> TestAgent {
        let token = self.server.as_ref().expect("server runs").agent_token.clone();
        self.agent_with(&token, name, capacity, host)
    }

    /// Starts another agent on the Docker executor (the engine of `DOCKER_HOST`), named
    /// `name`, declaring `host`: its jobs and instances run in real containers. Panics when no
    /// engine answers (the test command starts one).
    pub async fn docker_agent(
        &self,
        name: &str,
        capacity: u32,
        host: kiln_agent::HostFacts,
    ) -> TestAgent {
        let token = self.server.as_ref().expect("server runs").agent_token.clone();
        let client = Client::new(&self.url, &token).unwrap();
        let exec = kiln_exec_docker::DockerExecutor::connect(Default::default())
            .await
            .unwrap_or_else(|e| panic!("no Docker engine: run `cargo xtask ci` ({e})"));
        let config = kiln_agent::AgentConfig {
            name: name.into(),
            capacity,
            work_dir: self.dir().join(format!("agent-{name}")),
            host,
            image_cache_size: None,
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(kiln_agent::run(client, Arc::new(exec), config, stop.clone()));
        TestAgent { stop, task: Some(task) }
    }

    /// Starts another agent on the Docker executor of the engine at `endpoint` (a
    /// [`crate::PrivateEngine`]'s `host`), named `name`, declaring `host`, keeping at most
    /// `image_cache_size` bytes of images when given.
    pub async fn docker_agent_on(
        &self,
        endpoint: &str,
        name: &str,
        capacity: u32,
        host: kiln_agent::HostFacts,
        image_cache_size: Option<u64>,
    ) -> TestAgent {
        let token = self.server.as_ref().expect("server runs").agent_token.clone();
        let client = Client::new(&self.url, &token).unwrap();
        let config = kiln_exec_docker::DockerConfig {
            endpoint: Some(endpoint.to_string()),
            ..Default::default()
        };
        let exec = kiln_exec_docker::DockerExecutor::connect(config)
            .await
            .unwrap_or_else(|e| panic!("no Docker engine at {endpoint}: {e}"));
        let config = kiln_agent::AgentConfig {
            name: name.into(),
            capacity,
            work_dir: self.dir().join(format!("agent-{name}")),
            host,
            image_cache_size,
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(kiln_agent::run(client, Arc::new(exec), config, stop.clone()));
        TestAgent { stop, task: Some(task) }
    }

    /// [`TestServer::agent`] authenticating with `token`.
    pub fn agent_with(
        &self,
        token: &str,
        name: &str,
        capacity: u32,
        host: kiln_agent::HostFacts,
    ) -> TestAgent {
        let client = Client::new(&self.url, token).unwrap();
        let root = self.dir().join(format!("ws-{name}"));
        std::fs::create_dir_all(&root).unwrap();
        let exec =
            Arc::new(ProcessExecutor::new(ProcessConfig { root, ..ProcessConfig::default() }));
        let config = kiln_agent::AgentConfig {
            name: name.into(),
            capacity,
            work_dir: self.dir().join(format!("agent-{name}")),
            host,
            image_cache_size: None,
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(kiln_agent::run(client, exec, config, stop.clone()));
        TestAgent { stop, task: Some(task) }
    }

    /// Applies `yaml` as pipeline `name` of `project` (made if missing) as the admin.
    pub async fn apply(&self, project: &str, name: &str, yaml: &str) -> kiln_api::ApplyResult {
        self.apply_as(&self.admin, project, name, yaml).await.unwrap()
    }

    /// Applies `yaml` as pipeline `name` of `project` (made if missing) with `client`.
    pub async fn apply_as(
        &self,
        client: &Client,
        project: &str,
        name: &str,
        yaml: &str,
    ) -> kiln_client::Result<kiln_api::ApplyResult> {
        if self.admin.projects().await.unwrap().iter().all(|p| p.name != project) {
            self.admin.create_project(project).await.unwrap();
        }
        client
            .apply_pipeline(
                project,
                name,
                &ApplyPipeline { yaml: yaml.to_string(), file: None, files: BTreeMap::new() },
            )
            .await
    }

    /// Triggers `project/name` with `params` as the admin.
    pub async fn trigger(&self, project: &str, name: &str, params: &[(&str, &str)]) -> RunSummary {
        let req = TriggerRequest {
            params: params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        self.admin.trigger(project, name, &req).await.unwrap()
    }

    /// Waits until the run reaches a final state (or `until` says stop).
    pub async fn wait_for(
        &self,
        run: &str,
        what: &str,
        until: impl Fn(&RunDetail) -> bool,
    ) -> RunDetail {
        let started = Instant::now();
        loop {
            let d = self.admin.run(run).await.unwrap();
            if until(&d) {
                return d;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "run {} never got {what}; last seen: {d:#?}",
                d.run.full_name()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until the run reaches a final state.
    pub async fn wait_final(&self, run: &str) -> RunDetail {
        self.wait_for(run, "to a final state", |d| is_final(&d.run.state)).await
    }

    /// Whether the database holds `needle` anywhere: the bytes of the SQLite files, or every
    /// row of every table of the PostgreSQL database as text (`bytea` as hex, so `needle` is
    /// looked for in hex too).
    pub async fn database_contains(&self, needle: &[u8]) -> bool {
        let Backend::Postgres(db) = &self.backend else {
            // Recent writes may still be in the write-ahead log.
            return ["kiln.db", "kiln.db-wal"].iter().any(|file| {
                let db = std::fs::read(self.data.join(file)).unwrap_or_default();
                db.windows(needle.len()).any(|w| w == needle)
            });
        };
        let (name, pool) = (&db.name, sqlx::PgPool::connect(&db.url()).await.unwrap());
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert!(tables.iter().any(|t| t == "runs"), "no Kiln tables in {name}: {tables:?}");
        let hex = hex_of(needle);
        let mut found = false;
        for table in tables {
            let text: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM \"{table}\" t"
            )))
            .fetch_one(&pool)
            .await
            .unwrap();
            let text = text.as_bytes();
            found |= text.windows(needle.len()).any(|w| w == needle)
                || text.windows(hex.len()).any(|w| w == hex.as_bytes());
        }
        pool.close().await;
        found
    }

    /// Stops the agent and the server; on PostgreSQL, drops the test's database (a failed
    /// test keeps it for a look; `cargo xtask ci` drops those after an hour).
    pub async fn stop(mut self) {
        self.stop_agent.cancel();
        if let Some(a) = self.agent.take() {
            let _ = a.await;
        }
        if let Some(s) = self.server.take() {
            let store = s.app.store.clone();
            s.stop().await;
            if matches!(self.backend, Backend::Postgres(_)) {
                let _ = tokio::time::timeout(Duration::from_secs(5), store.close()).await;
            }
        }
        if let Backend::Postgres(db) = &self.backend {
            db.drop_database().await;
        }
    }
}

/// An agent started by [`TestServer::agent`].
pub struct TestAgent {
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), kiln_agent::AgentError>>>,
}

impl TestAgent {
    /// Stops it as Ctrl-C would: running attempts are canceled and it says goodbye.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    /// Kills it the hard way: it stops polling and reports nothing more, like a host that
    /// lost power (its processes are left to the executor's clean-up).
    pub fn kill(mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
