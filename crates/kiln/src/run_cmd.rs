//! `kiln run FILE`: compile, bind parameters, pick an executor, resolve the `source` commit,
//! set up what the server's agent would (variables, artifacts, caches), run, show, summarise.
//! What one machine cannot do is said at start, one warning line each.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::ValueEnum;
use kiln_engine::RunState;
use kiln_exec::Executor;
use kiln_exec_docker::DockerExecutor;
use kiln_exec_process::ProcessExecutor;
use kiln_runtime::checkout::{self, Checkout};
use kiln_runtime::{Control, LocalRun, LocalSetup, Update, local::new_run_id};
use kiln_workflow::plan::Plan;
use kiln_workflow::run_env::{CommitFacts, RunFacts, run_env};
use tokio::sync::mpsc;

use crate::view::View;
use crate::{EXIT_FAILED, EXIT_INVALID, Format, load};

/// Exit code after Ctrl-C.
const EXIT_INTERRUPTED: u8 = 130;

/// Arguments of `kiln run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// The workflow file.
    #[arg(required_unless_present = "replay")]
    pub(crate) file: Option<String>,
    /// Run ONE job of a server's run here, with the inputs it had there: the workflow it ran,
    /// its params, its commit, the outputs and artifacts of the jobs it needs
    /// (`project/pipeline#N` or a run id; KILN_SERVER and KILN_TOKEN as for client commands).
    #[arg(long, value_name = "RUN", conflicts_with_all = ["file", "params", "approve"])]
    pub(crate) replay: Option<String>,
    /// With --replay: the job to run [default: the first job that failed on the server].
    #[arg(long, value_name = "JOB", requires = "replay")]
    pub(crate) job: Option<String>,
    /// With --replay: when a step of the job fails, open a shell where it failed (the job's
    /// container or workspace, its env and directory) instead of ending.
    #[arg(long, requires = "replay")]
    pub(crate) shell: bool,
    /// With --replay: the URL of the Kiln server.
    #[arg(long, env = "KILN_SERVER", default_value = crate::remote::DEFAULT_SERVER, requires = "replay")]
    pub(crate) server: String,
    /// With --replay: the API token (as for client commands).
    #[arg(long, env = "KILN_TOKEN", hide_env_values = true, requires = "replay")]
    pub(crate) token: Option<String>,
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
    pub(crate) executor: ExecutorChoice,
    /// Show the time of each log line (as the executor saw it).
    #[arg(short = 't', long)]
    pub(crate) timestamps: bool,
    /// Output format of the summary.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub(crate) output: Format,
    /// The project the jobs see (`KILN_PROJECT`); caches are kept per project.
    #[arg(long, value_name = "NAME", default_value = "local")]
    pub(crate) project: String,
    /// Where caches are kept [default: $XDG_CACHE_HOME/kiln, else ~/.cache/kiln].
    #[arg(long, value_name = "DIR")]
    pub(crate) cache_dir: Option<PathBuf>,
    /// Neither restore nor save any job's `cache:`.
    #[arg(long)]
    pub(crate) no_cache: bool,
    /// The commit a workflow with `source:` checks out: a git repository's directory (its
    /// HEAD), or a repository and a ref, `URL@REF` (`URL` alone: its default branch)
    /// [default: the git repository of the working directory, else the `source:` itself].
    #[arg(long, value_name = "DIR|URL@REF")]
    pub(crate) source: Option<String>,
    /// Where the run keeps its artifacts
    /// [default: $XDG_STATE_HOME/kiln/runs/RUN, else ~/.local/state/kiln/runs/RUN].
    #[arg(long, value_name = "DIR")]
    pub(crate) run_dir: Option<PathBuf>,
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
    /// Pods on a Kubernetes cluster (`kiln agent` and `kiln run`; kubeconfig from
    /// `KUBECONFIG`, `~/.kube/config` or the pod's service account; see docs/kubernetes.md).
    Kubernetes,
}

pub(crate) fn warn(msg: impl std::fmt::Display) {
    eprintln!("{} {msg}", console::style("warning:").yellow().bold());
}

/// `$VAR/kiln` when `VAR` holds an absolute path, else `~/<fallback>/kiln`.
pub(crate) fn user_dir(var: &str, fallback: &str) -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(var).map(PathBuf::from)
        && dir.is_absolute()
    {
        return Some(dir.join("kiln"));
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).filter(|h| h.is_absolute())?;
    Some(home.join(fallback).join("kiln"))
}

