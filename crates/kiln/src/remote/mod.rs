//! The client commands: `kiln pipeline`, `project`, `trigger`, `runs`, `run show`, `group`,
//! `logs`, `approve`, `reject`, `cancel`, `retry`, `artifacts`, `token`, `secret`, `registry`,
//! `triggers`, `env`, `config`, `deploy`, `rollback` and `promote` talk to a Kiln
//! server through `kiln_client::Client`. This module holds what they share: the connection
//! options, the error type with its exit codes, and table and time formatting.
//!
//! Conventions: results on stdout (a table, or with `-o json` the API objects as JSON),
//! notes and errors on stderr; exit code 0 on success, [`EXIT_FAILED`] for a run that did not
//! succeed, [`EXIT_INVALID`] for everything else that went wrong (bad input, an API error,
//! an unreachable server).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Utc};
use comfy_table::{Cell, Color, ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use kiln_api::Diagnostic;
use kiln_client::{Client, ClientError};
use serde::Serialize;

use crate::{EXIT_FAILED, EXIT_INVALID, Format};

pub mod access;
pub mod arrays;
pub mod artifacts;
pub mod config;
pub mod deploys;
pub mod environments;
pub mod gc;
pub mod groups;
pub mod logs;
pub mod metrics;
pub mod pipelines;
pub mod pool;
pub mod registry;
pub mod runs;
pub mod scans;
pub mod service_logs;
pub mod services;
pub mod triggers;
pub mod usage;
pub mod watch;
pub mod webhooks;

/// `println!` for results: stops the process quietly when stdout is closed (`kiln logs RUN |
/// head`) instead of panicking.
macro_rules! outln {
    () => {
        $crate::remote::write_out(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::remote::write_out(format_args!($($arg)*))
    };
}
pub(crate) use outln;

/// Writes one line to stdout; exits with success when the reader has gone away.
pub fn write_out(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let written = out.write_fmt(args).and_then(|()| out.write_all(b"\n"));
    if let Err(e) = written
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

/// Server used when neither `--server` nor `KILN_SERVER` says otherwise.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7171";

/// Project used when neither `--project` nor `KILN_PROJECT` says otherwise.
pub const DEFAULT_PROJECT: &str = "default";

/// Connection and output options shared by every client command (global: they may follow a
/// subcommand, as in `kiln pipeline apply f.yml --server …`).
#[derive(Debug, Clone, clap::Args)]
pub struct Conn {
    /// URL of the Kiln server.
    #[arg(long, env = "KILN_SERVER", default_value = DEFAULT_SERVER, global = true)]
    pub server: String,
    /// API token [default: the first admin token `kiln server` saved in
    /// `$KILN_DATA/admin.token` or `./kiln-data/admin.token`, when it exists].
    #[arg(long, env = "KILN_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Output format: tables, or the API's objects as JSON.
    #[arg(short, long, value_enum, default_value_t = Format::Table, global = true)]
    pub output: Format,
}

impl Conn {
    /// The token: `--token`/`KILN_TOKEN`, else the admin token file of a local server.
    pub fn resolve_token(&self) -> Result<String, Fail> {
        if let Some(t) = self.token.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            return Ok(t.to_string());
        }
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(data) = std::env::var_os("KILN_DATA").filter(|d| !d.is_empty()) {
            candidates.push(PathBuf::from(data).join("admin.token"));
        }
        candidates.push(PathBuf::from("kiln-data").join("admin.token"));
        for path in &candidates {
            if let Ok(text) = std::fs::read_to_string(path) {
                let token = text.trim();
                if !token.is_empty() {
                    return Ok(token.to_string());
                }
            }
        }
        Err(Fail::invalid(format!(
            "no API token: set KILN_TOKEN (or pass --token); `kiln token create` makes one, and \
             `kiln server` saves its first admin token in <data>/admin.token (looked in {})",
            candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        )))
    }

    /// A client of the server with the resolved token.
    pub fn client(&self) -> Result<Client, Fail> {
        let token = self.resolve_token()?;
        Client::new(&self.server, &token).map_err(|e| {
            Fail::invalid(format!(
                "--server {:?}: {e} (expected a URL like {DEFAULT_SERVER})",
                self.server
            ))
        })
    }
}

/// Why a client command stopped: printed as `error: …` (and diagnostics) with an exit code.
#[derive(Debug)]
pub struct Fail {
    code: u8,
    message: String,
    diagnostics: Vec<Diagnostic>,
}

impl Fail {
    /// Bad input: exit code [`EXIT_INVALID`].
    pub fn invalid(message: impl Into<String>) -> Fail {
        Fail { code: EXIT_INVALID, message: message.into(), diagnostics: Vec::new() }
    }

    /// The server's error answer, worded for people (with a hint for token problems).
    fn from_api(status: u16, error: kiln_api::ApiError) -> Fail {
        let message = match error.code.as_str() {
            kiln_api::codes::FORBIDDEN => format!("forbidden: {}", error.message),
            kiln_api::codes::UNAUTHORIZED => format!(
                "unauthorized: {} (set KILN_TOKEN or --token to a valid token)",
                error.message
            ),
            kiln_api::codes::INTERNAL => {
                format!("the server failed ({status}): {}", error.message)
            }
            _ if error.message.is_empty() => format!("{} ({status})", error.code),
            _ => error.message,
        };
        Fail { code: EXIT_INVALID, message, diagnostics: error.diagnostics }
    }

    /// Prints the error to stderr and returns its exit code.
    pub fn report(self) -> ExitCode {
        if !self.diagnostics.is_empty() {
            print_diagnostics(&self.diagnostics);
        }
        eprintln!("{} {}", console::style("error:").red().bold(), self.message);
        ExitCode::from(self.code)
    }
}

impl From<ClientError> for Fail {
    fn from(e: ClientError) -> Fail {
        match e {
            ClientError::Api { status, error } => Fail::from_api(status, error),
            ClientError::Transport(message) => Fail::invalid(message),
        }
    }
}

/// What a client command returns.
pub type CmdResult = Result<ExitCode, Fail>;

/// Awaits a client command and turns a failure into its message and exit code.
pub async fn exit(cmd: impl Future<Output = CmdResult>) -> ExitCode {
    match cmd.await {
        Ok(code) => code,
        Err(fail) => fail.report(),
    }
}

/// Prints workflow diagnostics to stderr as `file:line:col: severity: message`, and a count.
pub fn print_diagnostics(diagnostics: &[Diagnostic]) {
    for d in diagnostics {
        let style = if d.severity == "error" {
            console::Style::new().red().bold()
        } else {
            console::Style::new().yellow().bold()
        };
        eprintln!("{}", style.apply_to(d));
    }
    let errors = diagnostics.iter().filter(|d| d.severity == "error").count();
    if errors > 0 {
        eprintln!("{errors} error{} found", if errors == 1 { "" } else { "s" });
    }
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> Result<(), Fail> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Fail::invalid(format!("cannot write JSON: {e}")))?;
    outln!("{text}");
    Ok(())
}

/// An empty table in the CLI's style, with `headers`.
pub fn table(headers: &[&str]) -> CliTable {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(headers.to_vec());
    if !console::colors_enabled() {
        t.force_no_tty();
    }
    CliTable(t)
}

/// A table of the CLI that prints no terminal escape it was given: every control character
/// of its cells (`ESC`, `BEL`, C1 codes, `\r`, …) is shown escaped (`\u{1b}`), so a name or an
/// output from a server cannot move the cursor, retitle the terminal or hide text. Line
/// breaks stay (cells may hold several lines), and so do the colours the table itself gives
/// to states (`ESC [ … m`, only when colours are on).
#[derive(Debug)]
pub struct CliTable(pub Table);

impl std::ops::Deref for CliTable {
    type Target = Table;
    fn deref(&self) -> &Table {
        &self.0
    }
}

impl std::ops::DerefMut for CliTable {
    fn deref_mut(&mut self) -> &mut Table {
        &mut self.0
    }
}

impl std::fmt::Display for CliTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let colors = self.0.is_tty() && console::colors_enabled();
        f.write_str(&escape_controls(&self.0.to_string(), colors))
    }
}

