//! The OCI image of Kiln (server and agent in one image), built with buildah from a `kiln`
//! binary without a Docker daemon: one layer holding the binary, the shared libraries `ldd`
//! names for it, a static busybox (a shell for debugging; optional) and `/etc` files, then
//! `buildah commit` and `buildah push` to an OCI archive or a registry.
//!
//! Self-contained (std, anyhow, serde_json and tempfile only): `cargo xtask image` uses it, and the `kiln` crate's
//! deployment test includes this file as a module to build the image from its own binary.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Where the binary is in the image (the entrypoint).
pub const BINARY_IN_IMAGE: &str = "/usr/local/bin/kiln";

/// The image's user and group id (`kiln`), which the Kubernetes manifests run as.
pub const UID: u32 = 10001;

/// The server's data directory in the image (`KILN_DATA`), owned by [`UID`].
pub const DATA_DIR: &str = "/var/lib/kiln";

/// The agent's work directory in the image, owned by [`UID`].
pub const AGENT_DIR: &str = "/var/lib/kiln-agent";

/// Busybox applets linked in the image (a shell and what an operator reaches for).
const APPLETS: [&str; 16] = [
    "sh", "ls", "cat", "echo", "env", "id", "ps", "tar", "wget", "nc", "mkdir", "rm", "cp", "mv",
    "sleep", "vi",
];

/// What to build.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// The `kiln` binary (release for users; any build works).
    pub binary: PathBuf,
    /// A static busybox for `/bin/sh` and a few tools; `None`: no shell in the image.
    pub busybox: Option<PathBuf>,
    /// Strip debug information from the copy of the binary (`strip --strip-debug`).
    pub strip: bool,
}

/// Where to put the image.
#[derive(Debug, Clone)]
pub enum Destination {
    /// An OCI archive file (`oci-archive:PATH`).
    Archive(PathBuf),
    /// A registry reference (`host:port/repo:tag`), pushed with buildah.
    Registry {
        /// `host[:port]/repository:tag`.
        reference: String,
        /// `user:password` for the registry, if it needs a login.
        creds: Option<String>,
        /// Verify the registry's TLS certificate (`false`: plain HTTP or self-signed).
        tls_verify: bool,
    },
}

/// The result of a build.
#[derive(Debug, Clone)]
pub struct Built {
    /// `kiln --version` of the binary, as the image's version label carries it.
    pub version: String,
    /// The manifest digest of each registry push, in the order of the destinations.
    pub digests: Vec<String>,
}

/// Builds the image of `spec` and writes it to every destination; prints each step.
pub fn build(spec: &ImageSpec, destinations: &[Destination]) -> Result<Built> {
    if destinations.is_empty() {
        bail!("no destination: give an archive path or a registry reference");
    }
    let version = binary_version(&spec.binary)?;
    println!("image of {} ({version})", spec.binary.display());
    let dir = tempfile::tempdir().context("create a temporary directory")?;
    let rootfs = dir.path().join("rootfs");
    println!("  root file system: binary, shared libraries, /etc");
    let libs = build_rootfs(spec, &rootfs)?;
    for lib in &libs {
        println!("    {lib}");
    }
    let layer = dir.path().join("layer.tar");
    println!("  layer: {}", layer.display());
    make_layer(&rootfs, &layer)?;
    println!("  layer of {} MiB", file_size(&layer)? >> 20);
    let buildah = Buildah::new(dir.path());
    let name = format!("kiln-image-{}", std::process::id());
    println!("  buildah from scratch");
    let container = buildah.output(&["from", "--name", &name, "scratch"])?.trim().to_string();
    let result = configure_and_commit(&buildah, &container, &layer, &version, &name, destinations);
    // vfs storage under the temporary directory: removing it removes the image too.
    let _ = buildah.output(&["rm", &container]);
    let digests = result?;
    Ok(Built { version, digests })
}

