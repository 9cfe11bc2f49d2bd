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

/// Writes into `dir` a workflow whose job echoes `$SECRET_WORD`, alternates 200 lines of stdout
/// (`outN`) and stderr (`errN`), then fails with `exit 2`; returns the file's path.
pub fn interleaved(dir: &std::path::Path) -> String {
    let path = dir.join("interleaved.yml");
    std::fs::write(
        &path,
        "name: interleaved\nstages:\n  - name: s\n    jobs:\n      mix:\n        image: busybox\n        env: { SECRET_WORD: swordfish }\n        script:\n          - echo \"the word is $SECRET_WORD\"\n          - for i in $(seq 200); do echo out$i; echo err$i >&2; done\n          - sh -c 'exit 2'\n          - echo never runs\n",
    )
    .unwrap();
    path.display().to_string()
}

/// What `kiln run` printed for [`interleaved`]: each line echoed as written (`$SECRET_WORD`, not
/// its value), the 400 lines in the order the job wrote them, and the failed line's status.
pub fn assert_interleaved(stdout: &str) {
    let texts: Vec<&str> =
        stdout.lines().map(|l| l.rsplit_once(" | ").map_or(l, |(_, t)| t)).collect();
    let plain = |t: &str| kiln_logs_strip(t);
    let echoed: Vec<String> =
        texts.iter().map(|t| plain(t)).filter(|t| t.starts_with("$ ")).collect();
    assert_eq!(
        echoed,
        [
            "$ echo \"the word is $SECRET_WORD\"",
            "$ for i in $(seq 200); do echo out$i; echo err$i >&2; done",
            "$ sh -c 'exit 2'"
        ],
        "{stdout}"
    );
    assert!(texts.contains(&"the word is swordfish"), "{stdout}");
    let mixed: Vec<&str> = texts
        .iter()
        .copied()
        .filter(|t| (t.starts_with("out") || t.starts_with("err")) && t[3..].parse::<u32>().is_ok())
        .collect();
    let want: Vec<String> =
        (1..=200).flat_map(|i| [format!("out{i}"), format!("err{i}")]).collect();
    assert_eq!(mixed, want, "stdout and stderr in the order written");
    assert!(
        texts.iter().any(|t| plain(t) == "exit status 2: sh -c 'exit 2'"),
        "the failed line's status: {stdout}"
    );
    assert!(!stdout.contains("never runs\n"), "{stdout}");
}

/// `t` without ANSI escape sequences (`ESC [ … letter`).
fn kiln_logs_strip(t: &str) -> String {
    let mut out = String::new();
    let mut chars = t.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
