//! `cargo xtask`: the project's automation (CI, tidy, test images, benchmarks), in Rust rather
//! than shell.
//!
//! Each subcommand lives in its own module and is one variant of [`Task`]; add a variant and
//! a match arm to add one.

mod apt;
mod bench;
mod browser;
mod ci;
mod engine;
mod fuzz;
mod http;
mod images;
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
    /// Makes sure a Docker engine answers and holds the test images; prints its DOCKER_HOST.
    Images,
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
    /// services, config, placement, registry, s3, scan, imagecache, builds (or one).
    Bench {
        /// Only this benchmark: `docker`, `engine`, `logs`, `logflood`, `gap`, `server`, `pool`, `services`,
        /// `config`, `placement`, `registry`, `s3`, `scan`, `imagecache` or `builds`.
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
        Task::Images => images::run(),
        Task::Fuzz { time, dev, targets } => fuzz::run(time, dev, &targets),
        Task::Bench { only } => bench::run(only.as_deref()),
    }
}

/// The workspace root (the parent of this crate), where cargo commands must run.
fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().map(PathBuf::from).unwrap_or(manifest_dir)
}
