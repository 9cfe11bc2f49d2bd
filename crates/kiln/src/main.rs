//! The `kiln` binary: command-line parsing and wiring only. Each command lives in its own
//! module; the work is done by the library crates.

use std::process::ExitCode;

use clap::{FromArgMatches, Parser, Subcommand, ValueEnum};

mod load;
mod remote;
mod replay;
mod run_cmd;
mod server_cmd;
mod shell;
mod view;

/// Kiln: self-hosted build and delivery pipelines that run as containers.
#[derive(Parser)]
#[command(name = "kiln", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a workflow file here, now, without a server (or `run show`: a server's run).
    Run(RunCmd),
    /// Check a workflow file and print every problem found.
    Validate {
        /// The workflow file.
        file: String,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Print the JSON Schema of workflow files (for editors).
    Schema,
    /// Run the Kiln server with its embedded agent.
    Server(server_cmd::ServerArgs),
    /// Run an agent that takes jobs from a Kiln server.
    Agent(server_cmd::AgentArgs),
    /// Store workflows on a server as pipelines (apply, list).
    Pipeline(remote::pipelines::PipelineCmd),
    /// A server's projects (list, create).
    Project(remote::pipelines::ProjectCmd),
    /// Start a run of a pipeline on a server.
    Trigger(remote::runs::TriggerArgs),
    /// List what starts the runs of a server's pipelines, with schedules' next fire times.
    Triggers(remote::triggers::TriggersArgs),
    /// List a server's runs, newest first.
    Runs(remote::runs::RunsArgs),
    /// Groups of runs started together: start several pipelines as one group, show one.
    #[command(subcommand)]
    Group(remote::groups::GroupCmd),
    /// Print a run's log (every job's, or one job's), or follow it live.
    Logs(remote::logs::LogsArgs),
    /// Approve an approval stage a run waits at.
    Approve(remote::runs::DecideArgs),
    /// Reject an approval stage a run waits at (the run ends canceled).
    Reject(remote::runs::DecideArgs),
    /// Cancel a run.
    Cancel(remote::runs::RunArg),
    /// Retry a run's failed jobs in a new run.
    Retry(remote::runs::RetryArgs),
    /// List a run's artifacts, or download and extract them.
    Artifacts(remote::artifacts::ArtifactsArgs),
    /// API tokens (create, list, revoke).
    Token(remote::access::TokenCmd),
    /// Project secrets (set, list, rm).
    Secret(remote::access::SecretCmd),
    /// The pool's nodes: list, set and unset attributes, disable, enable, forget.
    Nodes(remote::pool::NodesCmd),
    /// Free capacity per node: CPUs, memory, disk, slots, host ports, attributes.
    Offers(remote::pool::OffersArgs),
    /// Per-project quotas on the pool (CPU, memory, jobs at once): list, set, unset.
    Quota(remote::pool::QuotaCmd),
    /// The elastic pool: node groups grown and shrunk with the queue through a provider
    /// hook (groups, group apply|show|delete, events).
    Pool(remote::pool_groups::PoolCmd),
    /// A project's usage: reserved CPU, memory and disk times seconds of its job attempts,
    /// by day, pipeline or node group (table, `-o json`, `-o csv`).
    Usage(remote::usage::UsageArgs),
    /// The server's OCI registry (repos, tags, public, gc, events, webhooks).
    Registry(remote::registry::RegistryCmd),
    /// Services: long-running replicated workloads (apply, list, show, scale, restart, stop,
    /// delete, history, rollback).
    Service(remote::services::ServiceCmd),
    /// Metric rules: scrape the instances of services picked by labels (apply, list, show,
    /// delete).
    Metric(remote::metrics::MetricCmd),
    /// A project's environments (dev, staging, prod): order, protection, variables and
    /// secrets (create, list, show, update, delete, set-var, set-secret, unset).
    Env(remote::environments::EnvCmd),
    /// The config center: config items rendered from templates and per-environment values
    /// (set-template, set-values, render, diff, release, approve, history, rollback, audit).
    Config(remote::config::ConfigCmd),
    /// Deploy a service file to an environment with an image of the server's registry, and
    /// follow it (or: history, list, show, approve, reject).
    Deploy(remote::deploys::DeployCmd),
    /// Roll a deployed service back to an earlier deployment (its image and config again).
    Rollback(remote::deploys::RollbackArgs),
    /// Promote a service's current deployment to the next environment (same image, that
    /// environment's config), after showing what changes.
    Promote(remote::deploys::PromoteArgs),
    /// Evict caches and expire artifacts past the server's limits now (admin); prints what
    /// was removed.
    Gc(remote::gc::GcArgs),
    /// A project's webhooks: signed POSTs of run events and registry pushes (add, list, rm).
    Webhook(remote::webhooks::WebhookCmd),
    /// Print a shell completion script (bash, zsh or fish) on stdout.
    Completions {
        /// The shell.
        shell: CompletionShell,
    },
}

