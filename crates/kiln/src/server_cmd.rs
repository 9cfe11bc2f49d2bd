//! `kiln server` (the server with its embedded agent) and `kiln agent` (a remote agent).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use kiln_api::pool::{AttrValue, PortRange, parse_attr};
use kiln_client::Client;
use kiln_exec::Executor;
use kiln_exec_docker::DockerExecutor;
use kiln_exec_process::{ProcessConfig, ProcessExecutor};
use tokio_util::sync::CancellationToken;

use crate::EXIT_INVALID;
use crate::run_cmd::ExecutorChoice;

/// `kiln server`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Data directory (database, logs, artifacts, caches, secret key).
    #[arg(long, env = "KILN_DATA", default_value = "./kiln-data")]
    data: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "KILN_LISTEN", default_value = "127.0.0.1:7171")]
    listen: SocketAddr,
    /// Executor of the embedded agent.
    #[arg(long, value_enum, default_value_t = ExecutorChoice::Auto, env = "KILN_EXECUTOR")]
    executor: ExecutorChoice,
    /// Image `build:` jobs run in on the Docker executor (buildah and a shell; see
    /// docs/builds.md). Default: `kiln-builder:<version>`, made from this host's buildah.
    #[arg(long, env = "KILN_BUILDER_IMAGE")]
    builder_image: Option<String>,
    /// Jobs the embedded agent runs at once (0: no embedded agent).
    #[arg(long, env = "KILN_AGENT_CAPACITY", default_value_t = 4)]
    capacity: u32,
    /// PostgreSQL database to keep the state in (`postgres://user:password@host:port/db`)
    /// instead of SQLite in the data directory; its schema is migrated on start.
    #[arg(long, value_name = "URL", env = "KILN_DATABASE_URL", hide_env_values = true)]
    database: Option<String>,
    /// An agent that has not polled for this long is lost: its running jobs fail as "agent
    /// lost" and are retried under their retry policy (`30s`, `2m`).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    agent_lost_after: std::time::Duration,
    /// `host:port` at which jobs reach the registry (`KILN_REGISTRY`) [default: the listen
    /// address]. Set it when jobs push images from containers that cannot reach loopback.
    #[arg(long, value_name = "HOST:PORT", env = "KILN_REGISTRY_HOST")]
    registry_host: Option<String>,
    /// Total size of all projects' caches: past it, the least recently used are evicted
    /// (`10GiB`, `500MiB`, `2G`).
    #[arg(long, value_name = "SIZE", default_value = "10GiB", value_parser = parse_size)]
    cache_max_size: u64,
    /// A cache not used (stored or restored) for this long is evicted (`30d`, `12h`).
    #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = kiln_workflow::units::duration)]
    cache_max_age: std::time::Duration,
    /// The artifacts of a run that ended longer ago than this are removed; their downloads
    /// then answer that they expired (`30d`, `7d`).
    #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = kiln_workflow::units::duration)]
    artifact_max_age: std::time::Duration,
    /// Files of the blob directory that no cache or artifact names are deleted once this
    /// old (younger ones may be uploads in flight) (`1h`).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = kiln_workflow::units::duration)]
    blob_gc_grace: std::time::Duration,
    /// Let webhooks target loopback, link-local and private addresses (refused by default: a
    /// project admin could make the server call inward, a cloud metadata service included).
    #[arg(long)]
    allow_private_webhooks: bool,
    /// The user the embedded agent's process-executor jobs run as (see `kiln agent
    /// --process-user`; default `nobody` when the server runs as root).
    #[arg(long, value_name = "USER")]
    agent_process_user: Option<String>,
    /// Attribute of the embedded agent's node, `key=value` (repeatable; see `kiln agent`).
    #[arg(long = "agent-attribute", value_name = "KEY=VALUE", value_parser = parse_attribute)]
    agent_attributes: Vec<(String, AttrValue)>,
    /// Most space the embedded agent's engine images may take (see `kiln agent
    /// --image-cache-size`) [default: no limit].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    agent_image_cache_size: Option<u64>,
    #[command(flatten)]
    blob_store: BlobStoreArgs,
}

