//! A PostgreSQL server for the store's and the server's tests: the one named by
//! `KILN_STORE_TEST_POSTGRES` when it answers, else a private cluster, created and started when
//! it does not answer (after installing Debian's `postgresql` when its binaries are missing).
//!
//! The private cluster never touches the system one: its data directory
//! (`/var/lib/kiln-postgres/<major>`), port (55432) and log (`/var/log/kiln-postgres.log`) are
//! its own. It listens on 127.0.0.1 only (no Unix socket), trusts every local connection, runs
//! as the `postgres` OS user (initdb refuses root), and is detached: it outlives xtask. Stop it
//! with `runuser -u postgres -- /usr/lib/postgresql/<major>/bin/pg_ctl -D <data dir> stop`.
//! Its contents are disposable: test databases (`kiln_test_…`) older than an hour are dropped
//! each time it is ensured.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::apt::{self, Apt};
use crate::step;

/// The variable naming a server (a URL without a database) to the store's and the server's
/// tests.
pub const URL_VAR: &str = "KILN_STORE_TEST_POSTGRES";

/// Where Debian installs each major version's binaries (`<major>/bin`).
const LIB_DIR: &str = "/usr/lib/postgresql";

/// The OS user the cluster runs as.
const OS_USER: &str = "postgres";

/// Longest wait for a starting cluster to accept queries.
const START_LIMIT: Duration = Duration::from_secs(60);

/// Test databases older than this are left over from earlier runs and dropped.
const STALE_AFTER: &str = "1 hour";

/// Where the private cluster puts its files, and its port.
#[derive(Debug, Clone)]
pub struct PrivateCluster {
    /// Holds one data directory per major version, and the lock file.
    pub root: PathBuf,
    /// Port on 127.0.0.1.
    pub port: u16,
    /// The server's log.
    pub log: PathBuf,
}

impl PrivateCluster {
    /// The defaults, each overridable: `KILN_POSTGRES_ROOT`, `KILN_POSTGRES_PORT`,
    /// `KILN_POSTGRES_LOG`.
    pub fn from_env() -> Result<PrivateCluster> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let port = match var("KILN_POSTGRES_PORT") {
            Some(p) => p.trim().parse().with_context(|| format!("KILN_POSTGRES_PORT={p:?}"))?,
            None => 55432,
        };
        Ok(PrivateCluster {
            root: var("KILN_POSTGRES_ROOT").map_or("/var/lib/kiln-postgres".into(), PathBuf::from),
            port,
            log: var("KILN_POSTGRES_LOG")
                .map_or("/var/log/kiln-postgres.log".into(), PathBuf::from),
        })
    }

    /// The server URL the tests get (`postgres://postgres@127.0.0.1:PORT`, no database).
    pub fn url(&self) -> String {
        format!("postgres://{OS_USER}@127.0.0.1:{}", self.port)
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

/// The binaries of one installed major version.
#[derive(Debug, Clone)]
struct Binaries {
    major: String,
    bin: PathBuf,
}

impl Binaries {
    /// The newest major version with an `initdb` under [`LIB_DIR`].
    fn find() -> Option<Binaries> {
        let mut found: Vec<(u32, String)> = fs::read_dir(LIB_DIR)
            .ok()?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|major| Path::new(LIB_DIR).join(major).join("bin/initdb").is_file())
            .filter_map(|major| Some((major.parse().ok()?, major)))
            .collect();
        found.sort();
        let (_, major) = found.pop()?;
        let bin = Path::new(LIB_DIR).join(&major).join("bin");
        Some(Binaries { major, bin })
    }

    fn program(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }

    /// `psql` as the `postgres` role on `port` of 127.0.0.1, quiet, unaligned, no psqlrc.
    fn psql(&self, port: u16) -> Command {
        let mut psql = Command::new(self.program("psql"));
        psql.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args(["-p", &port.to_string(), "-U", OS_USER, "-d", "postgres"])
            .env("PGCONNECT_TIMEOUT", "5")
            .stdin(Stdio::null());
        psql
    }
}

