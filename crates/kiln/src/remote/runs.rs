//! `kiln trigger`, `kiln runs`, `kiln run show` (with the runs a run's trigger jobs
//! started), `kiln approve|reject`, `kiln cancel` and `kiln retry`.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use comfy_table::Cell;
use kiln_api::{RunDetail, RunSummary, TriggerRequest};
use kiln_client::{Client, RunQuery};

use super::logs::{LogPrinter, final_run, follow, print_outcome};
use super::watch::WatchFilter;
use super::{
    CmdResult, Conn, Fail, check_run, duration, local_time, opt_time, outln, parse_params,
    print_json, run_exit, state_cell, styled_state, table,
};
use crate::Format;

/// `kiln trigger`.
#[derive(Debug, Args)]
pub struct TriggerArgs {
    /// The pipeline: `project/pipeline`.
    pipeline: String,
    /// Set a parameter (repeatable): `-p version=1.2 -p dry_run=true`.
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// Print the run's log live, then its outcome; exit 0 only if it succeeded.
    #[arg(short, long)]
    follow: bool,
    #[command(flatten)]
    conn: Conn,
}

/// `kiln runs`.
#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Only runs of this project.
    #[arg(long)]
    project: Option<String>,
    /// Only runs of this pipeline: `project/pipeline` (or a name, with `--project`).
    #[arg(long)]
    pipeline: Option<String>,
    /// Only runs in this state (pending, running, paused, success, failure, canceled, timeout).
    #[arg(long)]
    state: Option<String>,
    /// Only the runs of this group (started together), in their order, with their states
    /// together (`kiln group show`).
    #[arg(long, conflicts_with_all = ["project", "pipeline", "state", "watch"])]
    group: Option<String>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 20)]
    limit: u32,
    /// Then keep printing a line per run event as it happens (started, waiting for approval,
    /// ended: time, run, state, reason) until Ctrl-C; with `-o json`, one JSON object a line.
    #[arg(short, long)]
    watch: bool,
    #[command(flatten)]
    conn: Conn,
}

/// `kiln run <COMMAND>`: commands about a server's runs (beside `kiln run FILE`).
#[derive(Debug, Subcommand)]
pub enum RunSub {
    /// Show a run of a server: state, stages and approvals, jobs.
    Show(ShowArgs),
}

/// `kiln run show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The run: its id or `project/pipeline#number`.
    run: String,
    #[command(flatten)]
    conn: Conn,
}

/// A command on one run (`cancel`, `retry`).
#[derive(Debug, Args)]
pub struct RunArg {
    /// The run: its id or `project/pipeline#number`.
    run: String,
    #[command(flatten)]
    conn: Conn,
}

/// `kiln retry`.
#[derive(Debug, Args)]
pub struct RetryArgs {
    /// The run: its id or `project/pipeline#number`.
    run: String,
    /// Print the new run's log live, then its outcome; exit 0 only if it succeeded.
    #[arg(short, long)]
    follow: bool,
    #[command(flatten)]
    conn: Conn,
}

/// `kiln approve` and `kiln reject`.
#[derive(Debug, Args)]
pub struct DecideArgs {
    /// The run: its id or `project/pipeline#number`.
    run: String,
    /// The approval stage waiting for a decision.
    stage: String,
    #[command(flatten)]
    conn: Conn,
}

/// `started default/build#3 (id …)`, or `queued …` while it waits for a concurrency slot.
fn print_started(run: &RunSummary, to_stderr: bool) {
    let verb = if run.state == "pending" { "queued" } else { "started" };
    let line = format!("{verb} {} (id {})", run.full_name(), run.id);
    if to_stderr {
        eprintln!("{line}");
    } else {
        outln!("{line}");
    }
}

/// Follows a run just started, prints its outcome, and exits by it.
async fn follow_new(client: &Client, run: &RunSummary, format: Format) -> CmdResult {
    let detail = client.run(&run.id).await?;
    let json = format == Format::Json;
    let mut printer = LogPrinter::new(&detail.jobs, format, json);
    follow(client, &run.id, None, None, &mut printer, true).await?;
    let detail = final_run(client, &run.id).await?;
    if json {
        print_json(&detail)?;
    } else {
        print_failed_jobs(&detail);
    }
    print_outcome(&detail, json);
    Ok(run_exit(&detail.run.state))
}