/// Where the registry keeps blob bytes (`kiln server --blob-store`).
#[derive(Debug, Args)]
pub struct BlobStoreArgs {
    /// Keep the registry's blobs in an S3 bucket, `s3://bucket/prefix`, instead of the data
    /// directory (the default). Credentials: `--s3-credentials-file`, else
    /// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`), else the AWS
    /// shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, `~/.aws/credentials`), else
    /// unsigned requests.
    #[arg(long, value_name = "s3://BUCKET/PREFIX", env = "KILN_BLOB_STORE")]
    blob_store: Option<String>,
    /// The S3 endpoint (`https://s3.example.com`, `http://127.0.0.1:9000`) [default: AWS's
    /// endpoint of the region].
    #[arg(long, value_name = "URL", env = "KILN_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// The S3 region [default: `AWS_REGION`, `AWS_DEFAULT_REGION`, else `us-east-1`].
    #[arg(long, value_name = "REGION", env = "KILN_S3_REGION")]
    s3_region: Option<String>,
    /// A file with the S3 key pair: an AWS credentials file (`[default]` with
    /// `aws_access_key_id`, `aws_secret_access_key`) or `AWS_ACCESS_KEY_ID=…` lines.
    #[arg(long, value_name = "PATH", env = "KILN_S3_CREDENTIALS_FILE")]
    s3_credentials_file: Option<PathBuf>,
    /// The profile (section) of the credentials file [default: `AWS_PROFILE`, else
    /// `default`].
    #[arg(long, value_name = "NAME")]
    s3_profile: Option<String>,
    /// Allow a plain `http://` S3 endpoint (refused by default).
    #[arg(long, env = "KILN_S3_ALLOW_HTTP")]
    s3_allow_http: bool,
    /// Virtual-hosted-style requests (`bucket.endpoint/key`) rather than path style
    /// (`endpoint/bucket/key`, the default, which every S3 server takes).
    #[arg(long)]
    s3_virtual_hosted_style: bool,
}

/// The registry's S3 blob store from `args` and the environment (`env` reads a variable),
/// or `None` for the data directory.
fn s3_config(
    args: &BlobStoreArgs,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<kiln_registry::S3Config>, String> {
    let Some(url) = args.blob_store.as_deref().map(str::trim).filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let mut config = kiln_registry::S3Config::from_url(url).map_err(|e| e.to_string())?;
    let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    config.endpoint = args.s3_endpoint.clone();
    config.region = args
        .s3_region
        .clone()
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .unwrap_or(config.region);
    config.allow_http = args.s3_allow_http;
    config.virtual_hosted_style = args.s3_virtual_hosted_style;
    let profile = args.s3_profile.clone().or_else(|| env("AWS_PROFILE"));
    config.credentials = if let Some(path) = &args.s3_credentials_file {
        Some(
            kiln_registry::s3::read_credentials_file(path, profile.as_deref())
                .map_err(|e| e.to_string())?,
        )
    } else if let Some(access_key_id) = env("AWS_ACCESS_KEY_ID") {
        let secret_access_key = env("AWS_SECRET_ACCESS_KEY")
            .ok_or("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not")?;
        Some(kiln_registry::S3Credentials {
            access_key_id,
            secret_access_key,
            session_token: env("AWS_SESSION_TOKEN"),
        })
    } else {
        let shared = env("AWS_SHARED_CREDENTIALS_FILE")
            .map(PathBuf::from)
            .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".aws/credentials")))
            .filter(|p| p.is_file());
        match shared {
            Some(path) => Some(
                kiln_registry::s3::read_credentials_file(&path, profile.as_deref())
                    .map_err(|e| e.to_string())?,
            ),
            None => None,
        }
    };
    Ok(Some(config))
}

