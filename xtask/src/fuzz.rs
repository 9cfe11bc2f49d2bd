//! `cargo xtask fuzz [--time S] [TARGET...]`: runs the fuzz targets of `fuzz/` (cargo-fuzz,
//! libFuzzer) one after the other, each for a bounded time, and prints per target how long it
//! ran, how many inputs it executed and whether it crashed (with the input's path and the
//! command that replays it). cargo-fuzz is installed when missing.
//!
//! Each target runs on a working corpus (`fuzz/target/corpus/T`, where libFuzzer adds what it
//! finds) and reads the committed one (`fuzz/corpus/T`, small seeds and every input that once
//! crashed, so each run replays them first). Runs use `-s none` (no sanitizer): it works on the
//! stable toolchain, and the code fuzzed forbids `unsafe`. Full output: `fuzz/target/logs/T.log`.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::step::{self, cargo};

/// The version of cargo-fuzz installed when none is.
const CARGO_FUZZ: &str = "cargo-fuzz@0.13.2";

/// The fuzz targets, in the order they run. `oci_manifest` and `webhook` need the fuzz
/// crate's `server` feature (their parsers live in the registry and the server); it is
/// always on here, so one build serves every target.
pub const TARGETS: [&str; 6] =
    ["workflow_yaml", "expr", "constraints", "agent_protocol", "oci_manifest", "webhook"];

/// The fuzz crate's features every build and run passes.
const FEATURES: [&str; 2] = ["--features", "server"];

/// Seconds per target when `--time` is not given.
pub const DEFAULT_SECONDS: u64 = 60;

/// Longest time one input may take before libFuzzer reports it as a hang (seconds).
const INPUT_TIMEOUT: u64 = 10;

/// What one target's run did, read from libFuzzer's output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Inputs executed (`stat::number_of_executed_units`, else the last status line's `#N`).
    pub executions: u64,
    /// Inputs that crashed, hung or ran out of memory, as libFuzzer saved them.
    pub crashes: Vec<String>,
}

/// Reads libFuzzer's output (standard error) into [`Stats`].
pub fn parse_stats(output: &str) -> Stats {
    let mut stats = Stats::default();
    let mut last_status = 0;
    for line in output.lines() {
        let line = line.trim();
        if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
            if let Ok(n) = n.trim().parse() {
                stats.executions = n;
            }
        } else if let Some(rest) = line.strip_prefix('#') {
            // `#12345\tNEW    cov: …`, `#65536\tpulse  cov: …`, `#9876\tDONE   cov: …`
            let n = rest.split(|c: char| !c.is_ascii_digit()).next().unwrap_or("");
            if let Ok(n) = n.parse::<u64>() {
                last_status = last_status.max(n);
            }
        } else if let Some(path) = line.split("Test unit written to ").nth(1) {
            stats.crashes.push(path.trim().to_string());
        }
    }
    if stats.executions == 0 {
        stats.executions = last_status;
    }
    stats
}

/// Runs `only` (every target when empty) for `seconds` each, built with optimisations unless
/// `dev`.
pub fn run(seconds: u64, dev: bool, only: &[String]) -> Result<()> {
    for name in only {
        if !TARGETS.contains(&name.as_str()) {
            bail!("no fuzz target {name:?}: the targets are {}", TARGETS.join(", "));
        }
    }
    ensure_cargo_fuzz()?;
    let profile: &[&str] = if dev { &["--dev"] } else { &[] };
    println!("\n==> building the fuzz targets{}", if dev { " (--dev)" } else { "" });
    step::run(
        cargo()
            .current_dir("fuzz")
            .args(["fuzz", "build", "-s", "none"])
            .args(profile)
            .args(FEATURES),
    )?;
    let mut results = Vec::new();
    let mut failed = Vec::new();
    for target in TARGETS {
        if !only.is_empty() && !only.iter().any(|o| o == target) {
            continue;
        }
        let (took, stats) = run_target(target, seconds, profile)?;
        if !stats.crashes.is_empty() {
            failed.push(target);
        }
        results.push((target, took, stats));
    }
    println!("\nfuzz targets ({seconds} s each):");
    println!("  {:<16} {:>8} {:>12} {:>9}  result", "target", "time", "executions", "exec/s");
    for (target, took, stats) in &results {
        let rate = stats.executions as f64 / took.as_secs_f64().max(0.001);
        let result = if stats.crashes.is_empty() {
            "ok".to_string()
        } else {
            format!("CRASH: {}", stats.crashes.join(", "))
        };
        println!(
            "  {target:<16} {:>8} {:>12} {rate:>9.0}  {result}",
            step::seconds(*took),
            stats.executions
        );
    }
    if !failed.is_empty() {
        bail!(
            "{} crashed; replay an input with `cargo fuzz run -s none TARGET INPUT` in fuzz/, \
             fix it, and keep the input in fuzz/corpus/TARGET with a unit test",
            failed.join(", ")
        );
    }
    Ok(())
}

/// Installs cargo-fuzz unless `cargo fuzz` answers.
fn ensure_cargo_fuzz() -> Result<()> {
    let answers = cargo()
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !answers {
        println!("==> cargo-fuzz is missing: installing {CARGO_FUZZ}");
        step::run(cargo().args(["install", CARGO_FUZZ, "--locked"]))?;
    }
    Ok(())
}