/// Runs `kiln trigger`.
pub async fn trigger(args: TriggerArgs) -> CmdResult {
    let (project, pipeline) = args.pipeline.split_once('/').ok_or_else(|| {
        Fail::invalid(format!("{:?}: expected PROJECT/PIPELINE, like default/build", args.pipeline))
    })?;
    let params = parse_params(&args.params)?.into_iter().collect();
    let client = args.conn.client()?;
    let run = client.trigger(project, pipeline, &TriggerRequest { params }).await?;
    let json = args.conn.output == Format::Json;
    if !args.follow {
        if json {
            print_json(&run)?;
        } else {
            print_started(&run, false);
        }
        return Ok(ExitCode::SUCCESS);
    }
    print_started(&run, json);
    follow_new(&client, &run, args.conn.output).await
}

/// Runs `kiln runs`.
pub async fn runs(args: RunsArgs) -> CmdResult {
    if let Some(group) = &args.group {
        let g = args.conn.client()?.group(group).await?;
        if args.conn.output == Format::Json {
            print_json(&g.runs)?;
        } else {
            super::groups::print_group(&g);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (project, pipeline) = match (&args.project, &args.pipeline) {
        (_, Some(p)) => match p.split_once('/') {
            Some((project, name)) => (Some(project.to_string()), Some(name.to_string())),
            None if args.project.is_some() => (args.project.clone(), Some(p.clone())),
            None => {
                return Err(Fail::invalid(format!(
                    "--pipeline {p:?}: expected PROJECT/PIPELINE (or pass --project)"
                )));
            }
        },
        (project, None) => (project.clone(), None),
    };
    let client = args.conn.client()?;
    let query = RunQuery { project, pipeline, state: args.state.clone(), limit: Some(args.limit) };
    let list = client.runs(&query).await?;
    let json = args.conn.output == Format::Json;
    let watch = args.watch.then(|| WatchFilter {
        project: query.project.clone(),
        pipeline: query.pipeline.clone(),
        state: args.state.clone(),
    });
    if json {
        // Watching prints JSON lines: the list is not printed first.
        match watch {
            Some(filter) => return super::watch::watch(&client, filter, true).await,
            None => print_json(&list)?,
        }
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        eprintln!("no runs");
        return match watch {
            Some(filter) => super::watch::watch(&client, filter, false).await,
            None => Ok(ExitCode::SUCCESS),
        };
    }
    let mut t = table(&["RUN", "STATE", "TRIGGERED BY", "CREATED", "DURATION", "ID"]);
    for r in &list {
        t.add_row(vec![
            Cell::new(r.full_name()),
            state_cell(&r.state),
            Cell::new(&r.triggered_by),
            Cell::new(local_time(r.created_at)),
            Cell::new(duration(r.duration_ms)),
            Cell::new(&r.id),
        ]);
    }
    outln!("{t}");
    match watch {
        Some(filter) => super::watch::watch(&client, filter, false).await,
        None => Ok(ExitCode::SUCCESS),
    }
}

/// Runs `kiln run <COMMAND>`.
pub async fn run_sub(cmd: RunSub) -> CmdResult {
    match cmd {
        RunSub::Show(args) => show(args).await,
    }
}

async fn show(args: ShowArgs) -> CmdResult {
    check_run(&args.run)?;
    let client = args.conn.client()?;
    let run = client.run(&args.run).await?;
    if args.conn.output == Format::Json {
        print_json(&run)?;
        return Ok(ExitCode::SUCCESS);
    }
    print_detail(&run);
    Ok(ExitCode::SUCCESS)
}

/// The lines `kiln run show` prints for a run's commit.
fn source_fields(src: &kiln_api::SourceInfo) -> Vec<(&'static str, String)> {
    let at = match (&src.branch, &src.tag) {
        (_, Some(tag)) => format!("tag {tag}"),
        (Some(branch), None) => format!("branch {branch}"),
        (None, None) => src.git_ref.clone(),
    };
    let mut out = vec![
        ("repository", format!("{} ({})", src.repository, src.provider)),
        ("ref", at),
        ("commit", src.commit.clone()),
    ];
    if let Some(first) = src.message.lines().next().filter(|l| !l.is_empty()) {
        out.push(("message", first.to_string()));
    }
    if !src.author.is_empty() {
        out.push(("author", src.author.clone()));
    }
    if let Some(n) = src.pull_request {
        let into = src.target_branch.as_deref().unwrap_or("?");
        out.push(("pull request", format!("#{n} into {into}")));
    }
    out
}

/// Prints a run: header, stages with their approvals, jobs.
fn print_detail(run: &RunDetail) {
    let s = &run.run;
    outln!("run {} {}", console::style(s.full_name()).bold(), styled_state(&s.state));
    let mut fields: Vec<(&str, String)> = vec![
        ("id", s.id.clone()),
        ("triggered by", format!("{} at {}", s.triggered_by, local_time(s.created_at))),
        ("started", opt_time(s.started_at)),
        ("finished", opt_time(s.finished_at)),
        ("duration", duration(s.duration_ms)),
    ];
    if let Some(reason) = &s.reason {
        fields.push(("reason", reason.clone()));
    }
    if let Some(retry_of) = &s.retry_of {
        fields.push(("retry of", retry_of.clone()));
    }
    if let Some(p) = &s.parent {
        fields.push(("started by", format!("job {} of run {} ({})", p.job, p.name, p.run)));
    }
    if let Some(group) = &s.group {
        fields.push(("group", format!("{group} (`kiln group show {group}`)")));
    }
    if let Some(src) = &s.source {
        fields.extend(source_fields(src));
    }
    if let Some(stage) = &run.paused_at {
        fields.push((
            "waiting at",
            format!("stage {stage}: `kiln approve {} {stage}` or `kiln reject …`", s.full_name()),
        ));
    }
    if let Some(params) = run.params.as_object().filter(|p| !p.is_empty()) {
        let text: Vec<String> = params
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect();
        fields.push(("params", text.join(" ")));
    }
    for (k, v) in fields {
        outln!("  {:<13} {v}", format!("{k}:"));
    }

    let mut stages = table(&["STAGE", "KIND", "GATE", "DECISION", "BY", "AT"]);
    for st in &run.stages {
        let (decision, by, at) = match &st.decision {
            Some(d) => (Cell::new(&d.decision), d.by.clone(), local_time(d.at)),
            None => (Cell::new("-"), "-".into(), "-".into()),
        };
        let name = match &st.description {
            Some(d) => format!("{}: {d}", st.name),
            None => st.name.clone(),
        };
        stages.add_row(vec![
            Cell::new(name),
            Cell::new(&st.kind),
            st.gate.as_deref().map(state_cell).unwrap_or_else(|| Cell::new("-")),
            decision,
            Cell::new(by),
            Cell::new(at),
        ]);
    }
    outln!("{stages}");

    let mut jobs = table(&["JOB", "STAGE", "STATE", "ATTEMPTS", "EXIT", "DURATION", "OUTPUTS"]);
    for j in &run.jobs {
        let outputs: Vec<String> = j.outputs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        jobs.add_row(vec![
            Cell::new(&j.id),
            Cell::new(&j.stage),
            state_cell(&j.state),
            Cell::new(j.attempts),
            Cell::new(j.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "-".into())),
            Cell::new(duration(j.duration_ms)),
            Cell::new(outputs.join("\n")),
        ]);
    }
    outln!("{jobs}");
    super::arrays::print(run);
    if !run.downstream.is_empty() {
        let mut down = table(&["JOB", "STARTED RUN", "STATE", "GROUP", "DURATION", "ID"]);
        for r in &run.downstream {
            down.add_row(vec![
                Cell::new(r.parent.as_ref().map_or("-", |p| p.job.as_str())),
                Cell::new(r.full_name()),
                state_cell(&r.state),
                Cell::new(r.group.as_deref().unwrap_or("-")),
                Cell::new(duration(r.duration_ms)),
                Cell::new(&r.id),
            ]);
        }
        outln!("{down}");
    }
    print_failed_jobs(run);
}

/// One line per job placed on a node (where, and its ports), per job that waits for a node
/// (and why), and per job that failed, timed out, was skipped or canceled with a reason.
fn print_failed_jobs(run: &RunDetail) {
    for j in &run.jobs {
        if let Some(p) = &j.placement {
            let ports: Vec<String> = p
                .ports
                .iter()
                .map(|port| format!("{}={}:{}", port.name, p.ip, port.host))
                .collect();
            let ports = if ports.is_empty() {
                String::new()
            } else {
                format!(", ports {}", ports.join(" "))
            };
            outln!("job {} {} on node {} at {}{ports}", j.id, j.state, p.node, p.ip);
        }
    }
    for j in &run.jobs {
        if let Some(why) = &j.waiting {
            outln!("job {} waits for a node: {why}", j.id);
        }
    }
    for j in &run.jobs {
        if let Some(reason) = &j.reason
            && j.state != "success"
        {
            outln!("job {} {}: {reason}", j.id, styled_state(&j.state));
        }
    }
}

/// Runs `kiln approve` (`approve = true`) or `kiln reject`.
pub async fn decide(args: DecideArgs, approve: bool) -> CmdResult {
    check_run(&args.run)?;
    let client = args.conn.client()?;
    let run = client.decide(&args.run, &args.stage, approve).await?;
    if args.conn.output == Format::Json {
        print_json(&run)?;
    } else {
        outln!(
            "{} stage {} of {} (run {})",
            if approve { "approved" } else { "rejected" },
            args.stage,
            run.full_name(),
            styled_state(&run.state)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `kiln cancel`.
pub async fn cancel(args: RunArg) -> CmdResult {
    check_run(&args.run)?;
    let client = args.conn.client()?;
    let run = client.cancel(&args.run).await?;
    if args.conn.output == Format::Json {
        print_json(&run)?;
    } else {
        // The state the server answers after the cancel: a run with nothing running (queued,
        // scheduling) has ended; a running one stops once its jobs are killed.
        if super::is_final(&run.state) {
            outln!("{} is {}", run.full_name(), styled_state(&run.state));
        } else {
            outln!(
                "canceling {}: it is {} until its running jobs are stopped",
                run.full_name(),
                styled_state(&run.state)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `kiln retry`.
pub async fn retry(args: RetryArgs) -> CmdResult {
    check_run(&args.run)?;
    let client = args.conn.client()?;
    let run = client.retry(&args.run).await?;
    let json = args.conn.output == Format::Json;
    if !args.follow {
        if json {
            print_json(&run)?;
        } else {
            print_started(&run, false);
        }
        return Ok(ExitCode::SUCCESS);
    }
    print_started(&run, json);
    follow_new(&client, &run, args.conn.output).await
}

#[cfg(test)]
mod source_tests {
    use super::source_fields;

    #[test]
    fn run_show_names_repository_ref_commit_and_request() {
        let src = kiln_api::SourceInfo {
            provider: "gitlab".into(),
            event: "pull_request".into(),
            repository: "shop/app".into(),
            git_ref: "refs/heads/feature".into(),
            branch: Some("feature".into()),
            tag: None,
            commit: "c".repeat(40),
            message: "Add the cart\n\nDetails.".into(),
            author: "Ada <ada@example.com>".into(),
            pull_request: Some(12),
            target_branch: Some("main".into()),
        };
        let text: Vec<String> =
            source_fields(&src).into_iter().map(|(k, v)| format!("{k}: {v}")).collect();
        assert_eq!(
            text,
            [
                "repository: shop/app (gitlab)".to_string(),
                "ref: branch feature".into(),
                format!("commit: {}", "c".repeat(40)),
                "message: Add the cart".into(),
                "author: Ada <ada@example.com>".into(),
                "pull request: #12 into main".into(),
            ]
        );
    }
}
