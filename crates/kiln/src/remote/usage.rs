//! `kiln usage`: a project's usage (reserved CPU, memory and disk times seconds of its job
//! attempts) over a window, by day, pipeline or node group, as a table, JSON or CSV.

use std::process::ExitCode;

use clap::Args;
use kiln_api::usage::{UsageAmounts, UsageBy, UsageReport, parse_time};

use super::{CmdResult, Conn, Fail, outln, print_json, table};
use crate::Format;

/// `kiln usage`.
#[derive(Debug, Args)]
pub struct UsageArgs {
    /// The project.
    #[arg(long, short)]
    project: String,
    /// Start of the window (inclusive): an age (`7d`, `12h`, `2w`), a UTC day
    /// (`2026-12-01`) or an RFC 3339 time [default: 30 days before --until].
    #[arg(long)]
    since: Option<String>,
    /// End of the window (exclusive), in the same forms [default: now].
    #[arg(long)]
    until: Option<String>,
    /// Group by `day` (the UTC day attempts ended), `pipeline` or `node-group` (the `group`
    /// attribute of their node).
    #[arg(long, default_value = "day", value_parser = parse_by)]
    by: UsageBy,
    #[command(flatten)]
    conn: Conn,
}

fn parse_by(s: &str) -> Result<UsageBy, String> {
    s.parse()
}

/// Runs `kiln usage`.
pub async fn usage(args: UsageArgs) -> CmdResult {
    // Read here, so a typo is an error before any request, and ages count from now here.
    let now = chrono::Utc::now();
    let time = |flag: &str, v: &Option<String>| -> Result<Option<String>, Fail> {
        v.as_deref()
            .map(|v| parse_time(v, now).map(|t| t.to_rfc3339()))
            .transpose()
            .map_err(|e| Fail::invalid(format!("--{flag}: {e}")))
    };
    let since = time("since", &args.since)?;
    let until = time("until", &args.until)?;
    let client = args.conn.client()?;
    let report = client.usage(&args.project, since.as_deref(), until.as_deref(), args.by).await?;
    match args.conn.output {
        Format::Json => print_json(&report)?,
        Format::Csv => outln!("{}", csv(&report).trim_end()),
        Format::Table => print_table(&report),
    }
    Ok(ExitCode::SUCCESS)
}

/// The name of a report's key column.
fn key_header(by: UsageBy) -> &'static str {
    match by {
        UsageBy::Day => "day",
        UsageBy::Pipeline => "pipeline",
        UsageBy::NodeGroup => "node group",
    }
}

fn amounts_cells(a: &UsageAmounts) -> Vec<String> {
    vec![
        a.attempts.to_string(),
        a.seconds.to_string(),
        format!("{:.3}", a.cpu_core_seconds),
        format!("{:.3}", a.memory_gib_seconds),
        format!("{:.3}", a.disk_gib_seconds),
    ]
}

const AMOUNT_HEADERS: [&str; 5] =
    ["attempts", "seconds", "CPU core-s", "memory GiB-s", "disk GiB-s"];

fn print_table(r: &UsageReport) {
    outln!(
        "usage of project {} from {} to {} by {}",
        r.project,
        r.since.to_rfc3339(),
        r.until.to_rfc3339(),
        r.by
    );
    if r.groups.is_empty() {
        outln!("no job attempt of project {} ended in this window", r.project);
        return;
    }
    let mut headers = vec![key_header(r.by)];
    headers.extend(AMOUNT_HEADERS);
    let mut t = table(&headers);
    for g in &r.groups {
        let key = if g.key.is_empty() { "(none)".to_string() } else { g.key.clone() };
        let mut row = vec![key];
        row.extend(amounts_cells(&g.amounts));
        t.add_row(row);
    }
    let mut total = vec!["total".to_string()];
    total.extend(amounts_cells(&r.total));
    t.add_row(total);
    outln!("{t}");
}

/// One CSV field, quoted when it must be (RFC 4180).
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The report's groups as CSV: a header line, then one line per group (amounts at full
/// precision, machine-readable names).
fn csv(r: &UsageReport) -> String {
    let key = match r.by {
        UsageBy::Day => "day",
        UsageBy::Pipeline => "pipeline",
        UsageBy::NodeGroup => "node_group",
    };
    let mut out =
        format!("{key},attempts,seconds,cpu_core_seconds,memory_gib_seconds,disk_gib_seconds\n");
    for g in &r.groups {
        let a = &g.amounts;
        out.push_str(&format!(
            "{},{},{},{},{},{}\n",
            field(&g.key),
            a.attempts,
            a.seconds,
            a.cpu_core_seconds,
            a.memory_gib_seconds,
            a.disk_gib_seconds
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use kiln_api::usage::UsageGroup;

    use super::*;

    #[test]
    fn csv_quotes_what_it_must() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-12-07T00:00:00Z").unwrap().to_utc();
        let amounts = UsageAmounts {
            attempts: 2,
            seconds: 5,
            cpu_core_seconds: 2.5,
            memory_gib_seconds: 0.25,
            disk_gib_seconds: 0.0,
        };
        let r = UsageReport {
            project: "api".into(),
            since: at,
            until: at,
            by: UsageBy::Pipeline,
            groups: vec![UsageGroup { key: "a,\"b\"".into(), amounts }],
            total: amounts,
            attempts: Vec::new(),
        };
        assert_eq!(
            csv(&r),
            "pipeline,attempts,seconds,cpu_core_seconds,memory_gib_seconds,disk_gib_seconds\n\
             \"a,\"\"b\"\"\",2,5,2.5,0.25,0\n"
        );
    }
}