/// The shells `kiln completions` writes scripts for.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum CompletionShell {
    /// Bash: `source <(kiln completions bash)`.
    Bash,
    /// Zsh: into a file on `$fpath`, named `_kiln`.
    Zsh,
    /// Fish: into `~/.config/fish/completions/kiln.fish`.
    Fish,
}

/// `kiln run`: either the local runner (`kiln run FILE [flags]`) or a subcommand about a
/// server's runs (`kiln run show RUN`). A first argument that names a subcommand selects it;
/// anything else is the local runner's file.
enum RunCmd {
    Local(run_cmd::RunArgs),
    Remote(remote::runs::RunSub),
}

impl clap::FromArgMatches for RunCmd {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        if matches.subcommand_name().is_some() {
            Ok(RunCmd::Remote(<remote::runs::RunSub as FromArgMatches>::from_arg_matches(matches)?))
        } else {
            Ok(RunCmd::Local(<run_cmd::RunArgs as FromArgMatches>::from_arg_matches(matches)?))
        }
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = RunCmd::from_arg_matches(matches)?;
        Ok(())
    }
}

impl clap::Args for RunCmd {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        let cmd = <run_cmd::RunArgs as clap::Args>::augment_args(cmd);
        remote::runs::RunSub::augment_subcommands(cmd)
            .args_conflicts_with_subcommands(true)
            .subcommand_negates_reqs(true)
            .disable_help_subcommand(true)
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        RunCmd::augment_args(cmd)
    }
}

/// How a command prints its result.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable text and tables.
    Table,
    /// JSON on stdout.
    Json,
    /// CSV on stdout, for commands that offer it (`kiln usage`); others print their table.
    Csv,
}

