//! CNCF distribution (Debian's `docker-registry`, 2.8) as "another registry": plain HTTP on
//! loopback, a filesystem root in a temporary directory and an htpasswd login, stopped when
//! dropped; and `skopeo inspect` to see what it holds.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::wait::until;

/// The user of a [`Distribution`]'s login.
pub const DISTRIBUTION_USER: &str = "robot";

/// The password of [`DISTRIBUTION_USER`].
pub const DISTRIBUTION_PASSWORD: &str = "kiln-push-pw";

/// bcrypt (cost 4) of [`DISTRIBUTION_PASSWORD`], as distribution's htpasswd file holds it.
const HTPASSWD: &str = "robot:$2b$04$4SHLs2NEs21gG3eJgFyzZ.X4jBvPKIRKUTRV9R/6SIMsXXpVSdYOC";

/// A running `docker-registry serve` that requires a login.
pub struct Distribution {
    child: Child,
    /// `127.0.0.1:<port>`, as a tag names it.
    pub host: String,
    _dir: tempfile::TempDir,
}

impl Distribution {
    /// Starts one on `127.0.0.1:port` and waits until it answers.
    pub async fn start(port: u16) -> Distribution {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(dir.path().join("htpasswd"), format!("{HTPASSWD}\n")).unwrap();
        let config = dir.path().join("config.yml");
        let yaml = [
            "version: 0.1".to_string(),
            "log:".into(),
            "  level: error".into(),
            "storage:".into(),
            "  filesystem:".into(),
            format!("    rootdirectory: {}", dir.path().join("data").display()),
            "auth:".into(),
            "  htpasswd:".into(),
            "    realm: other".into(),
            format!("    path: {}", dir.path().join("htpasswd").display()),
            "http:".into(),
            format!("  addr: 127.0.0.1:{port}"),
        ]
        .join("\n");
        std::fs::write(&config, yaml).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry is installed (Debian `docker-registry`)");
        let url = format!("http://127.0.0.1:{port}/v2/");
        until("distribution answers", Duration::from_secs(20), Duration::from_millis(50), || {
            let url = url.clone();
            async move { reqwest::get(&url).await.map(|_| ()).map_err(|e| e.to_string()) }
        })
        .await;
        Distribution { child, host: format!("127.0.0.1:{port}"), _dir: dir }
    }

    /// `skopeo inspect` of `<host>/<reference>`, logged in or anonymously: the manifest
    /// digest, or skopeo's error.
    pub fn digest(&self, reference: &str, login: bool) -> Result<String, String> {
        let mut cmd = Command::new("skopeo");
        cmd.args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"]);
        if login {
            cmd.args(["--creds", &format!("{DISTRIBUTION_USER}:{DISTRIBUTION_PASSWORD}")]);
        } else {
            cmd.arg("--no-creds");
        }
        let out = cmd
            .arg(format!("docker://{}/{reference}", self.host))
            .output()
            .expect("skopeo is installed");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