/// `kiln agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Server URL.
    #[arg(long, env = "KILN_SERVER", default_value = "http://127.0.0.1:7171")]
    server: String,
    /// File holding the agent token (default: `KILN_TOKEN`).
    ///
    /// Create one with `kiln token create NAME --role agent`: it reaches only the agent
    /// paths. An admin token also works, but gives the agent's host far more than it needs.
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// The agent token on the command line: kept for old scripts only, with a warning, since
    /// every local user (and every process-executor job) reads it in `ps`. Use `--token-file`
    /// or `KILN_TOKEN`.
    #[arg(long, hide = true)]
    token: Option<String>,
    /// Agent name (default: the host name).
    #[arg(long)]
    name: Option<String>,
    /// Executor.
    #[arg(long, value_enum, default_value_t = ExecutorChoice::Auto, env = "KILN_EXECUTOR")]
    executor: ExecutorChoice,
    /// Image `build:` jobs run in on the Docker executor (buildah and a shell; see
    /// docs/builds.md). Default: `kiln-builder:<version>`, made from this host's buildah.
    #[arg(long, env = "KILN_BUILDER_IMAGE")]
    builder_image: Option<String>,
    /// Jobs at once.
    #[arg(long, default_value_t = 4)]
    capacity: u32,
    /// Scratch directory.
    #[arg(long, default_value_os_t = std::env::temp_dir().join("kiln-agent"))]
    work_dir: PathBuf,
    /// The user process-executor jobs run as (a name, `uid` or `uid:gid`). Default: `nobody`
    /// when the agent runs as root, so a job cannot read the agent's token or files; else the
    /// agent's own user. `root` keeps root.
    #[arg(long, value_name = "USER")]
    process_user: Option<String>,
    /// Attribute of this node, `key=value`, repeatable (like Mesos agents' `--attributes`):
    /// a number if it parses as one (`cores=8`), a set written `{a,b}`, else text
    /// (`city=shenzhen`). Operators can add or override attributes with `kiln nodes set`.
    #[arg(long = "attribute", short = 'a', value_name = "KEY=VALUE", value_parser = parse_attribute)]
    attributes: Vec<(String, AttrValue)>,
    /// Host ports this node hands out to jobs asking for a dynamic port.
    #[arg(long, value_name = "START-END", default_value = "31000-32000", value_parser = PortRange::parse)]
    ports: PortRange,
    /// IP at which jobs on this node are reached [default: the local address this host uses
    /// to reach the server].
    #[arg(long)]
    ip: Option<std::net::IpAddr>,
    /// CPUs this node declares (`4`, `0.5`, `500m`) [default: what this host has]; a node
    /// group's provider passes its template's (`KILN_AGENT_ARGS`).
    #[arg(long, value_name = "CPUS", value_parser = kiln_workflow::units::cpu_millis)]
    cpus: Option<u64>,
    /// Memory this node declares (`8Gi`) [default: what this host has].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    memory: Option<u64>,
    /// Disk this node declares (`50Gi`; `0`: none) [default: the size of the work
    /// directory's file system].
    #[arg(long, value_name = "SIZE", value_parser = parse_disk)]
    disk: Option<u64>,
    /// Most space the engine's images may take (`20GiB`): beyond it the least recently
    /// used images that no running task uses are removed (each image's full size counts)
    /// [default: no limit, nothing is removed].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    image_cache_size: Option<u64>,
    /// Kubernetes executor: namespace of the job pods [default: the kubeconfig context's,
    /// else `default`].
    #[arg(long, value_name = "NAMESPACE", env = "KILN_KUBE_NAMESPACE")]
    namespace: Option<String>,
    /// Kubernetes executor: node selector put on every job pod, `key=value` (repeatable).
    #[arg(long = "node-selector", value_name = "KEY=VALUE", value_parser = parse_selector)]
    node_selector: Vec<(String, String)>,
    /// Kubernetes executor: image of the helper container that holds each pod's workspace
    /// (it needs `sh`, `sleep` and `tar`).
    #[arg(long, value_name = "IMAGE", default_value = kiln_exec_kube::DEFAULT_HELPER_IMAGE)]
    helper_image: String,
    /// Kubernetes executor: how long a job's pod may take to run (scheduling, image pulls)
    /// before the attempt fails with the last reason Kubernetes gave (`10m`, `90s`).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = humantime::parse_duration)]
    pod_start_timeout: std::time::Duration,
}

