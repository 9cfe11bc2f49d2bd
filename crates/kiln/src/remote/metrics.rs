//! `kiln metric`: apply a metric rule file (`kind: metric`), list a project's rules, show a
//! rule with its targets as its last scrape saw them, delete one. Tables, or the API's
//! objects with `-o json`.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use comfy_table::{Cell, Color};
use kiln_api::metric::{ApplyMetricRule, MetricRuleInfo};

use super::services::diagnostic;
use super::{CmdResult, Conn, Fail, outln, print_diagnostics, print_json, table};
use crate::Format;

/// `kiln metric`.
#[derive(Debug, Args)]
pub struct MetricCmd {
    #[command(subcommand)]
    cmd: MetricSub,
    /// The project.
    #[arg(long, short = 'p', env = "KILN_PROJECT", global = true)]
    project: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, Subcommand)]
enum MetricSub {
    /// Apply a metric rule file (`kind: metric`): the server scrapes the instances its selector
    /// picks from then on.
    Apply {
        /// The metric rule file.
        file: String,
    },
    /// List the project's metric rules: selector, port, path, interval, targets up.
    #[command(alias = "ls")]
    List,
    /// A rule and its targets: instance, URL, up, samples, last scrape, error.
    Show {
        /// The rule.
        name: String,
    },
    /// Stop a rule and forget it (its samples and history go).
    #[command(alias = "rm")]
    Delete {
        /// The rule.
        name: String,
    },
}

/// Runs `kiln metric …`.
pub async fn metric(cmd: MetricCmd) -> CmdResult {
    let client = cmd.conn.client()?;
    let json = cmd.conn.output == Format::Json;
    let project = cmd
        .project
        .clone()
        .ok_or_else(|| Fail::invalid("which project? pass --project P (or set KILN_PROJECT)"))?;
    match cmd.cmd {
        MetricSub::Apply { file } => {
            let yaml = std::fs::read_to_string(&file)
                .map_err(|e| Fail::invalid(format!("cannot read {file}: {e}")))?;
            // Checked here first: every problem at file:line:col, nothing sent.
            let compiled = kiln_workflow::compile_metric(&file, &yaml);
            let diagnostics: Vec<kiln_api::Diagnostic> =
                compiled.diagnostics.iter().map(diagnostic).collect();
            let Some(rule) = compiled.rule else {
                return Err(Fail {
                    message: format!("{file} was not applied: fix the errors above"),
                    diagnostics,
                    ..Fail::invalid("")
                });
            };
            print_diagnostics(&diagnostics);
            let body = ApplyMetricRule { yaml, file: Some(file.clone()) };
            let r = client.apply_metric_rule(&project, &rule.name, &body).await?;
            if json {
                print_json(&r)?;
            } else {
                outln!(
                    "metric rule {}/{}: {} every {} on port {} of the services with {}",
                    r.project,
                    r.name,
                    r.path,
                    duration(r.interval_ms),
                    r.port,
                    r.selector
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        MetricSub::List => {
            let list = client.metric_rules(&project).await?;
            if json {
                print_json(&list)?;
            } else if list.is_empty() {
                outln!("no metric rules (apply one with `kiln metric apply FILE --project P`)");
            } else {
                let mut t = table(&[
                    "RULE", "SELECTOR", "PORT", "PATH", "FORMAT", "INTERVAL", "UP", "LABELS",
                ]);
                for r in &list {
                    let up = r.targets.iter().filter(|t| t.up).count();
                    let labels: Vec<String> =
                        r.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    t.add_row(vec![
                        Cell::new(&r.name),
                        Cell::new(&r.selector),
                        Cell::new(&r.port),
                        Cell::new(&r.path),
                        Cell::new(&r.format),
                        Cell::new(duration(r.interval_ms)),
                        Cell::new(format!("{up}/{}", r.targets.len())),
                        Cell::new(labels.join(",")),
                    ]);
                }
                outln!("{t}");
            }
            Ok(ExitCode::SUCCESS)
        }
        MetricSub::Show { name } => {
            let r = client.metric_rule(&project, &name).await?;
            if json {
                print_json(&r)?;
            } else {
                print_rule(&r);
            }
            Ok(ExitCode::SUCCESS)
        }
        MetricSub::Delete { name } => {
            client.delete_metric_rule(&project, &name).await?;
            if json {
                print_json(
                    &serde_json::json!({ "project": project, "rule": name, "deleted": true }),
                )?;
            } else {
                outln!("metric rule {project}/{name} deleted");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn duration(ms: u64) -> String {
    humantime::format_duration(Duration::from_millis(ms)).to_string()
}

fn print_rule(r: &MetricRuleInfo) {
    outln!(
        "metric rule {}/{}: selector {}, port {}, path {}, format {}, every {} (timeout {})",
        r.project,
        r.name,
        r.selector,
        r.port,
        r.path,
        r.format,
        duration(r.interval_ms),
        duration(r.timeout_ms)
    );
    if r.targets.is_empty() {
        outln!(
            "no targets: no healthy instance of a service matching the selector has port {}",
            r.port
        );
        return;
    }
    let mut t = table(&[
        "SERVICE",
        "SLOT",
        "INSTANCE",
        "NODE",
        "URL",
        "STATE",
        "SAMPLES",
        "LAST SCRAPE",
        "TOOK",
        "ERROR",
    ]);
    for x in &r.targets {
        t.add_row(vec![
            Cell::new(&x.service),
            Cell::new(x.slot),
            Cell::new(&x.instance),
            Cell::new(x.node.as_deref().unwrap_or("-")),
            Cell::new(&x.url),
            if x.up { Cell::new("up").fg(Color::Green) } else { Cell::new("down").fg(Color::Red) },
            Cell::new(x.samples),
            Cell::new(x.last_scrape.map(|t| t.format("%H:%M:%S").to_string()).unwrap_or_default()),
            Cell::new(format!("{}ms", x.duration_ms)),
            Cell::new(x.error.as_deref().unwrap_or("")),
        ]);
    }
    outln!("{t}");
}
