//! `kiln run FILE`: compile, bind parameters, pick an executor, run, show, summarise.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use clap::ValueEnum;
use kiln_engine::RunState;
use kiln_exec::Executor;
use kiln_exec_docker::DockerExecutor;
use kiln_exec_process::ProcessExecutor;
use kiln_runtime::{Control, LocalRun, Update, local::new_run_id};
use kiln_workflow::plan::Plan;
use tokio::sync::mpsc;

use crate::view::View;
use crate::{EXIT_FAILED, EXIT_INVALID, Format, load};

/// Exit code after Ctrl-C.
const EXIT_INTERRUPTED: u8 = 130;

/// Arguments of `kiln run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// The workflow file.
    file: String,
    /// Set a parameter (repeatable): `-p version=1.2 -p dry_run=true`.
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// Approve this approval stage without asking (repeatable).
    #[arg(long, value_name = "STAGE")]
    approve: Vec<String>,
    /// Approve every approval stage without asking.
    #[arg(short = 'y', long)]
    yes: bool,
    /// Where jobs run: a Docker engine, host processes, or Docker when one answers.
    #[arg(long, value_enum, default_value_t = ExecutorChoice::Auto, env = "KILN_EXECUTOR")]
    executor: ExecutorChoice,
    /// Show the time of each log line (as the executor saw it).
    #[arg(short = 't', long)]
    timestamps: bool,
    /// Output format of the summary.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    output: Format,
}

/// Which executor runs the jobs.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExecutorChoice {
    /// Docker when an engine answers, else host processes (with a warning).
    Auto,
    /// The Docker Engine API (`DOCKER_HOST` or /var/run/docker.sock).
    Docker,
    /// Host processes in a temporary workspace; no images, no sidecars.
    Process,
    /// Runs nothing: every job starts and exits 0 at once, with no output. For benchmarks
    /// and pool tests (what is measured is leases, reports and the store, not the job).
    Noop,
}

fn invalid(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("{} {msg}", console::style("error:").red().bold());
    ExitCode::from(EXIT_INVALID)
}

/// Splits `-p KEY=VALUE` arguments.
fn parse_params(raw: &[String]) -> Result<Vec<(String, String)>, String> {
    raw.iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => Err(format!("-p {p:?}: expected KEY=VALUE")),
        })
        .collect()
}

/// The chosen executor, and the Docker one when it is Docker (for label clean-up).
struct Chosen {
    executor: Arc<dyn Executor>,
    docker: Option<Arc<DockerExecutor>>,
}

async fn choose_executor(choice: ExecutorChoice, plan: &Plan) -> Result<Chosen, String> {
    let process = || -> Result<Chosen, String> {
        let exec = ProcessExecutor::new(kiln_exec_process::ProcessConfig::default());
        Ok(Chosen { executor: Arc::new(exec), docker: None })
    };
    match choice {
        ExecutorChoice::Process => process(),
        ExecutorChoice::Noop => {
            Ok(Chosen { executor: Arc::new(kiln_exec::noop::NoopExecutor::new()), docker: None })
        }
        ExecutorChoice::Docker => {
            let d = Arc::new(DockerExecutor::connect_default().await.map_err(|e| e.to_string())?);
            Ok(Chosen { executor: d.clone(), docker: Some(d) })
        }
        ExecutorChoice::Auto => match DockerExecutor::connect_default().await {
            Ok(d) => {
                let d = Arc::new(d);
                Ok(Chosen { executor: d.clone(), docker: Some(d) })
            }
            Err(e) => {
                let images = plan.jobs.iter().any(|j| j.image.is_some());
                eprintln!(
                    "{} {e}; running jobs as host processes{}",
                    console::style("warning:").yellow().bold(),
                    if images { " (their images are not used)" } else { "" }
                );
                process()
            }
        },
    }
}