/// The commit a local run checks out, and what its jobs are told of it.
pub(crate) struct Source {
    pub(crate) checkout: Checkout,
    pub(crate) facts: CommitFacts,
}

/// Splits `URL@REF` (`git@host:a/b.git@v1`, `https://host/a/b.git@main`); `URL` alone has
/// an empty ref. An `@` inside the URL's user part is not a ref.
pub(crate) fn split_ref(text: &str) -> (&str, &str) {
    if let Some((url, git_ref)) = text.rsplit_once('@')
        && !git_ref.is_empty()
        && !git_ref.contains(':')
        && !url.is_empty()
        && url.split_once("://").is_none_or(|(_, rest)| rest.contains('/'))
    {
        return (url, git_ref);
    }
    (text, "")
}

/// Resolves the commit `source:` checks out (see `RunArgs::source`), once for the whole run
/// so that every job gets the same one. `Ok(None)`: the workflow has no `source:`.
async fn resolve_source(
    plan: &Plan,
    arg: Option<&str>,
    view: &View,
) -> Result<Option<Source>, String> {
    let Some(source) = &plan.source else {
        if let Some(a) = arg {
            warn(format!("--source {a}: the workflow has no `source:`; nothing is checked out"));
        }
        return Ok(None);
    };
    // On a server `credentials` names a project secret; here, a variable of the environment.
    let credentials = source.credentials.as_ref().and_then(|name| std::env::var(name).ok());
    let repository = kiln_workflow::git::repository_key(&source.repository).path;
    let remote = |url: &str, git_ref: &str| {
        // Only a clone needs them; a repository on this machine does not.
        if let Some(name) = &source.credentials
            && credentials.is_none()
        {
            warn(format!(
                "`source:` names the secret {name}: set {name} in the environment to clone \
                 with it"
            ));
        }
        remote_source(url.to_string(), git_ref.to_string(), credentials.clone(), &repository)
    };
    let resolved = match arg {
        Some(a) if Path::new(a).is_dir() => local_source(Path::new(a), &repository).await,
        Some(a) => {
            let (url, git_ref) = split_ref(a);
            remote(url, git_ref).await
        }
        None => match std::env::current_dir() {
            Ok(cwd) if checkout::local_head(&cwd).await.is_ok() => {
                local_source(&cwd, &repository).await
            }
            _ => {
                view.note(&format!(
                    "not in a git repository: checking out the default branch of {}, as a run \
                     started by hand on a server does (--source DIR|URL@REF to choose)",
                    source.repository
                ));
                remote(&source.repository, "").await
            }
        },
    }?;
    Ok(Some(Source { facts: resolved.facts.with_names_from_ref(), ..resolved }))
}

/// HEAD of the git repository holding `dir`.
pub(crate) async fn local_source(dir: &Path, repository: &str) -> Result<Source, String> {
    let head =
        checkout::local_head(dir).await.map_err(|e| format!("source {}: {e}", dir.display()))?;
    if head.dirty {
        warn(format!(
            "{} has uncommitted changes: jobs get HEAD ({}) without them",
            head.toplevel,
            &head.commit[..head.commit.len().min(12)]
        ));
    }
    Ok(Source {
        checkout: Checkout {
            repository: head.toplevel,
            git_ref: head.git_ref.clone(),
            commit: head.commit.clone(),
            credentials: None,
        },
        facts: CommitFacts {
            repository: repository.to_string(),
            git_ref: head.git_ref,
            commit: head.commit,
            message: head.message,
            author: head.author,
            ..CommitFacts::default()
        },
    })
}

/// What `git_ref` of the repository at `url` points at now.
pub(crate) async fn remote_source(
    url: String,
    git_ref: String,
    credentials: Option<String>,
    repository: &str,
) -> Result<Source, String> {
    let (full_ref, commit) = checkout::remote_ref(&url, &git_ref, credentials.as_deref())
        .await
        .map_err(|e| format!("source {url}: {e}"))?;
    Ok(Source {
        checkout: Checkout {
            repository: url,
            git_ref: full_ref.clone(),
            commit: commit.clone(),
            credentials,
        },
        facts: CommitFacts {
            repository: repository.to_string(),
            git_ref: full_ref,
            commit,
            ..CommitFacts::default()
        },
    })
}

