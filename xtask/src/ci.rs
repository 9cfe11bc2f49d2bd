//! `cargo xtask ci`: formatting, lints, `cargo xtask tidy`, a Docker engine with the test
//! images, a PostgreSQL server, then every test with `KILN_REQUIRE_DOCKER=1` and `DOCKER_HOST` set, and
//! `KILN_STORE_TEST_POSTGRES` with `KILN_REQUIRE_POSTGRES=1` (so the store's and the server's
//! tests also run on PostgreSQL); stops at the first failing step. `KILN_SKIP_POSTGRES=1`
//! skips PostgreSQL: those tests then run on SQLite only. Chromium and chromedriver are
//! installed for the web UI's browser tests, which run with `KILN_REQUIRE_BROWSER=1`;
//! Debian's prometheus and distcc for the services' tests, which run with `KILN_REQUIRE_PEERS=1`;
//! the S3 server s3s-fs (`cargo install`ed when missing) for the S3 blob-store tests, named by
//! `KILN_TEST_S3S_FS`; TypeScript's `tsc` (npm-installed when missing) for the check of the
//! web UI's types, named by `KILN_TSC`.
//! The tests' fixed host ports are reserved from the kernel's ephemeral range first.
//! Last, a short pass of every fuzz target (`cargo xtask fuzz --dev --time 5`): an
//! unoptimised build (a release build of the fuzz crate, the server included, takes longer on
//! 2 cores than the rest of CI), which replays the committed corpus and tries a little more;
//! `KILN_CI_FUZZ=0` skips it. Long runs: `cargo xtask fuzz --time 600`.

use anyhow::Result;

use crate::apt::Apt;
use crate::step::{self, Steps, cargo};
use crate::{api_types, browser, engine, fuzz, images, peers, postgres, s3s, tidy};

/// Runs the CI steps in order.
pub fn run() -> Result<()> {
    let fuzz = std::env::var_os(FUZZ_VAR).is_none_or(|v| v != "0");
    let mut steps = Steps::new(if fuzz { 12 } else { 11 });
    let result = run_steps(&mut steps, fuzz);
    steps.summary();
    result
}

fn run_steps(steps: &mut Steps, with_fuzz: bool) -> Result<()> {
    steps.run("cargo fmt --all -- --check", || {
        step::run(cargo().args(["fmt", "--all", "--", "--check"]))
    })?;
    steps.run("cargo clippy --workspace --all-targets -- -D warnings", || {
        step::run(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))
    })?;
    steps.run("cargo xtask tidy", tidy::run)?;
    let mut apt = Apt::default();
    let host = steps.run("Docker engine", || engine::ensure(&mut apt))?;
    steps.run("test images", || images::ensure(&host, &mut apt))?;
    steps.run("Chromium and chromedriver", || browser::ensure(&mut apt))?;
    steps.run("test peers (prometheus, distcc)", || peers::ensure(&mut apt))?;
    let s3s_fs = steps.run("S3 server (s3s-fs)", s3s::ensure)?;
    let tsc = steps.run("TypeScript (tsc)", api_types::ensure_tsc)?;
    let skip_postgres = std::env::var("KILN_SKIP_POSTGRES").is_ok_and(|v| v == "1");
    let postgres = steps.run("PostgreSQL", || {
        if skip_postgres {
            println!("KILN_SKIP_POSTGRES=1: the store's and the server's tests run on SQLite only");
            return Ok(None);
        }
        postgres::ensure(&mut apt).map(Some)
    })?;
    let title = match postgres {
        Some(_) => {
            "cargo test --workspace (KILN_REQUIRE_DOCKER=1, KILN_REQUIRE_POSTGRES=1, KILN_REQUIRE_BROWSER=1)"
        }
        None => "cargo test --workspace (KILN_REQUIRE_DOCKER=1, KILN_REQUIRE_BROWSER=1)",
    };
    steps.run(title, || {
        println!("DOCKER_HOST={host}");
        reserve_test_ports();
        let mut test = cargo();
        // Every failing test binary is reported, not just the first.
        test.args(["test", "--workspace", "--no-fail-fast"])
            .env("KILN_REQUIRE_DOCKER", "1")
            .env("KILN_REQUIRE_BROWSER", "1")
            .env("KILN_REQUIRE_PEERS", "1")
            .env(s3s::VAR, &s3s_fs)
            .env(api_types::TSC_VAR, &tsc)
            .env("DOCKER_HOST", &host);
        if let Some(url) = &postgres {
            println!("{}={url}", postgres::URL_VAR);
            test.env(postgres::URL_VAR, url).env("KILN_REQUIRE_POSTGRES", "1");
        }
        step::run(&mut test)
    })?;
    if !with_fuzz {
        println!("the fuzz pass is off ({FUZZ_VAR}=0; `cargo xtask fuzz` runs it alone)");
        return Ok(());
    }
    let title = format!("cargo xtask fuzz --dev --time {CI_FUZZ_SECONDS}");
    steps.run(&title, || fuzz::run(CI_FUZZ_SECONDS, true, &[]))
}

/// The host ports tests bind on purpose (agents' port ranges, peers), kept out of the
/// kernel's ephemeral range so that no client socket of another test holds one first: they
/// lie inside it (32768-60999 by default). Written to `ip_local_reserved_ports`, which only
/// takes effect for automatic choices; without the right to, a note says so.
const TEST_PORTS: &str = "43000-49999";

fn reserve_test_ports() {
    let path = "/proc/sys/net/ipv4/ip_local_reserved_ports";
    match std::fs::write(path, TEST_PORTS) {
        Ok(()) => println!("reserved the tests' ports {TEST_PORTS} from ephemeral use ({path})"),
        Err(e) => println!(
            "note: could not reserve the tests' ports {TEST_PORTS} ({path}: {e}); a test's fixed \
             port may then be taken by another test's outgoing connection"
        ),
    }
}

/// Turns the short fuzz pass off (`0`).
const FUZZ_VAR: &str = "KILN_CI_FUZZ";

/// Seconds each fuzz target runs in CI: enough to replay the committed corpus (every input
/// that once crashed) and try a little more, keeping the whole pass well under a minute.
const CI_FUZZ_SECONDS: u64 = 5;