/// Runs `kiln run` and returns the process exit code.
pub async fn run(args: RunArgs) -> ExitCode {
    let compiled = load::compile(&args.file);
    load::print_diagnostics(&compiled.diagnostics);
    let Some(plan) = compiled.plan else {
        return ExitCode::from(EXIT_INVALID);
    };
    let given = match parse_params(&args.params) {
        Ok(p) => p,
        Err(e) => return invalid(e),
    };
    let params = match kiln_workflow::bind_params(&plan, &given) {
        Ok(p) => p,
        Err(errors) => {
            for e in &errors {
                eprintln!("{} {e}", console::style("error:").red().bold());
            }
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let approval_stages: BTreeSet<&str> = plan
        .stages
        .iter()
        .filter(|s| matches!(s.kind, kiln_workflow::plan::StageKind::Approval { .. }))
        .map(|s| s.name.as_str())
        .collect();
    if let Some(unknown) = args.approve.iter().find(|s| !approval_stages.contains(s.as_str())) {
        return invalid(format!(
            "--approve {unknown}: no approval stage of that name (approval stages: {})",
            if approval_stages.is_empty() {
                "none".to_string()
            } else {
                approval_stages.iter().copied().collect::<Vec<_>>().join(", ")
            }
        ));
    }
    let chosen = match choose_executor(args.executor, &plan).await {
        Ok(c) => c,
        Err(e) => return invalid(e),
    };
    let plan = Arc::new(plan);
    let run_id = new_run_id();
    let mut view = View::new(&plan, args.output, args.timestamps);
    view.note(&format!(
        "run {run_id} of {} ({} jobs) on the {} executor",
        plan.name,
        plan.jobs.len(),
        chosen.executor.name()
    ));

    let (updates_tx, mut updates) = mpsc::unbounded_channel();
    let (control, control_rx) = mpsc::unbounded_channel();
    let local = LocalRun {
        run_id: run_id.clone(),
        plan: plan.clone(),
        params,
        executor: chosen.executor.clone(),
    };
    let handle = tokio::spawn(local.run(updates_tx, control_rx));
    let user = std::env::var("USER").unwrap_or_else(|_| "cli".into());
    let mut interrupted = false;
    let mut sigint = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
    {
        Ok(s) => s,
        Err(e) => return invalid(format!("cannot watch for Ctrl-C: {e}")),
    };
    loop {
        tokio::select! {
            update = updates.recv() => match update {
                Some(Update::Log { job, line }) => view.log(&job, &line),
                Some(Update::Job { job, status }) => view.job(&job, &status),
                Some(Update::Paused { stage, description }) => {
                    let decision = decide(&args, &view, &stage, description.as_deref());
                    let c = if decision {
                        view.note(&format!("✔ stage {stage} approved by {user}"));
                        Control::Approve { stage, by: user.clone() }
                    } else {
                        view.note(&format!("✖ stage {stage} rejected by {user}"));
                        Control::Reject { stage, by: user.clone() }
                    };
                    let _ = control.send(c);
                }
                Some(Update::Finished(_)) => {}
                None => break,
            },
            _ = sigint.recv() => {
                if interrupted {
                    view.note("interrupted again: removing what the run created and exiting");
                    if let Some(d) = &chosen.docker {
                        let _ = d.cleanup_labelled("kiln.run", &run_id).await;
                    }
                    view.finish();
                    return ExitCode::from(EXIT_INTERRUPTED);
                }
                interrupted = true;
                view.note("canceling: killing running jobs and cleaning up (Ctrl-C again to force)");
                let _ = control.send(Control::Cancel { by: user.clone() });
            }
        }
    }
    let report = match handle.await {
        Ok(r) => r,
        Err(e) => {
            view.finish();
            eprintln!("error: the run stopped unexpectedly: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    // Belt and braces: nothing labelled with this run may outlive it.
    if let Some(d) = &chosen.docker {
        let _ = d.cleanup_labelled("kiln.run", &run_id).await;
    }
    view.summary(&report);
    match report.state {
        RunState::Success => ExitCode::SUCCESS,
        _ if interrupted => ExitCode::from(EXIT_INTERRUPTED),
        _ => ExitCode::from(EXIT_FAILED),
    }
}

/// Approve (`true`) or reject a paused stage: from flags, else by asking on a terminal.
fn decide(args: &RunArgs, view: &View, stage: &str, description: Option<&str>) -> bool {
    if args.yes || args.approve.iter().any(|s| s == stage) {
        return true;
    }
    let question = match description {
        Some(d) => format!("Approve stage {stage}? {d}"),
        None => format!("Approve stage {stage}?"),
    };
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        view.note(&format!(
            "stage {stage} waits for approval and there is no terminal to ask: \
             pass --approve {stage} or --yes"
        ));
        return false;
    }
    tokio::task::block_in_place(|| {
        view.suspend(|| {
            dialoguer::Confirm::new()
                .with_prompt(question)
                .default(false)
                .interact()
                .unwrap_or(false)
        })
    })
}