fn parse_selector(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v))
            if kiln_exec_kube::pod::is_label_key(k) && kiln_exec_kube::pod::is_label_value(v) =>
        {
            Ok((k.to_string(), v.to_string()))
        }
        _ => Err(format!("expected a node label KEY=VALUE (such as pool=ci), found '{text}'")),
    }
}

/// The Kubernetes executor of agent `name`: connects (a one-line error within seconds when
/// the kubeconfig is missing or the API server refuses) and deletes the pods an earlier run
/// of this agent left.
async fn kubernetes_executor(args: &AgentArgs, name: &str) -> Result<Arc<dyn Executor>, String> {
    let config = kiln_exec_kube::KubeConfig {
        namespace: args.namespace.clone(),
        agent: name.to_string(),
        helper_image: args.helper_image.clone(),
        node_selector: args.node_selector.iter().cloned().collect(),
        startup_timeout: args.pod_start_timeout,
        ..Default::default()
    };
    let executor =
        kiln_exec_kube::KubeExecutor::connect(config).await.map_err(|e| e.to_string())?;
    if executor.swept() > 0 {
        eprintln!(
            "removed {} pod(s) left by an earlier run of agent `{name}` in namespace {}",
            executor.swept(),
            executor.namespace()
        );
    }
    Ok(Arc::new(executor))
}

/// The socket address of a server URL (`http://host[:port]/…`), resolved.
fn server_addr(url: &str) -> Option<SocketAddr> {
    use std::net::ToSocketAddrs;
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split('/').next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let default_port = if scheme == "https" { 443 } else { 80 };
    let with_port = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        authority.to_string()
    } else {
        format!("{authority}:{default_port}")
    };
    with_port.to_socket_addrs().ok()?.next()
}

/// A size in bytes: `10GiB`, `512MiB`, `2G`, `1Gi` or a number of bytes (the memory units of
/// workflows, with an optional `B`).
fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let t = t.strip_suffix('B').filter(|r| !r.is_empty() && !r.ends_with('B')).unwrap_or(t);
    kiln_workflow::units::memory_bytes(t).map_err(|_| {
        format!("expected a size such as 10GiB, 500MiB, 2G or a number of bytes, found '{text}'")
    })
}

fn parse_attribute(text: &str) -> Result<(String, AttrValue), String> {
    parse_attr(text).map_err(|e| e.to_string())
}

/// What the agent declares of its host: detected resources, host name, IP towards `server`.
/// A disk size for `--disk`: a size, or `0` for none.
fn parse_disk(text: &str) -> Result<u64, String> {
    if text.trim() == "0" { Ok(0) } else { parse_size(text) }
}

/// What `--cpus`, `--memory` and `--disk` declare instead of what the host has.
#[derive(Debug, Clone, Copy, Default)]
struct Declared {
    cpus: Option<u64>,
    memory: Option<u64>,
    disk: Option<u64>,
}

fn host_facts(
    server: &str,
    work_dir: &std::path::Path,
    ip: Option<std::net::IpAddr>,
    ports: PortRange,
    attributes: Vec<(String, AttrValue)>,
    declared: Declared,
) -> kiln_agent::HostFacts {
    let ip = ip.or_else(|| kiln_agent::host::ip_towards(server_addr(server)?));
    let _ = std::fs::create_dir_all(work_dir);
    let mut resources = kiln_agent::host::resources(work_dir);
    resources.cpu_millis = declared.cpus.unwrap_or(resources.cpu_millis);
    resources.memory_bytes = declared.memory.unwrap_or(resources.memory_bytes);
    resources.disk_bytes = declared.disk.unwrap_or(resources.disk_bytes);
    kiln_agent::HostFacts {
        hostname: host_name(),
        ip: ip.map(|i| i.to_string()).unwrap_or_default(),
        resources: Some(resources),
        ports: Some(ports),
        attributes: attributes.into_iter().collect(),
    }
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("{} {msg}", console::style("error:").red().bold());
    ExitCode::from(EXIT_INVALID)
}

