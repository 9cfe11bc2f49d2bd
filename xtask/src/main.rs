//! `cargo xtask`: the project's automation (CI, tidy, test images, benchmarks), in Rust rather
//! than shell.
//!
//! Each subcommand lives in its own module and is one variant of [`Task`]; add a variant and
//! a match arm to add one.

mod api_types;
mod apt;
mod bench;
mod browser;
mod ci;
mod engine;
mod fuzz;
mod http;
mod image_cmd;
mod images;
mod kiln_image;
mod peers;
mod postgres;
mod s3s;
mod step;
mod tidy;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Kiln's development tasks.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", version, about)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

/// One development task.
#[derive(Debug, Subcommand)]
enum Task {
    /// Everything CI checks: fmt, clippy, tidy, a Docker engine with the test images, all
    /// tests.
    Ci,
    /// Checks the invariants of ARCHITECTURE.md a program can: dependency rules (pure crates,
    /// a server without executors), no anyhow in libraries, a module doc atop every file.
    Tidy,
    /// Writes the web UI's JSDoc types for the API (`crates/kiln-ui/src/assets/lib/
    /// api-types.js`) from `docs/openapi.json`.
    ApiTypes,
    /// Makes sure a Docker engine answers and holds the test images; prints its DOCKER_HOST.
    Images,
    /// Builds Kiln's OCI image (server and agent in one) with buildah, no Docker daemon:
    /// the binary, its shared libraries and a static busybox, user 10001, entrypoint
    /// `kiln`; written to an OCI archive and/or pushed to a registry (docs/install.md).
    Image {
        /// The `kiln` binary [default: target/release/kiln, built with `cargo build
        /// --release -p kiln` when missing].
        #[arg(long, value_name = "PATH")]
        binary: Option<PathBuf>,
        /// Write an OCI archive here [default: target/kiln-image.oci.tar when no --push].
        #[arg(long, value_name = "PATH")]
        archive: Option<PathBuf>,
        /// Push to this registry reference (`host:port/project/kiln:0.1.0`).
        #[arg(long, value_name = "REF")]
        push: Option<String>,
        /// `user:password` for the registry (a Kiln token: `kiln:<token>`); default: the
        /// environment variable KILN_IMAGE_CREDS.
        #[arg(long, value_name = "USER:PASSWORD")]
        creds: Option<String>,
        /// Verify the registry's TLS certificate (`--tls-verify=false` for plain HTTP).
        #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1,
              default_missing_value = "true", action = clap::ArgAction::Set)]
        tls_verify: bool,
        /// Strip debug information from the binary's copy (for debug builds).
        #[arg(long)]
        strip: bool,
        /// Leave busybox (`/bin/sh`) out of the image.
        #[arg(long)]
        no_shell: bool,
    },
    /// Runs each fuzz target (cargo-fuzz) for a bounded time, one after the other; prints
    /// executions and crashes per target and fails on a crash.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = fuzz::DEFAULT_SECONDS)]
        time: u64,
        /// Build without optimisations (`cargo fuzz build --dev`): builds in a fraction of
        /// the time, runs fewer inputs per second; what CI's short pass uses.
        #[arg(long)]
        dev: bool,
        /// Only these targets: workflow_yaml, expr, constraints, agent_protocol,
        /// oci_manifest, webhook.
        targets: Vec<String>,
    },
    /// The benchmarks, side by side with their floors: docker, engine, logs, logflood, gap, server, pool,
    /// services, config, placement, registry, s3, scan, imagecache, builds, logview (or one).
    Bench {
        /// Only this benchmark: `docker`, `engine`, `logs`, `logflood`, `gap`, `server`, `pool`, `services`,
        /// `config`, `placement`, `registry`, `s3`, `scan`, `imagecache`, `builds` or `logview`.
        only: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.task) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}`: the whole cause chain on one line, without a backtrace.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(task: Task) -> Result<()> {
    std::env::set_current_dir(workspace_root())?;
    match task {
        Task::Ci => ci::run(),
        Task::Tidy => tidy::run(),
        Task::ApiTypes => api_types::run(),
        Task::Images => images::run(),
        Task::Image { binary, archive, push, creds, tls_verify, strip, no_shell } => {
            image_cmd::run(image_cmd::Options {
                binary,
                archive,
                push,
                creds: creds.or_else(|| std::env::var("KILN_IMAGE_CREDS").ok()),
                tls_verify,
                strip,
                shell: !no_shell,
            })
        }
        Task::Fuzz { time, dev, targets } => fuzz::run(time, dev, &targets),
        Task::Bench { only } => bench::run(only.as_deref()),
    }
}

/// The workspace root (the parent of this crate), where cargo commands must run.
fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().map(PathBuf::from).unwrap_or(manifest_dir)
}
