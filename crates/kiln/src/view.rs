//! What `kiln run` shows: live log lines prefixed by job, job state changes, a progress line,
//! and the final summary table.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use console::Style;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kiln_engine::{JobState, JobStatus, RunState};
use kiln_exec::{LogLine, Stream};
use kiln_runtime::Report;
use kiln_workflow::plan::{JobId, Plan};

use crate::Format;

/// Colours cycled over jobs (red and green are kept for status).
pub const PALETTE: [console::Color; 6] = [
    console::Color::Cyan,
    console::Color::Magenta,
    console::Color::Blue,
    console::Color::Yellow,
    console::Color::Color256(208),
    console::Color::Color256(141),
];

/// Live view of one run.
pub struct View {
    format: Format,
    timestamps: bool,
    bar: Option<ProgressBar>,
    width: usize,
    styles: BTreeMap<JobId, Style>,
    states: BTreeMap<JobId, JobState>,
}

impl View {
    /// A view of `plan`'s jobs; draws a progress bar when stderr is a terminal.
    pub fn new(plan: &Plan, format: Format, timestamps: bool) -> View {
        let styles = plan
            .jobs
            .iter()
            .enumerate()
            .map(|(i, j)| (j.id.clone(), Style::new().fg(PALETTE[i % PALETTE.len()]).bold()))
            .collect();
        let states = plan.jobs.iter().map(|j| (j.id.clone(), JobState::Pending)).collect();
        let width = plan.jobs.iter().map(|j| j.id.as_str().len()).max().unwrap_or(4).min(28);
        let bar = console::Term::stderr().is_term().then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner:.cyan} {elapsed:>4} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        let view = View { format, timestamps, bar, width, styles, states };
        view.refresh();
        view
    }

    /// Counts of jobs done, running (or queued) and waiting.
    pub fn counts(&self) -> (usize, usize, usize) {
        let done = self.states.values().filter(|s| s.is_final()).count();
        let running = self
            .states
            .values()
            .filter(|s| matches!(s, JobState::Queued | JobState::Running))
            .count();
        (done, running, self.states.len() - done - running)
    }

    fn progress_text(&self) -> String {
        let (done, running, waiting) = self.counts();
        format!("{done}/{} done · {running} running · {waiting} waiting", self.states.len())
    }

    fn refresh(&self) {
        if let Some(bar) = &self.bar {
            bar.set_message(self.progress_text());
        }
    }

    /// Prints `text` to stderr without tearing the progress bar.
    pub fn note(&self, text: &str) {
        self.out(true, text);
    }

    fn out(&self, to_stderr: bool, text: &str) {
        let print = || {
            if to_stderr {
                eprintln!("{text}");
            } else {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{text}");
            }
        };
        match &self.bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }

    /// One log line of a job.
    pub fn log(&self, job: &JobId, line: &LogLine) {
        let style = self.styles.get(job).cloned().unwrap_or_default();
        let prefix = style.apply_to(format!("{:>w$} |", job.as_str(), w = self.width));
        let text = match line.stream {
            Stream::Stdout => line.text.clone(),
            Stream::Stderr => Style::new().dim().apply_to(&line.text).to_string(),
        };
        let time = if self.timestamps {
            let local = line.time.with_timezone(&chrono::Local);
            format!("{} ", Style::new().dim().apply_to(local.format("%H:%M:%S%.3f")))
        } else {
            String::new()
        };
        // Logs go to stdout, unless stdout is reserved for the JSON report.
        self.out(self.format == Format::Json, &format!("{prefix} {time}{text}"));
    }

    /// A job changed state.
    pub fn job(&mut self, job: &JobId, status: &JobStatus) {
        let before = self.states.insert(job.clone(), status.state);
        if before == Some(status.state) && status.state != JobState::Queued {
            return;
        }
        let name = self.styles.get(job).cloned().unwrap_or_default().apply_to(job.as_str());
        let line = match status.state {
            JobState::Pending => None,
            JobState::Queued if status.attempts > 1 => {
                Some(format!("↻ {name} retrying (attempt {})", status.attempts))
            }
            JobState::Queued => None,
            JobState::Running => Some(format!("▶ {name} started")),
            JobState::Success => {
                Some(format!("{} {name} succeeded", Style::new().green().apply_to("✔")))
            }
            JobState::Failure | JobState::Timeout => Some(format!(
                "{} {name} {}{}",
                Style::new().red().apply_to("✖"),
                if status.state == JobState::Timeout { "timed out" } else { "failed" },
                status
                    .reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .or_else(|| status.exit_code.map(|c| format!(" (exit code {c})")))
                    .unwrap_or_default()
            )),
            JobState::Skipped => Some(format!(
                "↷ {name} skipped{}",
                status.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
            )),
            JobState::Canceled => Some(format!("■ {name} canceled")),
        };
        if let Some(line) = line {
            if self.bar.is_none() && status.state.is_final() {
                self.note(&format!("{line}  [{}]", self.progress_text()));
            } else {
                self.note(&line);
            }
        }
        self.refresh();
    }

    /// Runs `f` (a prompt) with the progress bar hidden.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    /// Stops the progress bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    /// Prints the final summary: a table, or the report as JSON.
    pub fn summary(&self, report: &Report) {
        self.finish();
        if self.format == Format::Json {
            let jobs: Vec<_> = report
                .jobs
                .iter()
                .map(|j| {
                    serde_json::json!({
                        "id": j.id,
                        "state": j.state,
                        "attempts": j.attempts,
                        "duration_ms": j.duration.map(|d| d.as_millis() as u64),
                        "outputs": j.outputs,
                        "exit_code": j.exit_code,
                        "reason": j.reason,
                    })
                })
                .collect();
            let mut doc =
                serde_json::json!({ "run": report.run_id, "state": report.state, "jobs": jobs });
            if let Some(dir) = &report.artifacts {
                doc["artifacts"] = serde_json::json!(dir);
            }
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
            return;
        }
        let mut table = Table::new();
        table
            .load_style(UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_header(vec!["JOB", "STATUS", "DURATION", "OUTPUTS"]);
        for j in &report.jobs {
            let outputs: Vec<String> = j.outputs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let mut status = j.state.as_str().to_string();
            if j.attempts > 1 {
                status.push_str(&format!(" ({} attempts)", j.attempts));
            }
            table.add_row(vec![
                j.id.to_string(),
                status,
                j.duration.map(human_duration).unwrap_or_else(|| "-".into()),
                outputs.join("\n"),
            ]);
        }
        // Outputs are a job's text: no terminal escape of theirs is printed raw.
        println!("{}", crate::remote::escape_controls(&table.to_string(), table.is_tty()));
        let style = match report.state {
            RunState::Success => Style::new().green().bold(),
            _ => Style::new().red().bold(),
        };
        println!("run {} {}", report.run_id, style.apply_to(report.state.as_str()));
    }
}

/// `850ms`, `4.2s`, `2m03s`.
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}