/// Picks the executor. First the processes a previous agent on this work directory left
/// running are ended, whichever executor it used ([`process_executor`]); a Docker executor
/// then removes what a previous agent of this name left.
async fn executor(
    choice: ExecutorChoice,
    agent: &str,
    work_dir: &std::path::Path,
    builder_image: Option<String>,
    process_user: Option<&str>,
) -> Result<Arc<dyn Executor>, String> {
    if choice == ExecutorChoice::Kubernetes {
        return Err(crate::run_cmd::KUBERNETES_AGENT_ONLY.to_string());
    }
    let run_as = run_as(process_user)?;
    let process = process_executor(work_dir, run_as).await;
    let config = kiln_exec_docker::DockerConfig { builder_image, ..Default::default() };
    let docker = match choice {
        ExecutorChoice::Process => return Ok(process),
        ExecutorChoice::Noop => return Ok(Arc::new(kiln_exec::noop::NoopExecutor::new())),
        ExecutorChoice::Kubernetes => unreachable!("refused above"),
        ExecutorChoice::Docker => {
            DockerExecutor::connect(config).await.map_err(|e| e.to_string())?
        }
        ExecutorChoice::Auto => match DockerExecutor::connect(config).await {
            Ok(d) => d,
            Err(e) => {
                eprintln!(
                    "{} {e}; the agent runs jobs as host processes (their images are not used)",
                    console::style("warning:").yellow().bold()
                );
                return Ok(process);
            }
        },
    };
    // Containers of attempts the previous incarnation ran were failed by the server on
    // restart (or will be, when their lease expires): remove them.
    match docker.cleanup_labelled("kiln.agent", agent).await {
        Ok(r) if r.containers + r.networks + r.volumes == 0 => {}
        Ok(r) => eprintln!(
            "removed {} container(s), {} network(s), {} volume(s) left by an earlier run of agent `{agent}`",
            r.containers, r.networks, r.volumes
        ),
        Err(e) => {
            eprintln!("{} clean-up of old containers: {e}", console::style("warning:").yellow())
        }
    }
    Ok(Arc::new(docker))
}

/// The process executor of an agent working in `work_dir`: it records the processes it
/// starts in `WORK_DIR/procs`, and first ends those a previous agent there left running
/// when it was killed (`kill -9`, a crash): their attempts were failed by the server, or
/// their instances lost, and would otherwise run twice beside their replacements.
async fn process_executor(
    work_dir: &std::path::Path,
    run_as: Option<kiln_exec_process::RunAs>,
) -> Arc<dyn Executor> {
    let records = Some(work_dir.join("procs"));
    let process =
        ProcessExecutor::new(ProcessConfig { records, run_as, ..ProcessConfig::default() });
    match process.sweep().await {
        Ok(swept) => {
            for s in swept {
                eprintln!("{s}");
            }
        }
        Err(e) => {
            eprintln!("{} clean-up of old processes: {e}", console::style("warning:").yellow())
        }
    }
    Arc::new(process)
}

/// The user process-executor jobs run as: `user`, else `nobody` when this process is root;
/// `None` when that is this process's own user.
fn run_as(user: Option<&str>) -> Result<Option<kiln_exec_process::RunAs>, String> {
    let me = rustix::process::geteuid().as_raw();
    let who = match user {
        Some(name) => kiln_exec_process::RunAs::lookup(name)
            .map_err(|e| format!("--process-user {name}: {e}"))?,
        None if me == 0 => match kiln_exec_process::RunAs::lookup("nobody") {
            Ok(who) => who,
            Err(e) => {
                eprintln!(
                    "{} {e}: process-executor jobs run as root; name a user with \
                     --process-user",
                    console::style("warning:").yellow().bold()
                );
                return Ok(None);
            }
        },
        None => return Ok(None),
    };
    Ok((who.uid != me).then_some(who))
}