/// Exit code for a run that did not succeed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code for bad input (workflow file, parameters, flags, executor not available).
pub const EXIT_INVALID: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KILN_LOG")
                // kube's client logs each failed connection as an ERROR; the Kubernetes
                // executor reports those itself, in one line.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,kube_client=off")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Cmd::Run(RunCmd::Local(args)) => block_on(run_cmd::run(args)),
        Cmd::Run(RunCmd::Remote(cmd)) => block_on(remote::exit(remote::runs::run_sub(cmd))),
        Cmd::Pipeline(cmd) => block_on(remote::exit(remote::pipelines::pipeline(cmd))),
        Cmd::Project(cmd) => block_on(remote::exit(remote::pipelines::project(cmd))),
        Cmd::Trigger(args) => block_on(remote::exit(remote::runs::trigger(args))),
        Cmd::Triggers(args) => block_on(remote::exit(remote::triggers::triggers(args))),
        Cmd::Runs(args) => block_on(remote::exit(remote::runs::runs(args))),
        Cmd::Group(cmd) => block_on(remote::exit(remote::groups::group(cmd))),
        Cmd::Logs(args) => block_on(remote::exit(remote::logs::logs(args))),
        Cmd::Approve(args) => block_on(remote::exit(remote::runs::decide(args, true))),
        Cmd::Reject(args) => block_on(remote::exit(remote::runs::decide(args, false))),
        Cmd::Cancel(args) => block_on(remote::exit(remote::runs::cancel(args))),
        Cmd::Retry(args) => block_on(remote::exit(remote::runs::retry(args))),
        Cmd::Artifacts(args) => block_on(remote::exit(remote::artifacts::artifacts(args))),
        Cmd::Token(cmd) => block_on(remote::exit(remote::access::token(cmd))),
        Cmd::Secret(cmd) => block_on(remote::exit(remote::access::secret(cmd))),
        Cmd::Nodes(cmd) => block_on(remote::exit(remote::pool::nodes(cmd))),
        Cmd::Offers(args) => block_on(remote::exit(remote::pool::offers(args))),
        Cmd::Quota(cmd) => block_on(remote::exit(remote::pool::quota(cmd))),
        Cmd::Pool(cmd) => block_on(remote::exit(remote::pool_groups::pool(cmd))),
        Cmd::Usage(args) => block_on(remote::exit(remote::usage::usage(args))),
        Cmd::Registry(cmd) => block_on(remote::exit(remote::registry::registry(cmd))),
        Cmd::Service(cmd) => block_on(remote::exit(remote::services::service(cmd))),
        Cmd::Metric(cmd) => block_on(remote::exit(remote::metrics::metric(cmd))),
        Cmd::Env(cmd) => block_on(remote::exit(remote::environments::env(cmd))),
        Cmd::Config(cmd) => block_on(remote::exit(remote::config::config(cmd))),
        Cmd::Deploy(cmd) => block_on(remote::exit(remote::deploys::deploy(cmd))),
        Cmd::Rollback(args) => block_on(remote::exit(remote::deploys::rollback(args))),
        Cmd::Promote(args) => block_on(remote::exit(remote::deploys::promote(args))),
        Cmd::Gc(args) => block_on(remote::exit(remote::gc::gc(args))),
        Cmd::Webhook(cmd) => block_on(remote::exit(remote::webhooks::webhook(cmd))),
        Cmd::Server(args) => block_on(server_cmd::server(args)),
        Cmd::Agent(args) => block_on(server_cmd::agent(args)),
        Cmd::Validate { file, output } => load::validate(&file, output),
        Cmd::Completions { shell } => {
            let shell = match shell {
                CompletionShell::Bash => clap_complete::Shell::Bash,
                CompletionShell::Zsh => clap_complete::Shell::Zsh,
                CompletionShell::Fish => clap_complete::Shell::Fish,
            };
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "kiln", &mut script);
            // `kiln completions bash | head` is fine: a closed stdout is not an error.
            match std::io::Write::write_all(&mut std::io::stdout(), &script) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    eprintln!("error: write the completion script: {e}");
                    ExitCode::from(EXIT_INVALID)
                }
                _ => ExitCode::SUCCESS,
            }
        }
        Cmd::Schema => {
            match serde_json::to_string_pretty(&kiln_workflow::json_schema()) {
                Ok(s) => println!("{s}"),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(EXIT_INVALID);
                }
            }
            ExitCode::SUCCESS
        }
    }
}

/// Runs `f` on a multi-threaded tokio runtime.
fn block_on(f: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt.block_on(f),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::from(EXIT_INVALID)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Cli;

    /// The `kiln …` commands the web UI shows as hints (`h('code', {}, …)` in app.js), with
    /// each JavaScript expression between literals replaced by `x`.
    fn ui_hints() -> Vec<String> {
        let js = include_str!("../../kiln-ui/src/assets/app.js");
        let mut hints = Vec::new();
        for (start, _) in js.match_indices("h('code', {}, ") {
            let rest = &js[start + "h('code', {}, ".len()..];
            // The argument: quoted literals and expressions joined by `+`, up to the `)` that
            // closes `h(` at depth 0.
            let (mut depth, mut quoted, mut end) = (0i32, false, rest.len());
            for (i, c) in rest.char_indices() {
                match c {
                    '\'' => quoted = !quoted,
                    '(' if !quoted => depth += 1,
                    ')' if !quoted && depth == 0 => {
                        end = i;
                        break;
                    }
                    ')' if !quoted => depth -= 1,
                    _ => {}
                }
            }
            let text: String = rest[..end]
                .split(" + ")
                .map(|part| {
                    match part.trim().strip_prefix('\'').and_then(|p| p.strip_suffix('\'')) {
                        Some(literal) => literal.to_string(),
                        None => "x".to_string(),
                    }
                })
                .collect();
            if text.starts_with("kiln ") {
                hints.push(text);
            }
        }
        hints
    }

    #[test]
    fn every_command_the_web_ui_suggests_parses() {
        let hints = ui_hints();
        assert!(hints.len() >= 8, "{hints:#?}");
        for hint in &hints {
            let args: Vec<&str> = hint.split_whitespace().collect();
            if let Err(e) = Cli::try_parse_from(&args) {
                panic!("the UI suggests `{hint}`, which kiln refuses:\n{e}");
            }
        }
    }
}
