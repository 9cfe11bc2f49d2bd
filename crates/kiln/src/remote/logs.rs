//! `kiln logs RUN [JOB]`, and the live log of `kiln trigger --follow`: lines prefixed by
//! their job like `kiln run` prints them, or one JSON `LogLine` per line with `-o json`.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use console::Style;
use futures::StreamExt;
use kiln_api::{JobInfo, LogLine, RunDetail};
use kiln_client::Client;

use super::{CmdResult, Conn, Fail, is_final, outln, styled_state};
use crate::Format;
use crate::view::PALETTE;

/// Lines asked for per page.
const PAGE: u32 = 1000;

/// How often a followed run's state is looked at (to say when it waits for an approval).
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// Times the live log is reopened after the connection drops.
const RECONNECTS: u32 = 5;

/// `kiln logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The run: its id or `project/pipeline#number`.
    run: String,
    /// One job's log (default: every job's, interleaved and prefixed by job).
    job: Option<String>,
    /// Keep following the log until it ends.
    #[arg(short, long)]
    follow: bool,
    /// The job's attempt (default: the latest); with `--index`, the index's.
    #[arg(long, requires = "job")]
    attempt: Option<u32>,
    /// For an array job: the log of this index (0 to N-1; `KILN_ARRAY_INDEX`).
    #[arg(long, requires = "job")]
    index: Option<u32>,
    #[command(flatten)]
    conn: Conn,
}

/// Prints log lines: `job | text` with a colour per job, or JSON lines.
pub struct LogPrinter {
    format: Format,
    to_stderr: bool,
    width: usize,
    styles: BTreeMap<String, Style>,
}

impl LogPrinter {
    /// A printer for the lines of `jobs` (for prefix widths and colours). Text goes to
    /// stdout unless `to_stderr` (when stdout is kept for a JSON result).
    pub fn new(jobs: &[JobInfo], format: Format, to_stderr: bool) -> LogPrinter {
        LogPrinter::for_prefixes(jobs.iter().map(|j| j.id.as_str()), format, to_stderr)
    }

    /// A printer for lines prefixed by one of `prefixes` (the `job` of each line: a job, or
    /// a service's instance), each with its own colour.
    pub fn for_prefixes<'a>(
        prefixes: impl IntoIterator<Item = &'a str>,
        format: Format,
        to_stderr: bool,
    ) -> LogPrinter {
        let prefixes: Vec<&str> = prefixes.into_iter().collect();
        let styles = prefixes
            .iter()
            .enumerate()
            .map(|(i, p)| (p.to_string(), Style::new().fg(PALETTE[i % PALETTE.len()]).bold()))
            .collect();
        let width = prefixes.iter().map(|p| p.len()).max().unwrap_or(4).min(28);
        LogPrinter { format, to_stderr, width, styles }
    }

    /// Prints one line.
    pub fn line(&mut self, line: &LogLine) {
        let text = if self.format == Format::Json && !self.to_stderr {
            serde_json::to_string(line).unwrap_or_default()
        } else {
            let body = if line.stream == "stderr" {
                Style::new().dim().apply_to(&line.text).to_string()
            } else {
                line.text.clone()
            };
            match &line.job {
                Some(job) => {
                    let next = self.styles.len();
                    let style = self
                        .styles
                        .entry(job.clone())
                        .or_insert_with(|| Style::new().fg(PALETTE[next % PALETTE.len()]).bold());
                    let prefix = style.apply_to(format!("{job:>w$} |", w = self.width));
                    format!("{prefix} {body}")
                }
                None => body,
            }
        };
        if self.to_stderr {
            eprintln!("{text}");
        } else {
            outln!("{text}");
        }
    }
}