/// `embedded-<8 hex digits of the data directory's path>`.
fn embedded_name(data: &std::path::Path) -> String {
    let path = std::fs::canonicalize(data).unwrap_or_else(|_| data.to_path_buf());
    let mut h: u32 = 0x811c_9dc5;
    for b in path.to_string_lossy().bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    format!("embedded-{h:08x}")
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "agent".to_string())
}

/// A database URL as it may be shown: `postgres://host:port/db`, without the user, the
/// password or the options (which may hold a password too).
fn shown_database(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let rest = rest.split_once('?').map_or(rest, |(before, _)| before);
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    format!("{scheme}://{host}/{path}")
}

/// Runs `kiln server` until Ctrl-C or SIGTERM.
pub async fn server(args: ServerArgs) -> ExitCode {
    let started = std::time::Instant::now();
    let registry_blobs = match s3_config(&args.blob_store, |name| std::env::var(name).ok()) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let blobs_shown = match &registry_blobs {
        Some(c) => format!(", registry blobs in {} at {}", c.url(), c.shown_endpoint()),
        None => String::new(),
    };
    let server = match kiln_server::start(kiln_server::ServerConfig {
        registry_blobs,
        database: args.database.clone(),
        agent_lost_after: args.agent_lost_after,
        registry_host: args.registry_host.clone(),
        allow_private_webhooks: args.allow_private_webhooks,
        gc: kiln_server::GcConfig {
            cache_max_size: args.cache_max_size,
            cache_max_age: args.cache_max_age,
            artifact_max_age: args.artifact_max_age,
            blob_gc_grace: args.blob_gc_grace,
            ..kiln_server::GcConfig::default()
        },
        ..kiln_server::ServerConfig::new(args.data.clone(), args.listen)
    })
    .await
    {
        Ok(s) => s,
        Err(e) => return fail(format!("{e:#}")),
    };
    let database = match &args.database {
        Some(url) => format!(", database {}{blobs_shown}", shown_database(url)),
        None => blobs_shown,
    };
    let stop = CancellationToken::new();
    let mut agent_task = None;
    if args.capacity > 0 {
        // Unique per data directory, so two servers sharing a Docker engine never clean up
        // each other's containers.
        let name = embedded_name(&args.data);
        let work_dir = args.data.join("agent");
        let user = args.agent_process_user.as_deref();
        let exec = match executor(args.executor, &name, &work_dir, args.builder_image.clone(), user)
            .await
        {
            Ok(e) => e,
            Err(e) => return fail(e),
        };
        let exec_name = exec.name();
        let client = match Client::new(&server.url, &server.agent_token) {
            Ok(c) => c,
            Err(e) => return fail(e),
        };
        let host = host_facts(
            &server.url,
            &work_dir,
            None,
            PortRange::DEFAULT,
            args.agent_attributes.clone(),
            Declared::default(),
        );
        let config = kiln_agent::AgentConfig {
            name,
            capacity: args.capacity,
            work_dir,
            host,
            image_cache_size: args.agent_image_cache_size,
        };
        let stop = stop.clone();
        agent_task = Some(tokio::spawn(kiln_agent::run(client, exec, config, stop)));
        println!(
            "kiln server {} listening on {} (data in {}{database}, embedded agent on the {exec_name} executor, {} slots)",
            env!("CARGO_PKG_VERSION"),
            server.url,
            args.data.display(),
            args.capacity
        );
    } else {
        println!(
            "kiln server {} listening on {} (data in {}{database}, no embedded agent)",
            env!("CARGO_PKG_VERSION"),
            server.url,
            args.data.display()
        );
    }
    if server.resumed > 0 {
        println!("resumed {} unfinished run(s)", server.resumed);
    }
    if let Some(token) = &server.first_admin_token {
        println!();
        println!(
            "First start: an admin token was created (also saved in {}):",
            args.data.join("admin.token").display()
        );
        println!();
        println!("  export KILN_SERVER={}", server.url);
        println!("  export KILN_TOKEN={token}");
        println!();
    }
    println!("web UI: {}/ (sign in with a token)", server.url);
    println!("ready in {} ms", started.elapsed().as_millis());
    shutdown_signal().await;
    eprintln!("stopping…");
    stop.cancel();
    if let Some(t) = agent_task {
        let _ = t.await;
    }
    server.stop().await;
    ExitCode::SUCCESS
}

