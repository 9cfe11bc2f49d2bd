//! Finding a Docker engine that answers, or installing and starting a private one.
//!
//! The private engine never touches the system one: its socket, data root, exec root and
//! pid file are its own, and it runs without iptables or the default bridge (which a
//! container-in-container machine cannot set up). It is detached and outlives xtask; stop it
//! with `kill $(cat /run/kiln-docker/dockerd.pid)`.

use std::fs::{self, File, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::apt::{self, Apt};
use crate::http::{self, Endpoint};

/// Where the private engine puts its files.
#[derive(Debug, Clone)]
pub struct PrivateEngine {
    /// Directory of the socket and pid file.
    pub run_dir: PathBuf,
    /// `--data-root`.
    pub data_root: PathBuf,
    /// Its log (stdout and stderr).
    pub log: PathBuf,
}

impl Default for PrivateEngine {
    fn default() -> Self {
        PrivateEngine {
            run_dir: PathBuf::from("/run/kiln-docker"),
            data_root: PathBuf::from("/var/lib/kiln-docker"),
            log: PathBuf::from("/var/log/kiln-dockerd.log"),
        }
    }
}

impl PrivateEngine {
    /// The default locations, each overridable for trying xtask itself without touching a
    /// running engine: `KILN_DOCKERD_RUN_DIR`, `KILN_DOCKERD_DATA_ROOT`, `KILN_DOCKERD_LOG`.
    pub fn from_env() -> PrivateEngine {
        let default = PrivateEngine::default();
        let var = |name: &str, fallback: PathBuf| {
            std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from).unwrap_or(fallback)
        };
        PrivateEngine {
            run_dir: var("KILN_DOCKERD_RUN_DIR", default.run_dir),
            data_root: var("KILN_DOCKERD_DATA_ROOT", default.data_root),
            log: var("KILN_DOCKERD_LOG", default.log),
        }
    }

    /// Its socket.
    pub fn socket(&self) -> PathBuf {
        self.run_dir.join("docker.sock")
    }

    /// Its `DOCKER_HOST`.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    fn pid_file(&self) -> PathBuf {
        self.run_dir.join("dockerd.pid")
    }

    fn exec_root(&self) -> PathBuf {
        self.run_dir.join("exec")
    }
}

/// Longest wait for a starting engine that writes nothing to its log. A dockerd that keeps
/// logging is working (after a crash it removes every stale network sandbox first, one log line
/// each, which can take minutes), so the wait goes on while its log grows.
const SILENCE_LIMIT: Duration = Duration::from_secs(60);

/// Longest wait for a starting engine in any case.
const START_LIMIT: Duration = Duration::from_secs(900);

/// The system engine's socket.
const SYSTEM_SOCKET: &str = "/var/run/docker.sock";

/// Returns the `DOCKER_HOST` of an engine that answers a ping: `DOCKER_HOST`, the system
/// socket, or the private engine, which is installed and started when none answers.
pub fn ensure(apt: &mut Apt) -> Result<String> {
    let private = PrivateEngine::from_env();
    let from_env = std::env::var("DOCKER_HOST").ok().filter(|h| !h.trim().is_empty());
    let mut candidates: Vec<String> = from_env.iter().cloned().collect();
    candidates.push(format!("unix://{SYSTEM_SOCKET}"));
    candidates.push(private.docker_host());
    for host in &candidates {
        if http::ping(&Endpoint::parse(host)?) {
            println!("a Docker engine answers at {host}");
            return Ok(host.clone());
        }
    }
    if let Some(host) = &from_env {
        println!("DOCKER_HOST={host} does not answer; using a private engine instead");
    }
    println!("no Docker engine answers at {}", candidates.join(", "));
    start(&private, apt)?;
    Ok(private.docker_host())
}

/// Starts the private engine (installing `docker.io` first when `dockerd` is missing) and
/// waits until it answers. If a previous run's engine is still starting, waits for that one.
pub fn start(engine: &PrivateEngine, apt: &mut Apt) -> Result<()> {
    let endpoint = Endpoint::Unix(engine.socket().display().to_string());
    if let Some(pid) = running_dockerd(&engine.pid_file()) {
        println!(
            "dockerd (pid {pid}) from {} is starting; waiting for it",
            engine.pid_file().display()
        );
        return wait_until_answering(&endpoint, None, engine);
    }
    if !apt::is_root() {
        bail!(
            "starting a Docker engine needs root; start one yourself and set DOCKER_HOST \
             (or run as root)"
        );
    }
    let dockerd = match find_program("dockerd") {
        Some(path) => path,
        None => {
            println!("dockerd is not installed: installing Debian's docker.io");
            apt.install(&["docker.io", "busybox-static"])?;
            find_program("dockerd").context("dockerd still missing after installing docker.io")?
        }
    };
    for dir in [&engine.run_dir, &engine.data_root, &engine.exec_root()] {
        fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&engine.log)
        .with_context(|| format!("open {}", engine.log.display()))?;
    let mut command = Command::new(&dockerd);
    command
        .arg("--host")
        .arg(engine.docker_host())
        .arg("--data-root")
        .arg(&engine.data_root)
        .arg("--exec-root")
        .arg(engine.exec_root())
        .arg("--pidfile")
        .arg(engine.pid_file())
        .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
        .env("PATH", path_with_sbin())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C aimed at xtask or the tests does not reach it.
        .process_group(0);
    println!(
        "starting {} (log: {}, stop: kill $(cat {}))",
        dockerd.display(),
        engine.log.display(),
        engine.pid_file().display()
    );
    let child = command.spawn().with_context(|| format!("start {}", dockerd.display()))?;
    wait_until_answering(&endpoint, Some(child), engine)
}