/// `text` with every control character but `\n` escaped; with `keep_colors`, SGR sequences
/// (`ESC [` digits and `;` `m`: colours only) are kept.
pub fn escape_controls(text: &str, keep_colors: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c == '\u{1b}' && keep_colors {
            let body = &rest[1..];
            let params = body.strip_prefix('[').map(|b| {
                b.len() - b.trim_start_matches(|x: char| x.is_ascii_digit() || x == ';').len()
            });
            if let Some(n) = params
                && body[1 + n..].starts_with('m')
            {
                out.push_str(&rest[..n + 3]);
                rest = &rest[n + 3..];
                continue;
            }
        }
        if c.is_control() && c != '\n' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// A table cell with a run, job or gate state, coloured by what it means.
pub fn state_cell(state: &str) -> Cell {
    let cell = Cell::new(state);
    match state_color(state) {
        Some(c) => cell.fg(c),
        None => cell,
    }
}

fn state_color(state: &str) -> Option<Color> {
    match state {
        "success" | "approved" => Some(Color::Green),
        "failure" | "timeout" | "rejected" => Some(Color::Red),
        "running" | "queued" | "scheduling" => Some(Color::Cyan),
        "paused" | "waiting" | "pending" => Some(Color::Yellow),
        "canceled" | "skipped" => Some(Color::DarkGrey),
        _ => None,
    }
}

/// A run, job or gate state styled for a line of text on stdout.
pub fn styled_state(state: &str) -> String {
    let style = console::Style::new().bold();
    let style = match state {
        "success" | "approved" => style.green(),
        "failure" | "timeout" | "rejected" => style.red(),
        "running" | "queued" | "scheduling" => style.cyan(),
        "paused" | "waiting" | "pending" => style.yellow(),
        _ => style,
    };
    style.apply_to(state).to_string()
}

/// True for run states that do not change any more.
pub fn is_final(state: &str) -> bool {
    matches!(state, "success" | "failure" | "canceled" | "timeout")
}

/// A time in the local zone, to the second.
pub fn local_time(t: DateTime<Utc>) -> String {
    t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S").to_string()
}

/// An optional time, or `-`.
pub fn opt_time(t: Option<DateTime<Utc>>) -> String {
    t.map(local_time).unwrap_or_else(|| "-".into())
}

/// A duration in milliseconds as `850ms`, `4.2s`, `2m03s`, or `-`.
pub fn duration(ms: Option<u64>) -> String {
    ms.map(|ms| crate::view::human_duration(Duration::from_millis(ms)))
        .unwrap_or_else(|| "-".into())
}

/// `532 B`, `4.1 KiB`, `12.0 MiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Splits `-p KEY=VALUE` arguments.
pub fn parse_params(raw: &[String]) -> Result<Vec<(String, String)>, Fail> {
    raw.iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => Err(Fail::invalid(format!("-p {p:?}: expected KEY=VALUE"))),
        })
        .collect()
}