/// Ctrl-C, or SIGTERM (what `systemctl stop`, `docker stop` and `kill` send): either stops a
/// server or agent the same graceful way, so what it runs (service instances included) is
/// stopped and cleaned up rather than left behind.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The agent's token: `--token-file`, else `KILN_TOKEN`, else `--token` (with a warning);
/// or why there is none.
fn agent_token(args: &AgentArgs) -> Result<String, String> {
    if let Some(path) = &args.token_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the token file `{}`: {e}", path.display()))?;
        let token = text.trim();
        if token.is_empty() || token.contains(char::is_whitespace) {
            return Err(format!(
                "the token file `{}` should hold one token on one line",
                path.display()
            ));
        }
        return Ok(token.to_string());
    }
    if let Some(token) = std::env::var("KILN_TOKEN").ok().filter(|t| !t.trim().is_empty()) {
        return Ok(token.trim().to_string());
    }
    if let Some(token) = &args.token {
        eprintln!(
            "{} --token shows the token to every local user (and every process-executor job) \
             in `ps`; use --token-file PATH or KILN_TOKEN instead",
            console::style("warning:").yellow().bold()
        );
        return Ok(token.clone());
    }
    Err("no agent token: pass --token-file PATH or set KILN_TOKEN (create one with `kiln \
         token create NAME --role agent`)"
        .to_string())
}

/// Runs `kiln agent` until Ctrl-C or SIGTERM.
pub async fn agent(args: AgentArgs) -> ExitCode {
    let token = match agent_token(&args) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let name = args.name.clone().unwrap_or_else(host_name);
    let exec = if args.executor == ExecutorChoice::Kubernetes {
        kubernetes_executor(&args, &name).await
    } else {
        executor(
            args.executor,
            &name,
            &args.work_dir,
            args.builder_image.clone(),
            args.process_user.as_deref(),
        )
        .await
    };
    let exec = match exec {
        Ok(e) => e,
        Err(e) => return fail(e),
    };
    let client = match Client::new(&args.server, &token) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let declared = Declared { cpus: args.cpus, memory: args.memory, disk: args.disk };
    let host =
        host_facts(&args.server, &args.work_dir, args.ip, args.ports, args.attributes, declared);
    let cpus = host.resources.map_or(0, |r| r.cpu_millis / 1000);
    let attrs: Vec<String> = host.attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!(
        "agent `{name}` ({} executor, {} slots; {} at {}, {cpus} CPUs, ports {}{}) serving {}",
        exec.name(),
        args.capacity,
        host.hostname,
        if host.ip.is_empty() { "?" } else { &host.ip },
        args.ports,
        if attrs.is_empty() { String::new() } else { format!(", {}", attrs.join(" ")) },
        args.server
    );
    let stop = CancellationToken::new();
    let config = kiln_agent::AgentConfig {
        name,
        capacity: args.capacity,
        work_dir: args.work_dir,
        host,
        image_cache_size: args.image_cache_size,
    };
    let mut task = tokio::spawn(kiln_agent::run(client, exec, config, stop.clone()));
    let ended = tokio::select! {
        () = shutdown_signal() => {
            stop.cancel();
            (&mut task).await
        }
        r = &mut task => r,
    };
    match ended {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => fail(e),
        Err(e) => fail(e),
    }
}

