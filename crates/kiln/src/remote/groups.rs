//! `kiln group start|show` and `kiln runs --group`: runs started together (a trigger job's
//! list, or several pipelines at once, as one merge that rebuilds several repositories),
//! shown together with their states combined.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use comfy_table::Cell;
use kiln_api::{RunGroup, StartGroup};

use super::{
    CmdResult, Conn, Fail, duration, is_final, local_time, outln, parse_params, print_json,
    run_exit, state_cell, styled_state, table,
};
use crate::Format;

/// `kiln group`.
#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    /// Start pipelines together as one group: `kiln group start shop-api/ci shop-web/ci`.
    Start(StartArgs),
    /// Show a group's runs and their states together.
    Show(ShowArgs),
}

/// `kiln group start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// The pipelines, `project/pipeline` (one or more).
    #[arg(required = true)]
    pipelines: Vec<String>,
    /// Set a parameter (repeatable); each pipeline gets those it declares.
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// Wait until every run ended, printing each change; exit 0 only if all succeeded.
    #[arg(short, long)]
    wait: bool,
    #[command(flatten)]
    conn: Conn,
}

/// `kiln group show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The group's id (`kiln run show` of a run names its group).
    group: String,
    #[command(flatten)]
    conn: Conn,
}

/// Runs `kiln group`.
pub async fn group(cmd: GroupCmd) -> CmdResult {
    match cmd {
        GroupCmd::Start(args) => start(args).await,
        GroupCmd::Show(args) => {
            let client = args.conn.client()?;
            let g = client.group(&args.group).await?;
            if args.conn.output == Format::Json {
                print_json(&g)?;
            } else {
                print_group(&g);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn start(args: StartArgs) -> CmdResult {
    for p in &args.pipelines {
        if p.split_once('/').is_none_or(|(a, b)| a.is_empty() || b.is_empty()) {
            return Err(Fail::invalid(format!(
                "{p:?}: expected PROJECT/PIPELINE, like shop-api/ci"
            )));
        }
    }
    let params = parse_params(&args.params)?.into_iter().collect();
    let client = args.conn.client()?;
    let req = StartGroup { pipelines: args.pipelines.clone(), params };
    let mut g = client.start_group(&req).await?;
    let json = args.conn.output == Format::Json;
    if !json {
        outln!("started group {} ({} runs)", g.id, g.runs.len());
        print_runs(&g);
    }
    if !args.wait {
        if json {
            print_json(&g)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut seen: Vec<String> = g.runs.iter().map(|r| r.state.clone()).collect();
    while !is_final(&g.state) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        g = client.group(&g.id).await?;
        for (r, last) in g.runs.iter().zip(seen.iter_mut()) {
            if *last != r.state && !json {
                outln!("{} {}", r.full_name(), styled_state(&r.state));
            }
            last.clone_from(&r.state);
        }
    }
    if json {
        print_json(&g)?;
    } else {
        outln!("group {} {}", g.id, styled_state(&g.state));
    }
    Ok(run_exit(&g.state))
}

/// Prints a group: its header, then its runs.
pub fn print_group(g: &RunGroup) {
    outln!("group {} {}", console::style(&g.id).bold(), styled_state(&g.state));
    outln!("  {:<13} {} at {}", "started by:", g.created_by, local_time(g.created_at));
    print_runs(g);
}

fn print_runs(g: &RunGroup) {
    let mut t = table(&["RUN", "STATE", "CREATED", "DURATION", "REASON", "ID"]);
    for r in &g.runs {
        t.add_row(vec![
            Cell::new(r.full_name()),
            state_cell(&r.state),
            Cell::new(local_time(r.created_at)),
            Cell::new(duration(r.duration_ms)),
            Cell::new(r.reason.as_deref().unwrap_or("-")),
            Cell::new(&r.id),
        ]);
    }
    outln!("{t}");
}
