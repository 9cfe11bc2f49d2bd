//! The images tests run: `busybox:latest`, imported from a root file system built around
//! Debian's static busybox (no registry is reachable, so nothing is pulled).

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::apt::{self, Apt};
use crate::engine;
use crate::http::{self, Endpoint};
use crate::step::{self, Steps};

/// Repository and tag of the test image.
const BUSYBOX: (&str, &str) = ("busybox", "latest");

/// Commands linked to busybox in the image (keep in step with what tests may use).
const APPLETS: [&str; 22] = [
    "sh", "echo", "cat", "ls", "sleep", "nc", "wget", "env", "true", "false", "mkdir", "printf",
    "grep", "sed", "tr", "head", "tail", "wc", "date", "id", "hostname", "seq",
];

/// `cargo xtask images`: an engine that answers, holding the test images.
pub fn run() -> Result<()> {
    let mut steps = Steps::new(2);
    let mut apt = Apt::default();
    let host = steps.run("Docker engine", || engine::ensure(&mut apt))?;
    steps.run("test images", || ensure(&host, &mut apt))?;
    steps.summary();
    println!("\nexport DOCKER_HOST={host}");
    Ok(())
}

/// Debian packages of the registry's client tests and benchmark: skopeo, CNCF distribution
/// (the benchmark's anchor), wrk (its load generator).
const REGISTRY_PACKAGES: [&str; 3] = ["skopeo", "docker-registry", "wrk"];

/// Debian packages of image builds (`build:` jobs): buildah, which the Docker executor's
/// builder image is made from and the process executor runs, and the static busybox the
/// builder image's shell and the build tests' Dockerfiles use.
const BUILD_PACKAGES: [&str; 2] = ["buildah", "busybox-static"];

/// Installs what image builds need that is missing: [`BUILD_PACKAGES`].
pub fn ensure_build_tools(apt: &mut Apt) -> Result<()> {
    let missing: Vec<&str> =
        BUILD_PACKAGES.iter().copied().filter(|p| !apt::is_installed(p)).collect();
    if missing.is_empty() {
        println!("{} are installed", BUILD_PACKAGES.join(", "));
    } else {
        println!("installing {}", missing.join(", "));
        apt.install(&missing)?;
    }
    Ok(())
}

/// What the deployment test (`crates/kiln/tests/it/deploy.rs`) runs, as (program, Debian
/// package): kubectl for the manifests' dry run (Debian's is `kubernetes-client`; any
/// kubectl on PATH will do), systemd-analyze for the units, strip for the image's binary.
const DEPLOY_TOOLS: [(&str, &str); 3] =
    [("kubectl", "kubernetes-client"), ("systemd-analyze", "systemd"), ("strip", "binutils")];

/// Installs the Debian packages of [`DEPLOY_TOOLS`] whose program is not on PATH.
pub fn ensure_deploy_tools(apt: &mut Apt) -> Result<()> {
    let on_path = |program: &str| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
    };
    let missing: Vec<&str> =
        DEPLOY_TOOLS.iter().filter(|(program, _)| !on_path(program)).map(|(_, p)| *p).collect();
    if missing.is_empty() {
        println!("kubectl, systemd-analyze and strip are installed");
    } else {
        println!("installing {}", missing.join(", "));
        apt.install(&missing)?;
    }
    Ok(())
}