/// Runs one (built) target for `seconds` (`profile`: `--dev` or nothing, as it was built);
/// its duration and stats.
fn run_target(target: &str, seconds: u64, profile: &[&str]) -> Result<(Duration, Stats)> {
    let fuzz = PathBuf::from("fuzz");
    let work = fuzz.join("target").join("corpus").join(target);
    let logs = fuzz.join("target").join("logs");
    fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let log_path = logs.join(format!("{target}.log"));
    println!("\n==> fuzz {target}: {seconds} s (log: {})", log_path.display());
    let mut command = cargo();
    command
        .current_dir(&fuzz)
        .args(["fuzz", "run", "-s", "none"])
        .args(profile)
        .args(FEATURES)
        .arg(target)
        .arg(relative(&work, &fuzz))
        .arg(Path::new("corpus").join(target))
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-timeout={INPUT_TIMEOUT}"))
        .arg("-print_final_stats=1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = command.spawn().context("cannot run cargo fuzz")?;
    let mut log = fs::File::create(&log_path)
        .with_context(|| format!("cannot write {}", log_path.display()))?;
    // libFuzzer writes everything to standard error; its status lines are shown every 10 s.
    let stderr = child.stderr.take().context("no standard error from cargo fuzz")?;
    let mut output = String::new();
    let mut shown = Instant::now();
    for line in BufReader::new(stderr).lines() {
        let line = line.context("cannot read cargo fuzz's output")?;
        writeln!(log, "{line}").with_context(|| format!("cannot write {}", log_path.display()))?;
        let status = line.starts_with('#') && (line.contains("pulse") || line.contains("NEW"));
        if status && shown.elapsed() >= Duration::from_secs(10) {
            println!("    {}s {line}", started.elapsed().as_secs());
            shown = Instant::now();
        } else if line.contains("ERROR") || line.contains("panicked") || line.contains("Test unit")
        {
            println!("    {line}");
        }
        output.push_str(&line);
        output.push('\n');
    }
    let status = child.wait().context("cannot wait for cargo fuzz")?;
    let took = started.elapsed();
    let mut stats = parse_stats(&output);
    for crash in &mut stats.crashes {
        // libFuzzer names the input relative to fuzz/.
        *crash = fuzz.join(crash.trim_start_matches("./")).display().to_string();
    }
    if !status.success() && stats.crashes.is_empty() {
        bail!("cargo fuzz run {target} exited with {status}; see {}", log_path.display());
    }
    println!(
        "    {target}: {} executions in {}{}",
        stats.executions,
        step::seconds(took),
        if stats.crashes.is_empty() {
            String::new()
        } else {
            format!(", CRASHED: {}", stats.crashes.join(", "))
        }
    );
    Ok((took, stats))
}

/// `path` (under `base`) relative to `base`, as the fuzzer, which runs in `base`, sees it.
fn relative(path: &Path, base: &Path) -> PathBuf {
    path.strip_prefix(base).map(Path::to_path_buf).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_are_read_from_a_run_that_ended_on_time() {
        let output = "INFO: Seed: 1234\n\
            #2\tINITED cov: 812 ft: 1201 corp: 14/3021b exec/s: 0 rss: 41Mb\n\
            #65536\tpulse  cov: 900 ft: 1500 corp: 40/9Kb lim: 652 exec/s: 21845 rss: 60Mb\n\
            #70000\tNEW    cov: 901 ft: 1501 corp: 41/9Kb lim: 652 exec/s: 21000 rss: 60Mb\n\
            Done 70123 runs in 3 second(s)\n\
            stat::number_of_executed_units: 70123\n\
            stat::average_exec_per_sec:     23374\n";
        assert_eq!(parse_stats(output), Stats { executions: 70123, crashes: vec![] });
    }

    #[test]
    fn a_crash_names_its_input_and_counts_the_runs_so_far() {
        let output = "#1024\tpulse  cov: 10 ft: 10 corp: 1/1b exec/s: 512 rss: 30Mb\n\
            thread '<unnamed>' panicked at fuzz_targets/expr.rs:40:5:\n\
            ==12== ERROR: libFuzzer: deadly signal\n\
            artifact_prefix='/w/fuzz/artifacts/expr/'; Test unit written to /w/fuzz/artifacts/expr/crash-da39a3ee\n\
            Base64: JHt7\n";
        let stats = parse_stats(output);
        assert_eq!(stats.executions, 1024);
        assert_eq!(stats.crashes, vec!["/w/fuzz/artifacts/expr/crash-da39a3ee".to_string()]);
    }

    #[test]
    fn every_target_has_a_source_and_a_committed_corpus() {
        let root = crate::workspace_root().join("fuzz");
        let manifest = fs::read_to_string(root.join("Cargo.toml")).unwrap();
        for target in TARGETS {
            assert!(
                manifest.contains(&format!("name = \"{target}\"")),
                "{target} not in fuzz/Cargo.toml"
            );
            assert!(
                root.join("fuzz_targets").join(format!("{target}.rs")).is_file(),
                "{target}.rs"
            );
            let seeds =
                fs::read_dir(root.join("corpus").join(target)).map(|d| d.count()).unwrap_or(0);
            assert!(seeds > 0, "fuzz/corpus/{target} holds no input");
        }
    }
}