/// Adds the layer, sets the configuration, commits and pushes; returns the pushes' digests.
fn configure_and_commit(
    buildah: &Buildah,
    container: &str,
    layer: &Path,
    version: &str,
    name: &str,
    destinations: &[Destination],
) -> Result<Vec<String>> {
    println!("  buildah add (the layer)");
    buildah.output(&["add", container, &layer.to_string_lossy(), "/"])?;
    let number = version.rsplit(' ').next().unwrap_or(version);
    let entrypoint = format!(r#"["{BINARY_IN_IMAGE}"]"#);
    let user = format!("{UID}:{UID}");
    let labels = [
        "org.opencontainers.image.title=kiln".to_string(),
        "org.opencontainers.image.description=Kiln CI/CD: kiln server and kiln agent".to_string(),
        format!("org.opencontainers.image.version={number}"),
        "org.opencontainers.image.licenses=Apache-2.0".to_string(),
    ];
    let mut config: Vec<String> = vec![
        "config".into(),
        "--entrypoint".into(),
        entrypoint,
        "--cmd".into(),
        "server".into(),
        "--user".into(),
        user,
        "--workingdir".into(),
        DATA_DIR.into(),
        "--port".into(),
        "7171/tcp".into(),
        "--env".into(),
        format!("KILN_DATA={DATA_DIR}"),
        "--env".into(),
        "KILN_LISTEN=0.0.0.0:7171".into(),
        "--env".into(),
        "PATH=/usr/local/bin:/bin".into(),
        "--created-by".into(),
        "kiln image build (buildah, no Docker daemon)".into(),
        "--os".into(),
        "linux".into(),
        "--arch".into(),
        host_arch().into(),
    ];
    for label in labels {
        config.push("--label".into());
        config.push(label);
    }
    config.push(container.into());
    println!("  buildah config (entrypoint {BINARY_IN_IMAGE}, user {UID}, labels)");
    buildah.output(&config.iter().map(String::as_str).collect::<Vec<_>>())?;
    println!("  buildah commit");
    buildah.output(&["commit", "--format", "oci", "--quiet", container, name])?;
    let mut digests = Vec::new();
    for destination in destinations {
        match destination {
            Destination::Archive(path) => {
                let target = format!("oci-archive:{}", path.display());
                println!("  buildah push {target}");
                buildah.output(&["push", "--quiet", name, &target])?;
                println!("  wrote {} ({} MiB)", path.display(), file_size(path)? >> 20);
            }
            Destination::Registry { reference, creds, tls_verify } => {
                let digest_file = buildah.dir.join("digest");
                let mut args: Vec<String> = vec![
                    "push".into(),
                    "--quiet".into(),
                    format!("--tls-verify={tls_verify}"),
                    "--digestfile".into(),
                    digest_file.to_string_lossy().into_owned(),
                ];
                if let Some(creds) = creds {
                    // In a file of mode 0600, not on buildah's command line (`ps` shows that).
                    let authfile = buildah.dir.join("auth.json");
                    write_authfile(&authfile, reference, creds)?;
                    args.push("--authfile".into());
                    args.push(authfile.to_string_lossy().into_owned());
                }
                args.push(name.into());
                args.push(format!("docker://{reference}"));
                println!("  buildah push docker://{reference}");
                buildah.output(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
                let digest = std::fs::read_to_string(&digest_file)
                    .with_context(|| format!("read {}", digest_file.display()))?;
                println!("  pushed {reference}@{}", digest.trim());
                digests.push(digest.trim().to_string());
            }
        }
    }
    let _ = buildah.output(&["rmi", name]);
    Ok(digests)
}

/// buildah with its own storage (vfs, no mounts) under a temporary directory, so a build
/// never touches the host's images and needs no storage configuration.
struct Buildah {
    dir: PathBuf,
}

impl Buildah {
    fn new(dir: &Path) -> Buildah {
        Buildah { dir: dir.to_path_buf() }
    }

    /// Runs `buildah ARGS` with the private storage; its stdout, or an error with stderr.
    fn output(&self, args: &[&str]) -> Result<String> {
        let mut command = Command::new("buildah");
        command
            .arg("--root")
            .arg(self.dir.join("storage"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .env("BUILDAH_ISOLATION", "chroot");
        let out = command.output().context("cannot run buildah (install Debian's buildah)")?;
        if !out.status.success() {
            bail!(
                "buildah {} exited with {}: {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Writes a containers-auth.json for the registry of `reference` with `user:password`
/// (`creds`), readable by its owner only.
fn write_authfile(path: &Path, reference: &str, creds: &str) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let registry = reference.split('/').next().unwrap_or(reference);
    let auth = serde_json::json!({"auths": {registry: {"auth": base64(creds.as_bytes())}}});
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    file.write_all(auth.to_string().as_bytes())?;
    Ok(())
}

/// Standard base64 with padding (what auth.json's `auth` holds).
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `kiln --version` of `binary` (which also shows it runs on this host).
fn binary_version(binary: &Path) -> Result<String> {
    let out = Command::new(binary)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run {} --version", binary.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || !text.starts_with("kiln ") {
        bail!("{} --version printed {text:?}, expected `kiln <version>`", binary.display());
    }
    Ok(text)
}

/// Writes the image's files under `rootfs`; returns the shared libraries copied.
fn build_rootfs(spec: &ImageSpec, rootfs: &Path) -> Result<Vec<String>> {
    for dir in ["usr/local/bin", "bin", "etc/ssl/certs", "tmp", &DATA_DIR[1..], &AGENT_DIR[1..]] {
        std::fs::create_dir_all(rootfs.join(dir))?;
    }
    std::fs::set_permissions(rootfs.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
    let target = rootfs.join(&BINARY_IN_IMAGE[1..]);
    if spec.strip {
        let mut strip = Command::new("strip");
        strip.arg("--strip-debug").arg("-o").arg(&target).arg(&spec.binary);
        let out = strip.output().context("cannot run strip (install binutils)")?;
        if !out.status.success() {
            bail!("strip {}: {}", spec.binary.display(), String::from_utf8_lossy(&out.stderr));
        }
    } else {
        std::fs::copy(&spec.binary, &target)
            .with_context(|| format!("copy {}", spec.binary.display()))?;
    }
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))?;
    let libs = shared_libraries(&spec.binary)?;
    for lib in &libs {
        let into = rootfs.join(lib.trim_start_matches('/'));
        if let Some(parent) = into.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // The file itself (ldd names links such as libc.so.6), under the name ldd gave.
        std::fs::copy(lib, &into).with_context(|| format!("copy {lib}"))?;
    }
    if let Some(busybox) = &spec.busybox {
        std::fs::copy(busybox, rootfs.join("bin/busybox"))
            .with_context(|| format!("copy {}", busybox.display()))?;
        std::fs::set_permissions(
            rootfs.join("bin/busybox"),
            std::fs::Permissions::from_mode(0o755),
        )?;
        for applet in APPLETS {
            symlink("busybox", rootfs.join("bin").join(applet))?;
        }
    }
    std::fs::write(
        rootfs.join("etc/passwd"),
        format!(
            "root:x:0:0:root:/root:/bin/sh\nkiln:x:{UID}:{UID}:Kiln:{DATA_DIR}:/bin/sh\n\
             nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
        ),
    )?;
    std::fs::write(
        rootfs.join("etc/group"),
        format!("root:x:0:\nkiln:x:{UID}:\nnogroup:x:65534:\n"),
    )?;
    // TLS roots for HTTPS clients (S3, a remote server, a kubeconfig's https server).
    let certs = Path::new("/etc/ssl/certs/ca-certificates.crt");
    if certs.is_file() {
        std::fs::copy(certs, rootfs.join("etc/ssl/certs/ca-certificates.crt"))?;
    }
    Ok(libs)
}

/// The shared libraries `ldd` resolves for `binary` (none for a static one).
fn shared_libraries(binary: &Path) -> Result<Vec<String>> {
    let out = Command::new("ldd").arg(binary).output().context("cannot run ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.contains("not a dynamic executable") {
        return Ok(Vec::new());
    }
    let mut libs = Vec::new();
    for line in text.lines() {
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` or `/lib64/ld-linux… (0x…)`.
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            libs.push(path.to_string());
        } else if line.contains("not found") {
            bail!("ldd {}: {}", binary.display(), line.trim());
        }
    }
    Ok(libs)
}

/// A tar of `rootfs`: owned by root except the data and agent directories (the image's
/// user), names sorted and times fixed so the same inputs give the same layer.
fn make_layer(rootfs: &Path, layer: &Path) -> Result<()> {
    let tar = |args: &[&str], owner: u32| -> Result<()> {
        let out = Command::new("tar")
            .args(["--numeric-owner", "--sort=name", "--mtime=@0"])
            .arg(format!("--owner={owner}"))
            .arg(format!("--group={owner}"))
            .arg("-C")
            .arg(rootfs)
            .args(args)
            .output()
            .context("cannot run tar")?;
        if !out.status.success() {
            bail!("tar {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    };
    let layer = layer.to_string_lossy();
    let data = &DATA_DIR[1..];
    let agent = &AGENT_DIR[1..];
    tar(&["--exclude", data, "--exclude", agent, "-cf", &layer, "."], 0)?;
    tar(&["--no-recursion", "-rf", &layer, data, agent], UID)
}

/// The OCI architecture of this host.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn file_size(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path).with_context(|| format!("stat {}", path.display()))?.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_the_standard_alphabet_with_padding() {
        // RFC 4648's test vectors.
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
    }

    #[test]
    fn the_authfile_names_the_registry_of_the_reference_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        write_authfile(&path, "127.0.0.1:7171/ops/kiln:1", "kiln:secret").unwrap();
        let auth: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(auth["auths"]["127.0.0.1:7171"]["auth"], base64(b"kiln:secret"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