/// Returns the URL (without a database) of a PostgreSQL server that accepts queries as a
/// superuser: `KILN_STORE_TEST_POSTGRES` when it answers, else the private cluster, which is
/// created, started or restarted as needed. Prints one line saying how long that took.
pub fn ensure(apt: &mut Apt) -> Result<String> {
    let started = Instant::now();
    if let Some(url) = std::env::var(URL_VAR).ok().filter(|u| !u.trim().is_empty()) {
        let addr = server_addr(&url)?;
        if TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok() {
            println!(
                "PostgreSQL is ready at {url} (from {URL_VAR}; answered in {})",
                step::seconds(started.elapsed())
            );
            return Ok(url);
        }
        println!("{URL_VAR}={url} does not answer; using a private cluster instead");
    }
    let cluster = PrivateCluster::from_env()?;
    let how = ensure_private(&cluster, apt)?;
    println!(
        "PostgreSQL is ready at {} ({how} in {})",
        cluster.url(),
        step::seconds(started.elapsed())
    );
    if let Some(bins) = Binaries::find() {
        drop_stale_databases(&cluster, &bins);
    }
    Ok(cluster.url())
}

/// Makes the private cluster accept queries; says what it took ("already running", "started"…).
fn ensure_private(cluster: &PrivateCluster, apt: &mut Apt) -> Result<&'static str> {
    if let Some(bins) = Binaries::find()
        && answers(cluster, &bins)?
    {
        return Ok("already running, checked");
    }
    if !apt::is_root() {
        bail!(
            "no PostgreSQL answers on 127.0.0.1:{} and starting one needs root; start one \
             yourself and set {URL_VAR}=postgres://USER@HOST:PORT (a superuser, no database), \
             or set KILN_SKIP_POSTGRES=1 to test on SQLite only",
            cluster.port
        );
    }
    fs::create_dir_all(&cluster.root)
        .with_context(|| format!("create {}", cluster.root.display()))?;
    // Two CI runs starting at once: the second waits here, then finds the first one's server.
    let lock_path = cluster.root.join("xtask.lock");
    let lock = File::create(&lock_path).with_context(|| format!("open {}", lock_path.display()))?;
    lock.lock().with_context(|| format!("lock {}", lock_path.display()))?;
    let bins = match Binaries::find() {
        Some(bins) => bins,
        None => {
            println!(
                "PostgreSQL is not installed ({LIB_DIR}/*/bin/initdb): installing Debian's postgresql"
            );
            apt.install(&["postgresql"])?;
            Binaries::find().context("initdb still missing after installing postgresql")?
        }
    };
    if answers(cluster, &bins)? {
        return Ok("started by another xtask, waited");
    }
    let owner = os_user_ids()?;
    chown(&cluster.root, &owner)?;
    let data = cluster.root.join(&bins.major);
    let mut how = "restarted";
    if !data.join("PG_VERSION").is_file() {
        init(&bins, &data)?;
        how = "created and started";
    }
    write_settings(cluster, &data, &owner)?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&cluster.log)
        .with_context(|| format!("open {}", cluster.log.display()))?;
    drop(log);
    chown(&cluster.log, &owner)?;
    let pid_file = data.join("postmaster.pid");
    if let Some(pid) = live_postmaster(&data) {
        println!(
            "postgres (pid {pid}) of {} is running but not ready; waiting for it",
            data.display()
        );
        wait_until_ready(cluster, &bins)?;
        return Ok("already starting, waited");
    }
    if pid_file.exists() {
        // Left by a killed server (or a reboot): its pid may now be another process's, which
        // would make postgres refuse to start.
        println!("removing the stale {}", pid_file.display());
        fs::remove_file(&pid_file).with_context(|| format!("remove {}", pid_file.display()))?;
    }
    println!(
        "starting PostgreSQL {} from {} (log: {})",
        bins.major,
        data.display(),
        cluster.log.display()
    );
    let mut pg_ctl = as_postgres(&bins.program("pg_ctl"));
    pg_ctl.arg("-D").arg(&data).arg("-l").arg(&cluster.log).args([
        "-w",
        "-t",
        &START_LIMIT.as_secs().to_string(),
        "-s",
        "start",
    ]);
    if let Err(err) = step::output(&mut pg_ctl) {
        bail!("{err:#}\nend of {}:\n{}", cluster.log.display(), log_tail(&cluster.log));
    }
    wait_until_ready(cluster, &bins)?;
    Ok(how)
}

