//! `cargo xtask image`: Kiln's OCI image from a `kiln` binary (release by default), built
//! with buildah by [`crate::kiln_image`], written to an OCI archive or pushed to a registry.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::apt::Apt;
use crate::kiln_image::{self, Destination, ImageSpec};
use crate::step::{self, Steps, cargo};

/// What `cargo xtask image` was asked.
#[derive(Debug)]
pub struct Options {
    /// The binary, or None for target/release/kiln.
    pub binary: Option<PathBuf>,
    /// An OCI archive to write.
    pub archive: Option<PathBuf>,
    /// A registry reference to push to.
    pub push: Option<String>,
    /// `user:password` for the registry.
    pub creds: Option<String>,
    /// Verify the registry's TLS certificate.
    pub tls_verify: bool,
    /// Strip debug information from the binary's copy.
    pub strip: bool,
    /// Put busybox in (`/bin/sh`).
    pub shell: bool,
}

/// Default archive when neither `--archive` nor `--push` is given.
const DEFAULT_ARCHIVE: &str = "target/kiln-image.oci.tar";

/// Runs `cargo xtask image`.
pub fn run(options: Options) -> Result<()> {
    let mut steps = Steps::new(3);
    let mut apt = Apt::default();
    let busybox = steps.run("buildah and busybox-static", || ensure_tools(&mut apt))?;
    let binary = steps.run("kiln binary", || binary(options.binary.as_ref()))?;
    let mut destinations = Vec::new();
    if let Some(reference) = &options.push {
        destinations.push(Destination::Registry {
            reference: reference.clone(),
            creds: options.creds.clone(),
            tls_verify: options.tls_verify,
        });
    }
    if options.archive.is_some() || destinations.is_empty() {
        let path = options.archive.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_ARCHIVE));
        destinations.push(Destination::Archive(path));
    }
    let spec =
        ImageSpec { binary, busybox: options.shell.then_some(busybox), strip: options.strip };
    let built = steps.run("image (buildah)", || kiln_image::build(&spec, &destinations))?;
    steps.summary();
    println!("\n{}", built.version);
    for (destination, digest) in destinations
        .iter()
        .filter_map(|d| match d {
            Destination::Registry { reference, .. } => Some(reference),
            Destination::Archive(_) => None,
        })
        .zip(&built.digests)
    {
        println!("pushed {destination}@{digest}");
    }
    for destination in &destinations {
        if let Destination::Archive(path) = destination {
            println!(
                "archive {} (load with `skopeo copy oci-archive:{} …`)",
                path.display(),
                path.display()
            );
        }
    }
    Ok(())
}

/// Installs buildah and busybox-static when missing (`crate::images::ensure_build_tools`);
/// returns the static busybox's path.
fn ensure_tools(apt: &mut Apt) -> Result<PathBuf> {
    crate::images::ensure_build_tools(apt)?;
    let files = step::output(std::process::Command::new("dpkg").args(["-L", "busybox-static"]))?;
    files
        .lines()
        .map(PathBuf::from)
        .find(|p| p.file_name().is_some_and(|n| n == "busybox") && p.is_file())
        .context("busybox-static is installed but holds no busybox binary")
}

/// The binary given, or target/release/kiln (built when missing).
fn binary(given: Option<&PathBuf>) -> Result<PathBuf> {
    if let Some(path) = given {
        if !path.is_file() {
            bail!("--binary {}: no such file", path.display());
        }
        println!("using {}", path.display());
        return Ok(path.clone());
    }
    let release = PathBuf::from("target/release/kiln");
    if release.is_file() {
        println!("using {} (rebuild it with `cargo build --release -p kiln`)", release.display());
    } else {
        step::run(cargo().args(["build", "--release", "-p", "kiln"]))?;
    }
    Ok(release)
}
