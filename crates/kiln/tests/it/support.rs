//! Helpers: run the binary, find the examples, ask the Docker CLI what is left over.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Path of an example file.
pub fn example(name: &str) -> String {
    root().join("examples").join(name).display().to_string()
}

/// A `kiln` command with a clean environment for the executor choice.
pub fn kiln() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    cmd.env_remove("KILN_EXECUTOR").env("NO_COLOR", "1");
    cmd
}

/// Runs `kiln ARGS` and returns its output.
pub fn run(args: &[&str]) -> Output {
    kiln().args(args).output().expect("kiln binary runs")
}

/// Stdout and stderr as text, for assertions and failure messages.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts the exit code, printing both streams when it differs.
pub fn assert_code(out: &Output, code: i32) -> (String, String) {
    let (stdout, stderr) = text(out);
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit code\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    (stdout, stderr)
}

/// Panics with a clear message unless a Docker engine answers (the test command starts one).
pub fn require_docker() {
    let ok = Command::new("docker")
        .args(["version", "--format", "{{.Server.APIVersion}}"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "no Docker engine answers (DOCKER_HOST={:?}): run `cargo xtask ci` or `cargo xtask images`, which start one",
        std::env::var("DOCKER_HOST").ok()
    );
}

/// The run id `kiln run` announces on stderr ("run <id> of <name> ...").
pub fn run_id(stderr: &str) -> String {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("run ").and_then(|r| r.split_whitespace().next()))
        .unwrap_or_else(|| panic!("no run id announced in:\n{stderr}"))
        .to_string()
}

/// Containers, networks and volumes of run `id` that still exist.
pub fn leftovers(id: &str) -> Vec<String> {
    let filter = format!("label=kiln.run={id}");
    let mut left = Vec::new();
    for (what, args) in [
        ("container", vec!["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"]),
        ("network", vec!["network", "ls", "--filter", &filter, "--format", "{{.Name}}"]),
        ("volume", vec!["volume", "ls", "--filter", &filter, "--format", "{{.Name}}"]),
    ] {
        let out = Command::new("docker").args(&args).output().expect("docker CLI runs");
        for line in String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.trim().is_empty()) {
            left.push(format!("{what} {line}"));
        }
    }
    left
}