/// Follows a log live (a job's, or with `job: None` the whole run's) until it ends,
/// reopening it after the last line seen when the connection drops. With `watch`, also
/// looks at the run every few seconds to say when it waits for an approval, and stops if
/// the run has ended but its log does not close.
pub async fn follow(
    client: &Client,
    run_id: &str,
    job: Option<&str>,
    attempt: Option<u32>,
    printer: &mut LogPrinter,
    watch: bool,
) -> Result<(), Fail> {
    let mut next = 1;
    let mut reconnects = 0;
    let mut noted_pause: Option<String> = None;
    let mut ended_ticks = 0;
    'reopen: loop {
        let stream = client.follow(run_id, job, attempt, next).await?;
        let mut stream = std::pin::pin!(stream);
        let mut tick = tokio::time::interval(WATCH_EVERY);
        tick.reset();
        loop {
            tokio::select! {
                item = stream.next() => match item {
                    Some(Ok(line)) => {
                        next = line.seq + 1;
                        printer.line(&line);
                    }
                    Some(Err(e)) => {
                        reconnects += 1;
                        if reconnects > RECONNECTS {
                            return Err(e.into());
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue 'reopen;
                    }
                    None => return Ok(()),
                },
                _ = tick.tick(), if watch => {
                    let Ok(run) = client.run(run_id).await else { continue };
                    if run.run.state == "paused" && run.paused_at != noted_pause {
                        if let Some(stage) = &run.paused_at {
                            eprintln!(
                                "{} {} waits for approval of stage {stage}: `kiln approve {} {stage}` or `kiln reject …`",
                                Style::new().yellow().apply_to("⏸"),
                                run.run.full_name(),
                                run.run.full_name(),
                            );
                        }
                        noted_pause = run.paused_at.clone();
                    }
                    if is_final(&run.run.state) {
                        ended_ticks += 1;
                        if ended_ticks >= 3 {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
}

/// Waits (a bounded time) until the run has a final state, and returns it.
pub async fn final_run(client: &Client, run_id: &str) -> Result<RunDetail, Fail> {
    let mut run = client.run(run_id).await?;
    for _ in 0..120 {
        if is_final(&run.run.state) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        run = client.run(run_id).await?;
    }
    Ok(run)
}

/// The closing line of a followed run: `run default/build#3 success (4.2s)`.
pub fn print_outcome(run: &RunDetail, to_stderr: bool) {
    let s = &run.run;
    let mut line = format!(
        "run {} {} ({})",
        s.full_name(),
        styled_state(&s.state),
        super::duration(s.duration_ms)
    );
    if let Some(reason) = &s.reason {
        line.push_str(&format!(": {reason}"));
    }
    if to_stderr {
        eprintln!("{line}");
    } else {
        outln!("{line}");
    }
}

/// Runs `kiln logs`.
pub async fn logs(args: LogsArgs) -> CmdResult {
    super::check_run(&args.run)?;
    let client = args.conn.client()?;
    let run = client.run(&args.run).await?;
    if let Some(name) = &args.job {
        let Some(job) = run.jobs.iter().find(|j| &j.id == name) else {
            let jobs: Vec<&str> = run.jobs.iter().map(|j| j.id.as_str()).collect();
            return Err(Fail::invalid(format!(
                "run {} has no job `{name}` (its jobs: {})",
                run.run.full_name(),
                jobs.join(", ")
            )));
        };
        if let Some(index) = args.index {
            return index_logs(&client, &run, job, index, &args).await;
        }
        if let Some(attempt) = args.attempt
            && (attempt == 0 || attempt > job.attempts)
        {
            return Err(Fail::invalid(format!(
                "--attempt {attempt}: job `{name}` of run {} has {} attempt{}",
                run.run.full_name(),
                job.attempts,
                if job.attempts == 1 { "" } else { "s" }
            )));
        }
    }
    let id = run.run.id.clone();
    let mut printer = LogPrinter::new(&run.jobs, args.conn.output, false);
    let job = args.job.as_deref();
    if args.follow {
        follow(&client, &id, job, args.attempt, &mut printer, job.is_none()).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut from = 1;
    loop {
        let page = client.logs(&id, job, args.attempt, from, PAGE).await?;
        for line in &page.lines {
            printer.line(line);
        }
        if page.closed || page.lines.is_empty() || page.next <= from {
            break;
        }
        from = page.next;
    }
    Ok(ExitCode::SUCCESS)
}

/// `kiln logs RUN JOB --index N`: one index of an array job.
async fn index_logs(
    client: &Client,
    run: &RunDetail,
    job: &JobInfo,
    index: u32,
    args: &LogsArgs,
) -> CmdResult {
    let name = run.run.full_name();
    let Some(array) = &job.array else {
        return Err(Fail::invalid(format!(
            "--index {index}: job `{}` of run {name} is not an array job",
            job.id
        )));
    };
    if index >= array.size {
        return Err(Fail::invalid(format!(
            "--index {index}: job `{}` of run {name} has indexes 0 to {}",
            job.id,
            array.size.saturating_sub(1)
        )));
    }
    let label = format!("{}[{index}]", job.id);
    let mut printer = LogPrinter::for_prefixes([label.as_str()], args.conn.output, false);
    let id = &run.run.id;
    if args.follow {
        let stream = client.follow_index(id, &job.id, index, args.attempt, 1).await?;
        let mut stream = std::pin::pin!(stream);
        while let Some(line) = stream.next().await {
            printer.line(&line?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut from = 1;
    let mut printed = 0;
    loop {
        let page = client.index_logs(id, &job.id, index, args.attempt, from, PAGE).await?;
        for line in &page.lines {
            printer.line(line);
        }
        printed += page.lines.len();
        if page.closed || page.lines.is_empty() || page.next <= from {
            break;
        }
        from = page.next;
    }
    if printed == 0 {
        eprintln!("index {index} of job `{}` of run {name} printed nothing", job.id);
    }
    Ok(ExitCode::SUCCESS)
}