#[cfg(test)]
mod tests {
    use super::{BlobStoreArgs, parse_size, s3_config, server_addr, shown_database};

    fn blob_args(url: Option<&str>) -> BlobStoreArgs {
        BlobStoreArgs {
            blob_store: url.map(str::to_string),
            s3_endpoint: Some("http://127.0.0.1:9000".into()),
            s3_region: None,
            s3_credentials_file: None,
            s3_profile: None,
            s3_allow_http: true,
            s3_virtual_hosted_style: false,
        }
    }

    #[test]
    fn the_blob_store_is_the_data_directory_unless_an_s3_url_is_given() {
        let no_env = |_: &str| None;
        assert_eq!(s3_config(&blob_args(None), no_env), Ok(None));
        assert_eq!(s3_config(&blob_args(Some(" ")), no_env), Ok(None));
        let c = s3_config(&blob_args(Some("s3://kiln/reg")), no_env).unwrap().unwrap();
        assert_eq!(
            (c.bucket.as_str(), c.prefix.as_str(), c.region.as_str()),
            ("kiln", "reg", "us-east-1")
        );
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(c.allow_http && c.credentials.is_none());
        assert!(s3_config(&blob_args(Some("kiln/reg")), no_env).unwrap_err().contains("s3://"));
    }

    #[test]
    fn s3_credentials_come_from_the_file_then_the_aws_variables() {
        let env = |name: &str| match name {
            "AWS_ACCESS_KEY_ID" => Some("AKIAENV".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("env-secret".to_string()),
            "AWS_REGION" => Some("eu-west-3".to_string()),
            _ => None,
        };
        let c = s3_config(&blob_args(Some("s3://kiln")), env).unwrap().unwrap();
        let creds = c.credentials.unwrap();
        assert_eq!((creds.access_key_id.as_str(), c.region.as_str()), ("AKIAENV", "eu-west-3"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        std::fs::write(&file, "[default]\naws_access_key_id=AKIAFILE\naws_secret_access_key=f\n")
            .unwrap();
        let mut args = blob_args(Some("s3://kiln"));
        args.s3_credentials_file = Some(file);
        let c = s3_config(&args, env).unwrap().unwrap();
        assert_eq!(c.credentials.unwrap().access_key_id, "AKIAFILE");
        let half = |name: &str| (name == "AWS_ACCESS_KEY_ID").then(|| "AKIA".to_string());
        assert_eq!(
            s3_config(&blob_args(Some("s3://kiln")), half).unwrap_err(),
            "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"
        );
    }

    #[test]
    fn sizes_take_binary_and_decimal_units_with_or_without_b() {
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("10Gi"), Ok(10 << 30));
        assert_eq!(parse_size("500MiB"), Ok(500 << 20));
        assert_eq!(parse_size("2G"), Ok(2_000_000_000));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        for bad in ["", "B", "10GiBB", "ten", "0", "-1GiB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_server_url_resolves_with_its_default_port() {
        assert_eq!(server_addr("http://127.0.0.1:7171"), Some("127.0.0.1:7171".parse().unwrap()));
        assert_eq!(server_addr("http://127.0.0.1/x"), Some("127.0.0.1:80".parse().unwrap()));
        assert_eq!(server_addr("https://127.0.0.1"), Some("127.0.0.1:443".parse().unwrap()));
        assert_eq!(server_addr("127.0.0.1:7171"), None);
    }

    #[test]
    fn a_shown_database_url_has_no_credentials_or_options() {
        for (url, shown) in [
            ("postgres://kiln:s3cret@db.example:5433/kiln", "postgres://db.example:5433/kiln"),
            ("postgresql://db/kiln?password=s3cret&sslmode=disable", "postgresql://db/kiln"),
            ("postgres://p%40ss@127.0.0.1/k", "postgres://127.0.0.1/k"),
            ("postgres://localhost", "postgres://localhost/"),
        ] {
            assert_eq!(shown_database(url), shown, "{url}");
        }
    }
}
