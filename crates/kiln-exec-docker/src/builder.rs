//! The image builder of `build:` tasks ([`TaskSpec::builder`]): a container of the builder
//! image (`kiln-builder:<version>` unless [`DockerConfig::builder_image`] names another),
//! run with seccomp unconfined (Docker's default profile refuses the
//! `unshare(CLONE_NEWUSER)` buildah's chroot isolation needs) and nothing else: no
//! `--privileged`, no added capability, no Docker socket. When the engine lacks the default
//! image, [`DockerExecutor`] makes it once by `docker import` of a root file system gathered
//! from this host: its `buildah` with the libraries `ldd` lists, `/etc/containers` policy and
//! registries with a `vfs` storage.conf, a busybox for the shell, `/etc/passwd`, `/tmp`.
//!
//! [`TaskSpec::builder`]: kiln_exec::TaskSpec::builder
//! [`DockerConfig::builder_image`]: crate::DockerConfig::builder_image

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_exec::{ExecError, TaskSpec};

use crate::DockerExecutor;
use crate::error::{cause, engine};

/// The builder image's repository.
pub const BUILDER_REPOSITORY: &str = "kiln-builder";

/// The default builder image: `kiln-builder:<this Kiln's version>`.
pub fn default_builder_image() -> String {
    format!("{BUILDER_REPOSITORY}:{}", env!("CARGO_PKG_VERSION"))
}

/// Busybox applets linked in the builder image (what the build script and people use).
const APPLETS: &[&str] = &[
    "sh", "ash", "awk", "cat", "cp", "echo", "env", "false", "grep", "head", "id", "ln", "ls",
    "mkdir", "mktemp", "mv", "printf", "rm", "sed", "sleep", "sort", "tail", "tee", "test", "[",
    "tr", "true", "uname", "wc", "which",
];

/// The storage.conf of the builder image: `vfs`, which needs no mount privilege.
const STORAGE_CONF: &str = "[storage]\ndriver = \"vfs\"\nrunroot = \"/run/containers/storage\"\n\
                            graphroot = \"/var/lib/containers/storage\"\n";

/// The policy when the host has none: accept every image (Kiln pushes, it does not verify).
const POLICY: &str = "{\"default\":[{\"type\":\"insecureAcceptAnything\"}]}\n";

/// Whether the builder container must use the host's network to reach the registry the
/// task pushes to (`KILN_REGISTRY`): a loopback address is the host's own, which a container
/// on a bridge cannot reach.
pub(crate) fn needs_host_network(task: &TaskSpec) -> bool {
    let Some(registry) = task.env.get("KILN_REGISTRY") else { return false };
    let host = match registry.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => registry.as_str(),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The absolute paths of the libraries in `ldd`'s output (`name => /path (0x…)` and the
/// loader's `/path (0x…)`).
pub(crate) fn ldd_paths(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rest)) => rest.trim(),
                None => l,
            };
            let path = path.split_whitespace().next()?;
            path.starts_with('/').then(|| path.to_owned())
        })
        .collect()
}

/// The first `name` on `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// The libraries `binary` loads, by `ldd` (none for a static one).
fn libraries(binary: &Path) -> io::Result<Vec<String>> {
    let out = Command::new("ldd").arg(binary).output()?;
    Ok(ldd_paths(&String::from_utf8_lossy(&out.stdout)))
}

/// The builder image's root file system as a tar, from this host's buildah and busybox.
pub(crate) fn rootfs_tar() -> Result<Vec<u8>, String> {
    let buildah = on_path("buildah").ok_or(
        "buildah is not installed on this host (Debian: apt-get install buildah), so the \
         builder image cannot be made; install it, or give the agent a builder image \
         (--builder-image)",
    )?;
    let busybox = on_path("busybox").ok_or(
        "busybox is not installed on this host (Debian: apt-get install busybox-static), so \
         the builder image has no shell; install it, or give the agent a builder image \
         (--builder-image)",
    )?;
    let io = |what: &str, e: io::Error| format!("making the builder image: {what}: {e}");
    let mut b = tar::Builder::new(Vec::new());
    let mut dirs = std::collections::BTreeSet::new();
    let mut dir = |b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32| -> Result<(), String> {
        if dirs.insert(path.to_owned()) {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(mode);
            h.set_size(0);
            b.append_data(&mut h, path, io::empty()).map_err(|e| io(path, e))?;
        }
        Ok(())
    };
    let file = |b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data).map_err(|e| io(path, e))
    };
    for (d, mode) in [
        ("bin", 0o755),
        ("etc", 0o755),
        ("etc/containers", 0o755),
        ("root", 0o700),
        ("run", 0o755),
        ("tmp", 0o1777),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("var", 0o755),
        ("var/tmp", 0o1777),
        ("var/lib", 0o755),
        ("var/lib/containers", 0o700),
        ("work", 0o755),
    ] {
        dir(&mut b, d, mode)?;
    }
    let mut host_files: Vec<(PathBuf, String)> =
        vec![(buildah.clone(), "usr/bin/buildah".into()), (busybox.clone(), "bin/busybox".into())];
    for binary in [&buildah, &busybox] {
        for lib in libraries(binary).map_err(|e| io("ldd", e))? {
            host_files.push((PathBuf::from(&lib), lib.trim_start_matches('/').to_owned()));
        }
    }
    for optional in ["etc/ssl/certs/ca-certificates.crt", "etc/containers/registries.conf"] {
        let host = Path::new("/").join(optional);
        if host.is_file() {
            host_files.push((host, optional.to_owned()));
        }
    }
    host_files.sort_by(|a, b| a.1.cmp(&b.1));
    host_files.dedup_by(|a, b| a.1 == b.1);
    for (host, inside) in &host_files {
        // Parents first; symlinks on the host are followed (the file's bytes are stored).
        let mut parent = String::new();
        for part in inside.split('/').collect::<Vec<_>>().split_last().map_or(&[][..], |p| p.1) {
            parent =
                if parent.is_empty() { (*part).to_owned() } else { format!("{parent}/{part}") };
            dir(&mut b, &parent, 0o755)?;
        }
        let data = std::fs::read(host).map_err(|e| io(&host.display().to_string(), e))?;
        file(&mut b, inside, &data, 0o755)?;
    }
    let policy = std::fs::read("/etc/containers/policy.json").unwrap_or_else(|_| POLICY.into());
    file(&mut b, "etc/containers/policy.json", &policy, 0o644)?;
    file(&mut b, "etc/containers/storage.conf", STORAGE_CONF.as_bytes(), 0o644)?;
    file(&mut b, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644)?;
    file(&mut b, "etc/group", b"root:x:0:\n", 0o644)?;
    for applet in APPLETS {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox").map_err(|e| io(applet, e))?;
    }
    b.into_inner().map_err(|e| io("tar", e))
}