/// Checks a RUN argument before asking the server: a run id (a uuid) or
/// `project/pipeline#number`.
pub fn check_run(run: &str) -> Result<(), Fail> {
    let uuid = run.len() == 36
        && run.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    if uuid || kiln_client::parse_run_name(run).is_some() {
        Ok(())
    } else {
        Err(Fail::invalid(format!(
            "{run:?} is not a run: give its id or PROJECT/PIPELINE#NUMBER (like default/build#3); `kiln runs` lists them"
        )))
    }
}

/// Exit code of a run that ended in `state`: 0 for success, [`EXIT_FAILED`] otherwise.
pub fn run_exit(state: &str) -> ExitCode {
    if state == "success" { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FAILED) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_print_no_terminal_escape_they_were_given() {
        let mut t = table(&["name", "reason"]);
        t.force_no_tty();
        t.add_row(vec!["\u{1b}]0;owned\u{7}evil\u{1b}[2J", "two\nlines\r\u{9b}31m"]);
        let text = t.to_string();
        assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text:?}");
        assert!(text.contains("\\u{1b}]0;owned\\u{7}evil\\u{1b}[2J"), "{text}");
        assert!(text.contains("two") && text.contains("lines\\r\\u{9b}31m"), "{text}");
    }

    #[test]
    fn colours_the_table_gives_are_kept_and_nothing_else() {
        let kept = escape_controls("\u{1b}[38;5;2msuccess\u{1b}[39m \u{1b}]8;;x\u{7}", true);
        assert_eq!(kept, "\u{1b}[38;5;2msuccess\u{1b}[39m \\u{1b}]8;;x\\u{7}");
        assert_eq!(escape_controls("\u{1b}[31m", false), "\\u{1b}[31m");
    }
}
