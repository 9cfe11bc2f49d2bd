//! `cargo xtask ci`: formatting, lints, a Docker engine with the test images, then every
//! test with `KILN_REQUIRE_DOCKER=1` and `DOCKER_HOST` set; stops at the first failing step.

use anyhow::Result;

use crate::apt::Apt;
use crate::step::{self, Steps, cargo};
use crate::{engine, images};

/// Runs the CI steps in order.
pub fn run() -> Result<()> {
    let mut steps = Steps::new(5);
    let result = run_steps(&mut steps);
    steps.summary();
    result
}

fn run_steps(steps: &mut Steps) -> Result<()> {
    steps.run("cargo fmt --all -- --check", || {
        step::run(cargo().args(["fmt", "--all", "--", "--check"]))
    })?;
    steps.run("cargo clippy --workspace --all-targets -- -D warnings", || {
        step::run(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))
    })?;
    let mut apt = Apt::default();
    let host = steps.run("Docker engine", || engine::ensure(&mut apt))?;
    steps.run("test images", || images::ensure(&host, &mut apt))?;
    steps.run("cargo test --workspace (KILN_REQUIRE_DOCKER=1)", || {
        println!("DOCKER_HOST={host}");
        step::run(
            cargo()
                // Every failing test binary is reported, not just the first.
                .args(["test", "--workspace", "--no-fail-fast"])
                .env("KILN_REQUIRE_DOCKER", "1")
                .env("DOCKER_HOST", &host),
        )
    })
}
