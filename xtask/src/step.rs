//! Numbered steps with a header before each and its duration after, and running commands
//! with their command line echoed.

use std::ffi::OsString;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A sequence of numbered steps; stops at the first failure.
#[derive(Debug)]
pub struct Steps {
    total: usize,
    done: Vec<(String, Duration, bool)>,
}

impl Steps {
    /// Steps numbered 1..=`total`.
    pub fn new(total: usize) -> Steps {
        Steps { total, done: Vec::new() }
    }

    /// Runs step `title`: prints a header, runs `body`, prints how long it took.
    pub fn run<T>(&mut self, title: &str, body: impl FnOnce() -> Result<T>) -> Result<T> {
        let number = self.done.len() + 1;
        println!("\n==> [{number}/{}] {title}", self.total);
        let started = Instant::now();
        let result = body();
        let took = started.elapsed();
        let ok = result.is_ok();
        println!("    {} in {}", if ok { "done" } else { "FAILED" }, seconds(took));
        self.done.push((title.to_owned(), took, ok));
        result.with_context(|| format!("step {number}/{} failed: {title}", self.total))
    }

    /// Prints each step's duration.
    pub fn summary(&self) {
        println!("\nsteps:");
        for (title, took, ok) in &self.done {
            println!("  {:>8}  {}  {title}", seconds(*took), if *ok { "ok  " } else { "FAIL" });
        }
    }
}

/// `1.2s`.
pub fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// `cargo`: the one running this xtask when there is one.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo")))
}

/// Runs `command` with inherited output after echoing it; fails unless it exits 0.
pub fn run(command: &mut Command) -> Result<()> {
    let line = command_line(command);
    println!("$ {line}");
    let status = command.status().with_context(|| format!("cannot run {line}"))?;
    if !status.success() {
        bail!("{line} exited with {status}");
    }
    Ok(())
}

/// Runs `command` quietly and returns its standard output; fails unless it exits 0.
pub fn output(command: &mut Command) -> Result<String> {
    let line = command_line(command);
    let out = command.output().with_context(|| format!("cannot run {line}"))?;
    if !out.status.success() {
        bail!("{line} exited with {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The program and its arguments, space-separated.
fn command_line(command: &Command) -> String {
    let mut line = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}