/// Polls `endpoint` until it answers, printing progress. Fails when `child` exits, when the
/// log stays still for [`SILENCE_LIMIT`] or after [`START_LIMIT`], quoting the end of the log.
fn wait_until_answering(
    endpoint: &Endpoint,
    mut child: Option<Child>,
    engine: &PrivateEngine,
) -> Result<()> {
    let started = Instant::now();
    let log_len = || fs::metadata(&engine.log).map(|m| m.len()).unwrap_or(0);
    let first_len = log_len();
    let (mut last_len, mut last_growth) = (first_len, Instant::now());
    let mut next_report = Duration::from_secs(5);
    loop {
        if http::ping(endpoint) {
            println!("the engine answers after {:.1}s", started.elapsed().as_secs_f64());
            return Ok(());
        }
        if let Some(child) = child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            bail!(
                "dockerd exited with {status} before answering; end of {}:\n{}",
                engine.log.display(),
                log_tail(&engine.log)
            );
        }
        let waited = started.elapsed();
        let len = log_len();
        if len != last_len {
            (last_len, last_growth) = (len, Instant::now());
        }
        let silent = last_growth.elapsed();
        if waited >= START_LIMIT || silent >= SILENCE_LIMIT {
            bail!(
                "the engine did not answer within {}s ({}s without a new log line); end of {}:\n{}",
                waited.as_secs(),
                silent.as_secs(),
                engine.log.display(),
                log_tail(&engine.log)
            );
        }
        if waited >= next_report {
            let stale = stale_sandboxes_logged(&engine.log, first_len);
            let doing = if stale > 0 {
                format!(", it has removed {stale} stale network sandbox(es) so far")
            } else {
                String::new()
            };
            println!("  still waiting for dockerd ({}s{doing})", waited.as_secs());
            next_report += Duration::from_secs(5);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// How many "Removing stale sandbox" lines the log gained after byte `from`: what a dockerd
/// restarted after a crash spends its first minutes on.
fn stale_sandboxes_logged(log: &Path, from: u64) -> usize {
    use std::io::{Read, Seek, SeekFrom};
    let mut text = String::new();
    let read = File::open(log).and_then(|mut f| {
        f.seek(SeekFrom::Start(from))?;
        f.read_to_string(&mut text)
    });
    match read {
        Ok(_) => text.matches("Removing stale sandbox").count(),
        Err(_) => 0,
    }
}

/// The pid in `pid_file` when that process is a live dockerd.
fn running_dockerd(pid_file: &Path) -> Option<u32> {
    let pid: u32 = fs::read_to_string(pid_file).ok()?.trim().parse().ok()?;
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    // A killed dockerd whose parent has not reaped it is a zombie: it will never answer.
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    (comm.trim() == "dockerd" && state != Some("Z")).then_some(pid)
}

/// The last lines of a log file, indented.
fn log_tail(path: &Path) -> String {
    let text = File::open(path)
        .ok()
        .and_then(|mut f| {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut f, &mut s).ok().map(|_| s)
        })
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].iter().map(|l| format!("    {l}\n")).collect()
}

/// Directories searched for programs besides `PATH` (`sbin` is often missing from it).
const SYSTEM_DIRS: [&str; 6] =
    ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/// `PATH` plus the system directories it lacks (dockerd looks up containerd and runc there).
fn path_with_sbin() -> String {
    let mut dirs: Vec<String> =
        std::env::var("PATH").unwrap_or_default().split(':').map(str::to_owned).collect();
    for dir in SYSTEM_DIRS {
        if !dirs.iter().any(|d| d == dir) {
            dirs.push(dir.to_owned());
        }
    }
    dirs.join(":")
}

/// An executable file named `name` on [`path_with_sbin`].
pub fn find_program(name: &str) -> Option<PathBuf> {
    path_with_sbin()
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}
