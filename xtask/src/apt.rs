//! Installing Debian packages with apt-get, without letting their maintainer scripts start
//! services (docker.io would otherwise try to start the system dockerd).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::step;

/// Debian's hook that maintainer scripts ask before starting a service; exit 101 = "no".
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

/// apt-get, with `apt-get update` run at most once per xtask run.
#[derive(Debug, Default)]
pub struct Apt {
    updated: bool,
}

impl Apt {
    /// Installs `packages` (`apt-get update` first, once).
    pub fn install(&mut self, packages: &[&str]) -> Result<()> {
        if !is_root() {
            bail!(
                "installing {} needs root (apt-get); install them by hand or run as root",
                packages.join(" ")
            );
        }
        let _guard = NoServiceStarts::new()?;
        if !self.updated {
            step::run(apt_get().arg("update"))?;
            self.updated = true;
        }
        step::run(apt_get().args(["install", "-y"]).args(packages))
    }
}

/// `apt-get` that never asks questions.
fn apt_get() -> Command {
    let mut command = Command::new("apt-get");
    command.env("DEBIAN_FRONTEND", "noninteractive").env("NEEDRESTART_SUSPEND", "1");
    command
}

/// Whether a Debian package is installed.
pub fn is_installed(package: &str) -> bool {
    let mut query = Command::new("dpkg-query");
    query.args(["-W", "-f=${Status}", package]);
    step::output(&mut query).is_ok_and(|status| status.trim() == "install ok installed")
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().next())
            == Some("0")
    })
}

/// Puts a refusing `policy-rc.d` in place while alive, unless one is there already.
struct NoServiceStarts {
    created: bool,
}

impl NoServiceStarts {
    fn new() -> Result<NoServiceStarts> {
        if Path::new(POLICY_RC_D).exists() {
            return Ok(NoServiceStarts { created: false });
        }
        std::fs::write(
            POLICY_RC_D,
            "#!/bin/sh\n# Written by cargo xtask during apt-get install.\nexit 101\n",
        )
        .with_context(|| format!("write {POLICY_RC_D}"))?;
        let mut chmod = Command::new("chmod");
        step::output(chmod.args(["755", POLICY_RC_D]))?;
        Ok(NoServiceStarts { created: true })
    }
}

impl Drop for NoServiceStarts {
    fn drop(&mut self) {
        if self.created {
            let _ = std::fs::remove_file(POLICY_RC_D);
        }
    }
}