/// Whether the cluster's port accepts connections and a query as `postgres`. Fails when
/// something listens there that is not such a server.
fn answers(cluster: &PrivateCluster, bins: &Binaries) -> Result<bool> {
    if TcpStream::connect_timeout(&cluster.addr(), Duration::from_secs(2)).is_err() {
        return Ok(false);
    }
    match select_one(cluster, bins) {
        Ok(()) => Ok(true),
        // Recovering after a kill, or shutting down: not ready yet.
        Err(e) if format!("{e:#}").contains("the database system is") => Ok(false),
        Err(e) => Err(e.context(format!(
            "something listens on 127.0.0.1:{} but does not take queries as `postgres` \
             (another server? set KILN_POSTGRES_PORT to use another port)",
            cluster.port
        ))),
    }
}

fn select_one(cluster: &PrivateCluster, bins: &Binaries) -> Result<()> {
    let out = step::output(bins.psql(cluster.port).args(["-c", "SELECT 1"]))?;
    if out.trim() != "1" {
        bail!("SELECT 1 returned {:?}", out.trim());
    }
    Ok(())
}

/// Polls until a query succeeds, up to [`START_LIMIT`].
fn wait_until_ready(cluster: &PrivateCluster, bins: &Binaries) -> Result<()> {
    let started = Instant::now();
    loop {
        let err = match select_one(cluster, bins) {
            Ok(()) => return Ok(()),
            Err(err) => err,
        };
        if started.elapsed() >= START_LIMIT {
            bail!(
                "PostgreSQL did not accept a query within {}s: {err:#}\nend of {}:\n{}",
                START_LIMIT.as_secs(),
                cluster.log.display(),
                log_tail(&cluster.log)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `initdb` of `data` as the `postgres` user: trust authentication, UTF-8, C locale.
fn init(bins: &Binaries, data: &Path) -> Result<()> {
    if data.exists() {
        // A half-made cluster (initdb interrupted): there is nothing in it to keep.
        println!("removing {}, which holds no complete cluster", data.display());
        fs::remove_dir_all(data).with_context(|| format!("remove {}", data.display()))?;
    }
    println!("creating a PostgreSQL {} cluster in {}", bins.major, data.display());
    let mut initdb = as_postgres(&bins.program("initdb"));
    initdb.arg("-D").arg(data).args([
        "-U",
        OS_USER,
        "--auth=trust",
        "--encoding=UTF8",
        "--locale=C",
    ]);
    step::output(&mut initdb)?;
    let conf = data.join("postgresql.conf");
    let mut file = OpenOptions::new()
        .append(true)
        .open(&conf)
        .with_context(|| format!("open {}", conf.display()))?;
    writeln!(file, "\n# Written by cargo xtask (xtask/src/postgres.rs) on every start.")?;
    writeln!(file, "include_if_exists = 'kiln.conf'")?;
    Ok(())
}

/// Writes `kiln.conf` (read by `postgresql.conf`): the address, the port, no Unix socket.
fn write_settings(cluster: &PrivateCluster, data: &Path, owner: &str) -> Result<()> {
    let path = data.join("kiln.conf");
    let text = format!(
        "# Written by cargo xtask (xtask/src/postgres.rs) before each start.\n\
         listen_addresses = '127.0.0.1'\n\
         port = {}\n\
         unix_socket_directories = ''\n\
         max_connections = 200\n\
         # Test data: a crash may lose the last commits, never consistency.\n\
         synchronous_commit = off\n\
         # After a kill, one syncfs instead of an fsync per file (seconds) before recovery.\n\
         recovery_init_sync_method = syncfs\n",
        cluster.port
    );
    fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
    chown(&path, owner)
}

/// Drops test databases older than [`STALE_AFTER`] (a test that failed keeps its database for
/// a look; this bounds how many pile up). Only warns when that fails.
fn drop_stale_databases(cluster: &PrivateCluster, bins: &Binaries) {
    let query = format!(
        "SELECT datname FROM pg_database WHERE datname LIKE 'kiln\\_test\\_%' \
         AND (pg_stat_file('base/' || oid || '/PG_VERSION')).modification \
         < now() - interval '{STALE_AFTER}'"
    );
    let result = step::output(bins.psql(cluster.port).args(["-c", &query])).and_then(|names| {
        let names: Vec<&str> = names.lines().map(str::trim).filter(|n| !n.is_empty()).collect();
        if names.is_empty() {
            return Ok(());
        }
        let mut psql = bins.psql(cluster.port);
        for name in &names {
            psql.arg("-c").arg(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
        }
        step::output(&mut psql)?;
        println!("dropped {} test database(s) older than {STALE_AFTER}", names.len());
        Ok(())
    });
    if let Err(err) = result {
        println!("warning: could not drop old test databases: {err:#}");
    }
}

/// The pid in `data/postmaster.pid` when that process is a live postgres serving `data`.
fn live_postmaster(data: &Path) -> Option<u32> {
    let text = fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let pid: u32 = text.lines().next()?.trim().parse().ok()?;
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    // The postmaster's working directory is its data directory.
    let cwd = fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
    let same_dir = fs::canonicalize(data).is_ok_and(|d| d == cwd);
    (comm.trim() == "postgres" && state != Some("Z") && same_dir).then_some(pid)
}

/// `program` run as the `postgres` user from `/` (it may not read the caller's directory).
fn as_postgres(program: &Path) -> Command {
    let mut command = Command::new("runuser");
    command.args(["-u", OS_USER, "--"]).arg(program).current_dir("/").stdin(Stdio::null());
    command
}

/// `uid:gid` of the `postgres` user.
fn os_user_ids() -> Result<String> {
    let id = |flag: &str| -> Result<String> {
        let out = step::output(Command::new("id").args([flag, OS_USER])).with_context(|| {
            format!("the `{OS_USER}` user is missing (Debian's postgresql package creates it)")
        })?;
        Ok(out.trim().to_owned())
    };
    Ok(format!("{}:{}", id("-u")?, id("-g")?))
}

fn chown(path: &Path, owner: &str) -> Result<()> {
    step::output(Command::new("chown").arg(owner).arg(path)).map(drop)
}

/// `host:port` of a `postgres://[user[:password]@]host[:port]` URL, which must name no
/// database (the tests create their own).
fn server_addr(url: &str) -> Result<SocketAddr> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .with_context(|| format!("{URL_VAR}={url:?} is not a postgres:// URL"))?;
    if rest.contains('/') || rest.contains('?') {
        bail!(
            "{URL_VAR} names a server, without a database or options \
             (postgres://postgres@127.0.0.1:55432), not {url:?}"
        );
    }
    let host_port = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let with_port =
        if host_port.contains(':') { host_port.to_owned() } else { format!("{host_port}:5432") };
    with_port
        .to_socket_addrs()
        .with_context(|| format!("resolve {with_port} of {URL_VAR}"))?
        .next()
        .with_context(|| format!("{with_port} of {URL_VAR} resolves to no address"))
}

/// The last lines of a log file, indented.
fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].iter().map(|l| format!("    {l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_name_a_server_without_a_database() {
        assert_eq!(
            server_addr("postgres://postgres@127.0.0.1:55432").unwrap(),
            "127.0.0.1:55432".parse().unwrap()
        );
        assert_eq!(
            server_addr("postgresql://u:p@127.0.0.1").unwrap(),
            "127.0.0.1:5432".parse().unwrap()
        );
        assert!(server_addr("postgres://postgres@127.0.0.1:55432/kiln").is_err());
        assert!(server_addr("mysql://127.0.0.1").is_err());
    }
}