pub(crate) fn invalid(msg: impl std::fmt::Display) -> ExitCode {
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

/// Why `kiln server --executor kubernetes` is refused.
pub(crate) const KUBERNETES_AGENT_ONLY: &str = "the embedded agent cannot use the Kubernetes \
     executor: start the server with `--capacity 0` and a `kiln agent --executor kubernetes` \
     (see docs/kubernetes.md)";

/// The chosen executor, and the Docker one when it is Docker (for label clean-up).
pub(crate) struct Chosen {
    pub(crate) executor: Arc<dyn Executor>,
    pub(crate) docker: Option<Arc<DockerExecutor>>,
}

pub(crate) async fn choose_executor(choice: ExecutorChoice, plan: &Plan) -> Result<Chosen, String> {
    // `build:` jobs on Docker run in this image (as `kiln agent --builder-image`).
    let docker_config = || kiln_exec_docker::DockerConfig {
        builder_image: std::env::var("KILN_BUILDER_IMAGE").ok().filter(|i| !i.trim().is_empty()),
        ..Default::default()
    };
    let process = || -> Result<Chosen, String> {
        let exec = ProcessExecutor::new(kiln_exec_process::ProcessConfig::default());
        Ok(Chosen { executor: Arc::new(exec), docker: None })
    };
    match choice {
        ExecutorChoice::Kubernetes => {
            // Named after this process: a `kiln run` never sweeps another's pods.
            let config = kiln_exec_kube::KubeConfig {
                agent: format!("kiln-run-{}", std::process::id()),
                ..Default::default()
            };
            let exec =
                kiln_exec_kube::KubeExecutor::connect(config).await.map_err(|e| e.to_string())?;
            Ok(Chosen { executor: Arc::new(exec), docker: None })
        }
        ExecutorChoice::Process => process(),
        ExecutorChoice::Noop => {
            Ok(Chosen { executor: Arc::new(kiln_exec::noop::NoopExecutor::new()), docker: None })
        }
        ExecutorChoice::Docker => {
            let d = Arc::new(
                DockerExecutor::connect(docker_config()).await.map_err(|e| e.to_string())?,
            );
            Ok(Chosen { executor: d.clone(), docker: Some(d) })
        }
        // Service pools start on the process executor here: take it when nothing needs an
        // image.
        ExecutorChoice::Auto
            if uses_pools(plan)
                && plan.jobs.iter().all(|j| {
                    j.image.is_none() && j.pools.iter().all(|p| p.service.image.is_none())
                })
                && plan.pools.iter().all(|p| p.service.image.is_none()) =>
        {
            process()
        }
        ExecutorChoice::Auto => match DockerExecutor::connect(docker_config()).await {
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

/// Whether the workflow has service pools (its own or a job's).
fn uses_pools(plan: &Plan) -> bool {
    !plan.pools.is_empty() || plan.jobs.iter().any(|j| !j.pools.is_empty())
}

/// Where `service-pools:` is first written in `file` (`file:line:col`), for an error about it.
fn pools_at(file: &str) -> String {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .enumerate()
        .find_map(|(i, line)| {
            let col = line.find("service-pools:")?;
            line[..col].trim().is_empty().then(|| format!("{file}:{}:{}", i + 1, col + 1))
        })
        .unwrap_or_else(|| file.to_string())
}

/// Runs `kiln run` and returns the process exit code.
pub async fn run(args: RunArgs) -> ExitCode {
    if args.replay.is_some() {
        return crate::remote::exit(crate::replay::replay(args)).await;
    }
    let Some(file) = args.file.as_deref() else {
        return invalid("a workflow file (or --replay RUN) is needed");
    };
    let compiled = load::compile(file);
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
    let refused = kiln_runtime::local::server_only(&plan.jobs);
    if !refused.is_empty() {
        for why in &refused {
            eprintln!("{} {why}", console::style("error:").red().bold());
        }
        return ExitCode::from(EXIT_INVALID);
    }
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
    if args.project.is_empty()
        || args.project.contains(['/', '\\'])
        || args.project.starts_with('.')
    {
        return invalid(format!("--project {:?}: not a usable project name", args.project));
    }
    if let Some(why) = kiln_runtime::pools::server_only(&plan).into_iter().next() {
        return invalid(format!("{}: {why}", pools_at(file)));
    }
    let chosen = match choose_executor(args.executor, &plan).await {
        Ok(c) => c,
        Err(e) => return invalid(e),
    };
    if uses_pools(&plan)
        && let Some(why) = kiln_runtime::pools::supported(chosen.executor.name())
    {
        return invalid(format!("{}: {why}", pools_at(file)));
    }
    let plan = Arc::new(plan);
    let run_id = new_run_id();
    let mut view = View::new(&plan, args.output, args.timestamps);
    view.note(&format!(
        "run {run_id} of {} ({} jobs) on the {} executor",
        plan.name,
        plan.jobs.len(),
        chosen.executor.name()
    ));
    for limit in kiln_runtime::local::local_limits(&plan) {
        warn(limit);
    }
    let source = match resolve_source(&plan, args.source.as_deref(), &view).await {
        Ok(s) => s,
        Err(e) => return invalid(e),
    };
    if let Some(s) = &source {
        view.note(&format!(
            "source: {} of {}{}",
            s.checkout.commit,
            s.checkout.repository,
            if s.checkout.git_ref.is_empty() {
                String::new()
            } else {
                format!(" ({})", s.checkout.git_ref)
            }
        ));
    }
    let facts = RunFacts {
        run_id: &run_id,
        number: 1,
        project: &args.project,
        pipeline: &plan.name,
        triggered_by: "local",
    };
    let env = run_env(&facts, source.as_ref().map(|s| &s.facts));
    let caches = plan.jobs.iter().any(|j| j.cache.is_some());
    let cache_dir = if args.no_cache {
        if caches {
            view.note("--no-cache: no cache is restored or saved");
        }
        None
    } else {
        match args.cache_dir.clone().or_else(|| user_dir("XDG_CACHE_HOME", ".cache")) {
            Some(dir) => Some(dir.join(&args.project)),
            None => {
                if caches {
                    warn("no cache directory (HOME is not set): caches are off; pass --cache-dir");
                }
                None
            }
        }
    };
    let run_dir = args
        .run_dir
        .clone()
        .or_else(|| user_dir("XDG_STATE_HOME", ".local/state").map(|d| d.join("runs")))
        .map(|d| if args.run_dir.is_some() { d } else { d.join(&run_id) });

    let local = LocalRun {
        run_id: run_id.clone(),
        plan: plan.clone(),
        params,
        executor: chosen.executor.clone(),
        setup: LocalSetup {
            env,
            checkout: source.map(|s| s.checkout),
            run_dir,
            cache_dir,
            ..LocalSetup::default()
        },
    };
    let decide = |view: &View, stage: &str, description: Option<&str>| {
        decide(&args, view, stage, description)
    };
    watch(local, &chosen, &mut view, &decide).await
}

/// Runs `local` to its end, showing it in `view`: approvals answered by `decide` (`true`:
/// approve), Ctrl-C cancels (twice: removes what the run created and exits), a job paused by
/// `LocalSetup::pause_on_failure` gets a shell (`shell::open`). Prints the summary; returns
/// the exit code.
pub(crate) async fn watch(
    local: LocalRun,
    chosen: &Chosen,
    view: &mut View,
    decide: &(dyn Fn(&View, &str, Option<&str>) -> bool + Sync),
) -> ExitCode {
    let run_id = local.run_id.clone();
    let (updates_tx, mut updates) = mpsc::unbounded_channel();
    let (control, control_rx) = mpsc::unbounded_channel();
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
                Some(Update::Log { job, line }) => {
                    view.log(&job, &line);
                    if let Some(ctl) = line.text.trim_end().strip_prefix(kiln_runtime::local::PAUSED)
                        && !crate::shell::open(view, chosen, &run_id, &job, ctl)
                    {
                        let _ = control.send(Control::Cancel { by: user.clone() });
                    }
                }
                Some(Update::Job { job, status }) => view.job(&job, &status),
                Some(Update::Paused { stage, description }) => {
                    let decision = decide(view, &stage, description.as_deref());
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
    if let Some(dir) = &report.artifacts {
        view.note(&format!("artifacts kept in {}", dir.display()));
    }
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