/// Installs the registry's test clients that are missing: the Debian packages above and the
/// `oras` Python package (oras-py, from PyPI through pip).
pub fn ensure_registry_clients(apt: &mut Apt) -> Result<()> {
    let missing: Vec<&str> =
        REGISTRY_PACKAGES.iter().copied().filter(|p| !apt::is_installed(p)).collect();
    if missing.is_empty() {
        println!("{} are installed", REGISTRY_PACKAGES.join(", "));
    } else {
        println!("installing {}", missing.join(", "));
        apt.install(&missing)?;
    }
    let has_oras = Command::new("python3")
        .args(["-c", "import oras.client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if has_oras {
        println!("oras (Python) is installed");
    } else {
        println!("installing oras (Python) with pip");
        step::run(Command::new("python3").args(["-m", "pip", "install", "--quiet", "oras"]))?;
    }
    Ok(())
}

/// Makes sure the engine at `host` has every test image, building the missing ones, and that
/// the registry's test clients, the image builds' tools and the deployment test's tools are
/// installed.
pub fn ensure(host: &str, apt: &mut Apt) -> Result<()> {
    ensure_registry_clients(apt)?;
    ensure_build_tools(apt)?;
    ensure_deploy_tools(apt)?;
    let endpoint = Endpoint::parse(host)?;
    let (repo, tag) = BUSYBOX;
    if image_exists(&endpoint, repo, tag)? {
        println!("{repo}:{tag} is present");
        return Ok(());
    }
    println!("{repo}:{tag} is missing: importing it from Debian's busybox-static");
    let busybox = static_busybox(apt)?;
    let dir = tempfile::tempdir().context("create a temporary directory")?;
    let rootfs = dir.path().join("rootfs");
    build_rootfs(&rootfs, &busybox)?;
    let tarball = dir.path().join("rootfs.tar");
    step::run(
        Command::new("tar")
            .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tarball)
            .arg("."),
    )?;
    import(&endpoint, &tarball, repo, tag)?;
    if !image_exists(&endpoint, repo, tag)? {
        bail!("{repo}:{tag} is still missing after the import");
    }
    println!("imported {repo}:{tag}");
    Ok(())
}

/// Whether the engine knows `repo:tag`.
fn image_exists(endpoint: &Endpoint, repo: &str, tag: &str) -> Result<bool> {
    let path = format!("/images/{repo}:{tag}/json");
    let answer = http::request(endpoint, "GET", &path, None, Duration::from_secs(30))
        .with_context(|| format!("inspect image {repo}:{tag}"))?;
    match answer.status {
        200 => Ok(true),
        404 => Ok(false),
        status => bail!(
            "inspect image {repo}:{tag}: HTTP {status}: {}",
            String::from_utf8_lossy(&answer.body).trim()
        ),
    }
}

/// Path of Debian's static busybox, installing `busybox-static` when needed.
fn static_busybox(apt: &mut Apt) -> Result<PathBuf> {
    if !apt::is_installed("busybox-static") {
        apt.install(&["busybox-static"])?;
    }
    let files = step::output(Command::new("dpkg").args(["-L", "busybox-static"]))?;
    files
        .lines()
        .map(Path::new)
        .find(|p| p.file_name().is_some_and(|n| n == "busybox") && p.is_file())
        .map(Path::to_path_buf)
        .context("busybox-static is installed but holds no busybox binary")
}

/// `/bin/busybox` with [`APPLETS`] linked to it, `/etc/passwd` and `/tmp`.
fn build_rootfs(rootfs: &Path, busybox: &Path) -> Result<()> {
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::create_dir_all(rootfs.join("etc"))?;
    std::fs::create_dir_all(rootfs.join("tmp"))?;
    std::fs::set_permissions(rootfs.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
    std::fs::copy(busybox, bin.join("busybox"))
        .with_context(|| format!("copy {}", busybox.display()))?;
    std::fs::set_permissions(bin.join("busybox"), std::fs::Permissions::from_mode(0o755))?;
    for applet in APPLETS {
        symlink("busybox", bin.join(applet))?;
    }
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    Ok(())
}

/// `docker import` through the API: the tarball becomes `repo:tag`.
fn import(endpoint: &Endpoint, tarball: &Path, repo: &str, tag: &str) -> Result<()> {
    let bytes = std::fs::read(tarball).with_context(|| format!("read {}", tarball.display()))?;
    let path = format!("/images/create?fromSrc=-&repo={repo}&tag={tag}");
    let answer = http::request(
        endpoint,
        "POST",
        &path,
        Some(("application/x-tar", &bytes)),
        Duration::from_secs(120),
    )
    .context("import the image")?;
    let body = String::from_utf8_lossy(&answer.body);
    if answer.status != 200 {
        bail!("import: HTTP {}: {}", answer.status, body.trim());
    }
    // Progress arrives as JSON lines; a failure is a line with an `error` field.
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(line)
            && let Some(error) = value.get("error").and_then(|e| e.as_str())
        {
            bail!("import: {error}");
        }
    }
    Ok(())
}