impl DockerExecutor {
    /// The builder image, present in the engine: the configured one must exist (it is not
    /// pulled unless it names a registry); the default one is made from this host's buildah
    /// when missing (once: concurrent builds wait for the first).
    pub(crate) async fn ensure_builder(&self, task: &TaskSpec) -> Result<String, ExecError> {
        if let Some(image) = &self.config.builder_image {
            self.ensure_image(image, task.pull_auth.as_ref()).await?;
            return Ok(image.clone());
        }
        let image = default_builder_image();
        let _one = self.builder_lock.lock().await;
        let what = format!("inspecting image {image}");
        match self.timed(&what, self.docker.inspect_image(&image)).await? {
            Ok(_) => return Ok(image),
            Err(e) if crate::error::is_not_found(&e) => {}
            Err(e) => return Err(engine(what, &e)),
        }
        tracing::info!(%image, "making the builder image from this host's buildah");
        let tar = tokio::task::spawn_blocking(rootfs_tar)
            .await
            .map_err(|e| ExecError::Engine(format!("docker: making the builder image: {e}")))?
            .map_err(|detail| ExecError::ImageNotFound { image: image.clone(), detail })?;
        let (repo, tag) = image.split_once(':').unwrap_or((&image, "latest"));
        let options = bollard::query_parameters::CreateImageOptions {
            from_src: Some("-".to_owned()),
            repo: Some(repo.to_owned()),
            tag: Some(tag.to_owned()),
            changes: vec![
                "ENV PATH=/usr/local/bin:/usr/bin:/bin".to_owned(),
                "WORKDIR /work".to_owned(),
                "CMD [\"sh\"]".to_owned(),
            ],
            ..Default::default()
        };
        let import = async {
            use futures::StreamExt as _;
            let body = bollard::body_full(bytes::Bytes::from(tar));
            let mut progress = self.docker.create_image(Some(options), Some(body), None);
            while let Some(step) = progress.next().await {
                step?;
            }
            Ok::<(), bollard::errors::Error>(())
        };
        match tokio::time::timeout(self.config.pull_timeout, import).await {
            Ok(Ok(())) => Ok(image),
            Ok(Err(e)) => Err(ExecError::ImageNotFound {
                image,
                detail: format!("importing the builder image failed: {}", cause(&e)),
            }),
            Err(_) => Err(ExecError::ImageNotFound {
                image,
                detail: "importing the builder image did not finish in time".to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_lists_libraries_and_the_loader() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                   \tlibgpgme.so.11 => /lib/x86_64-linux-gnu/libgpgme.so.11 (0x00007f)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n\
                   \tnot a dynamic executable\n";
        assert_eq!(
            ldd_paths(out),
            ["/lib/x86_64-linux-gnu/libgpgme.so.11", "/lib64/ld-linux-x86-64.so.2"]
        );
    }

    #[test]
    fn a_loopback_registry_takes_the_host_network() {
        let task = |registry: Option<&str>| {
            let mut t = kiln_exec::conformance::script_task("t", &["true"]);
            if let Some(r) = registry {
                t.env.insert("KILN_REGISTRY".into(), r.into());
            }
            t
        };
        assert!(needs_host_network(&task(Some("127.0.0.1:7171"))));
        assert!(needs_host_network(&task(Some("localhost:7171"))));
        assert!(needs_host_network(&task(Some("[::1]:7171"))));
        assert!(!needs_host_network(&task(Some("10.0.0.5:7171"))));
        assert!(!needs_host_network(&task(Some("kiln.example.com"))));
        assert!(!needs_host_network(&task(None)));
    }
}
