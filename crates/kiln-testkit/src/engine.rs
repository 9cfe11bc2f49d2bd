//! [`PrivateEngine`]: a Docker engine of a test's own, so that two agents on one machine
//! hold different images (each node of a real pool has its own engine) and a test that
//! removes images never touches the shared engine's. A second `dockerd` with its data, exec
//! root and socket in a temporary directory, configured as `cargo xtask ci` configures the
//! shared one (no iptables, no default bridge), with `busybox:latest` copied from the shared
//! engine (`DOCKER_HOST`). Stopped (SIGTERM, then waited for) when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A private Docker engine; see the module docs.
pub struct PrivateEngine {
    child: Child,
    /// `unix://…/docker.sock`: its `DOCKER_HOST`.
    pub host: String,
    dir: TempDir,
}

impl PrivateEngine {
    /// Starts one and copies `busybox:latest` into it. Panics, saying why, when `dockerd`
    /// is missing, the test does not run as root, or the engine does not answer in 60 s.
    pub fn start() -> PrivateEngine {
        let dir = tempfile::Builder::new().prefix("kiln-engine-").tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let host = format!("unix://{}", socket.display());
        let log = std::fs::File::create(dir.path().join("dockerd.log")).unwrap();
        let dockerd = ["/usr/sbin/dockerd", "/usr/bin/dockerd"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("dockerd"));
        let child = Command::new(&dockerd)
            .arg("--host")
            .arg(&host)
            .arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--pidfile")
            .arg(dir.path().join("dockerd.pid"))
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("a private engine needs dockerd and root ({}: {e})", dockerd.display())
            });
        let mut engine = PrivateEngine { child, host, dir };
        let started = Instant::now();
        while !engine.docker(&["version"]).status.success() {
            if let Ok(Some(status)) = engine.child.try_wait() {
                panic!("dockerd exited with {status}: {}", engine.log());
            }
            assert!(started.elapsed() < Duration::from_secs(60), "dockerd: {}", engine.log());
            std::thread::sleep(Duration::from_millis(200));
        }
        engine.copy_image("busybox:latest");
        engine
    }

    /// Copies `image` from the shared engine (`DOCKER_HOST`) into this one.
    pub fn copy_image(&self, image: &str) {
        let mut save = Command::new("docker")
            .args(["save", image])
            .stdout(Stdio::piped())
            .spawn()
            .expect("docker CLI runs");
        let load = Command::new("docker")
            .args(["load", "-q"])
            .env("DOCKER_HOST", &self.host)
            .stdin(save.stdout.take().unwrap())
            .output()
            .unwrap();
        assert!(save.wait().unwrap().success(), "docker save {image}");
        assert!(load.status.success(), "docker load: {}", String::from_utf8_lossy(&load.stderr));
    }

    /// Runs the docker CLI against this engine.
    pub fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker").args(args).env("DOCKER_HOST", &self.host).output().unwrap()
    }

    /// Whether this engine holds `image`.
    pub fn has(&self, image: &str) -> bool {
        self.docker(&["image", "inspect", image]).status.success()
    }

    /// Makes image `name` (a tag) of its own on this engine: `base` (an image with busybox's
    /// `sh`) with a file of `size_kib` KiB of random bytes and a label of `name`, so each has
    /// its own id and size.
    pub fn make_image(&self, base: &str, name: &str, size_kib: u32) {
        let cid = format!("kiln-mk-{}", uuid::Uuid::new_v4().simple());
        let script = format!("head -c {size_kib}k /dev/urandom > /blob-{cid}");
        let out = self.docker(&["run", "--name", &cid, base, "sh", "-c", &script]);
        assert!(out.status.success(), "make {name}: {}", String::from_utf8_lossy(&out.stderr));
        let label = format!("LABEL kiln.test={name}");
        let out = self.docker(&["commit", "-c", &label, &cid, name]);
        assert!(out.status.success(), "commit {name}: {}", String::from_utf8_lossy(&out.stderr));
        let _ = self.docker(&["rm", "-f", &cid]);
    }

    /// Its directory (data root, exec root, socket, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }
}

impl Drop for PrivateEngine {
    fn drop(&mut self) {
        // Containers first (a test may leave some), then the daemon, gracefully: it unmounts
        // what it mounted under the temporary directory.
        let ids = self.docker(&["ps", "-aq"]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = self.docker(&["rm", "-f", id]);
        }
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
