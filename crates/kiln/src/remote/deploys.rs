//! `kiln deploy` (a service file to an environment with an image of the server's registry,
//! followed until it succeeds, fails or is rolled back; its `history`, `list`, `show`,
//! `approve` and `reject`), `kiln rollback` and `kiln promote` (the changes shown first, then
//! confirmed). Tables, or the API's objects with `-o json`.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use comfy_table::Cell;
use kiln_api::deploy::{
    DeployRequest, Deployment, PromoteChanges, PromoteOutcome, PromoteRequest, RollbackDeployment,
};
use kiln_client::Client;

use super::{
    CmdResult, Conn, Fail, local_time, outln, print_diagnostics, print_json, state_cell, table,
};
use crate::{EXIT_FAILED, EXIT_INVALID, Format};

/// How often a deployment is looked at while it is followed.
const POLL: Duration = Duration::from_millis(500);

/// `kiln deploy`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct DeployCmd {
    #[command(subcommand)]
    cmd: Option<DeploySub>,
    /// The service file (`kind: service`) to deploy.
    #[arg(required = true)]
    file: Option<String>,
    /// The environment to deploy to.
    #[arg(long, required = true)]
    env: Option<String>,
    /// An image of the server's registry: `shop/web:7`, `<registry host>/shop/web:7` or
    /// `shop/web@sha256:…`.
    #[arg(long, required = true)]
    image: Option<String>,
    /// Why, kept with the deployment.
    #[arg(long)]
    note: Option<String>,
    /// How long the new version may take to be healthy everywhere before it is rolled back
    /// (`90s`, `5m`) [default: the file's update.deadline].
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// Return once the deployment is recorded instead of following it to its end.
    #[arg(long)]
    no_wait: bool,
    /// The project.
    #[arg(long, short = 'p', env = "KILN_PROJECT", global = true)]
    project: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, Subcommand)]
enum DeploySub {
    /// The deployments of a service to an environment, newest first.
    History {
        /// The service (its file's `name`).
        service: String,
        /// The environment.
        #[arg(long)]
        env: String,
    },
    /// The deployments of the project (of one environment or service), newest first.
    #[command(alias = "ls")]
    List {
        /// Only those to this environment.
        #[arg(long)]
        env: Option<String>,
        /// Only this service's.
        #[arg(long)]
        service: Option<String>,
    },
    /// One deployment.
    Show {
        /// The service.
        service: String,
        /// The environment.
        #[arg(long)]
        env: String,
        /// The deployment's number.
        number: u32,
    },
    /// Approve a deployment waiting on a protected environment (not the one who asked).
    Approve {
        /// The service.
        service: String,
        /// The environment.
        #[arg(long)]
        env: String,
        /// The deployment's number.
        number: u32,
    },
    /// Reject a deployment waiting on a protected environment.
    Reject {
        /// The service.
        service: String,
        /// The environment.
        #[arg(long)]
        env: String,
        /// The deployment's number.
        number: u32,
    },
}

/// `kiln rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The service (its file's `name`).
    service: String,
    /// The environment.
    #[arg(long)]
    env: String,
    /// The deployment to return to [default: the succeeded one before the current one].
    #[arg(long)]
    to: Option<u32>,
    /// Why.
    #[arg(long)]
    note: Option<String>,
    /// Return once the rollback is recorded instead of following it to its end.
    #[arg(long)]
    no_wait: bool,
    /// The project.
    #[arg(long, short = 'p', env = "KILN_PROJECT")]
    project: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

/// `kiln promote`.
#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The service (its file's `name`).
    service: String,
    /// The environment whose current deployment is promoted.
    #[arg(long)]
    from: String,
    /// The environment right after it.
    #[arg(long)]
    to: String,
    /// Promote without asking.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Why.
    #[arg(long)]
    note: Option<String>,
    /// Return once the promotion is recorded instead of following it to its end.
    #[arg(long)]
    no_wait: bool,
    /// The project.
    #[arg(long, short = 'p', env = "KILN_PROJECT")]
    project: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

fn project_of(p: &Option<String>) -> Result<String, Fail> {
    p.clone().ok_or_else(|| Fail::invalid("which project? pass --project P (or set KILN_PROJECT)"))
}

/// `sha256:0123456789ab` (the first 12 hex digits).
fn short(digest: &str) -> String {
    match digest.split_once(':') {
        Some((algo, hex)) => format!("{algo}:{}", &hex[..hex.len().min(12)]),
        None => digest.to_string(),
    }
}

/// `web r3`, or `-`.
fn config_text(d: &Deployment) -> String {
    d.config.as_ref().map_or_else(|| "-".into(), |c| format!("{} r{}", c.app, c.release))
}

/// `deployment 3 of web to staging`.
fn name(d: &Deployment) -> String {
    format!("deployment {} of {} to {}", d.number, d.service, d.environment)
}

/// What a deployment is, beside its state: `rollback to 2`, `promote from staging`…
fn kind_text(d: &Deployment) -> String {
    match (d.kind.as_str(), d.rollback_of, &d.promoted_from) {
        ("rollback" | "auto-rollback", Some(n), _) => format!("{} to {n}", d.kind),
        ("promote", _, Some(from)) => format!("promote from {from}"),
        (kind, _, _) => kind.to_string(),
    }
}

/// Runs `kiln deploy …`.
pub async fn deploy(cmd: DeployCmd) -> CmdResult {
    let json = cmd.conn.output == Format::Json;
    let client = cmd.conn.client()?;
    let project = project_of(&cmd.project)?;
    let Some(sub) = cmd.cmd else {
        let (Some(file), Some(env), Some(image)) = (cmd.file, cmd.env, cmd.image) else {
            return Err(Fail::invalid("kiln deploy FILE --env ENV --image IMAGE"));
        };
        let yaml = std::fs::read_to_string(&file)
            .map_err(|e| Fail::invalid(format!("cannot read {file}: {e}")))?;
        // Checked here first: every problem at file:line:col, nothing sent.
        let compiled = kiln_workflow::compile_service(&file, &yaml);
        let diagnostics: Vec<kiln_api::Diagnostic> =
            compiled.diagnostics.iter().map(super::services::diagnostic).collect();
        if compiled.spec.is_none() {
            print_diagnostics(&diagnostics);
            return Err(Fail::invalid(format!("{file} was not deployed: fix the errors above")));
        }
        print_diagnostics(&diagnostics);
        let timeout_ms = cmd.timeout.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
        let req = DeployRequest {
            yaml,
            file: Some(file),
            environment: env,
            image,
            note: cmd.note,
            timeout_ms,
        };
        let d = client.deploy(&project, &req).await?;
        return started(&client, d, cmd.no_wait, json).await;
    };
    match sub {
        DeploySub::History { service, env } => {
            let list = client.deployment_history(&project, &service, &env).await?;
            if json {
                print_json(&list)?;
            } else if list.is_empty() {
                outln!(
                    "{service} was never deployed to {env} (`kiln deploy FILE --env {env} --image IMAGE`)"
                );
            } else {
                let mut t = table(&[
                    "#", "KIND", "STATE", "IMAGE", "DIGEST", "CONFIG", "VERSION", "BY", "AT",
                    "NOTE",
                ]);
                for d in &list {
                    t.add_row(vec![
                        Cell::new(d.number),
                        Cell::new(kind_text(d)),
                        state_cell(&d.state),
                        Cell::new(&d.image),
                        Cell::new(short(&d.digest)),
                        Cell::new(config_text(d)),
                        Cell::new(d.service_version.map_or_else(|| "-".into(), |v| v.to_string())),
                        Cell::new(&d.asked_by),
                        Cell::new(local_time(d.asked_at)),
                        Cell::new(d.reason.as_deref().or(d.note.as_deref()).unwrap_or("")),
                    ]);
                }
                outln!("{t}");
            }
            Ok(ExitCode::SUCCESS)
        }
        DeploySub::List { env, service } => {
            let list = client.deployments(&project, service.as_deref(), env.as_deref()).await?;
            if json {
                print_json(&list)?;
            } else if list.is_empty() {
                outln!("no deployments");
            } else {
                let mut t = table(&[
                    "SERVICE",
                    "ENVIRONMENT",
                    "#",
                    "KIND",
                    "STATE",
                    "IMAGE",
                    "DIGEST",
                    "BY",
                    "AT",
                ]);
                for d in &list {
                    t.add_row(vec![
                        Cell::new(&d.service),
                        Cell::new(&d.environment),
                        Cell::new(d.number),
                        Cell::new(kind_text(d)),
                        state_cell(&d.state),
                        Cell::new(&d.image),
                        Cell::new(short(&d.digest)),
                        Cell::new(&d.asked_by),
                        Cell::new(local_time(d.asked_at)),
                    ]);
                }
                outln!("{t}");
            }
            Ok(ExitCode::SUCCESS)
        }
        DeploySub::Show { service, env, number } => {
            let d = client.deployment(&project, &service, &env, number).await?;
            if json {
                print_json(&d)?;
            } else {
                print_deployment(&d);
            }
            Ok(ExitCode::SUCCESS)
        }
        DeploySub::Approve { service, env, number } => {
            let d = client.decide_deployment(&project, &service, &env, number, true).await?;
            if json {
                print_json(&d)?;
            } else {
                outln!(
                    "{} approved by {}: {}",
                    name(&d),
                    d.approved_by.as_deref().unwrap_or("-"),
                    d.state
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        DeploySub::Reject { service, env, number } => {
            let d = client.decide_deployment(&project, &service, &env, number, false).await?;
            if json {
                print_json(&d)?;
            } else {
                outln!("{}: {}", name(&d), d.reason.as_deref().unwrap_or(&d.state));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Runs `kiln rollback …`.
pub async fn rollback(args: RollbackArgs) -> CmdResult {
    let json = args.conn.output == Format::Json;
    let client = args.conn.client()?;
    let project = project_of(&args.project)?;
    let req = RollbackDeployment { to: args.to, note: args.note };
    let d = client.rollback_deployment(&project, &args.service, &args.env, &req).await?;
    started(&client, d, args.no_wait, json).await
}

/// Runs `kiln promote …`: the changes first, confirmed (`--yes`, or on a terminal), then the
/// promotion, followed to its end.
pub async fn promote(args: PromoteArgs) -> CmdResult {
    let json = args.conn.output == Format::Json;
    let client = args.conn.client()?;
    let project = project_of(&args.project)?;
    let mut req = PromoteRequest {
        from: args.from.clone(),
        to: args.to.clone(),
        note: args.note.clone(),
        dry_run: true,
    };
    let preview = client.promote(&project, &args.service, &req).await?;
    print_changes(&args, &preview.changes);
    if !args.yes {
        if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
            return Err(Fail::invalid(
                "nothing promoted: there is no terminal to confirm on; pass --yes to promote \
                 without asking",
            ));
        }
        let question = format!("Promote {} from {} to {}?", args.service, args.from, args.to);
        let yes = dialoguer::Confirm::new().with_prompt(question).default(false).interact();
        if !yes.unwrap_or(false) {
            eprintln!("nothing promoted");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    }
    req.dry_run = false;
    let out = client.promote(&project, &args.service, &req).await?;
    let Some(d) = out.deployment.clone() else {
        return Err(Fail::invalid("the server promoted nothing"));
    };
    if json {
        let end = if args.no_wait { d } else { follow(&client, d, false).await? };
        print_json(&PromoteOutcome { deployment: Some(end.clone()), changes: out.changes })?;
        return Ok(exit_of(&end, args.no_wait));
    }
    started(&client, d, args.no_wait, false).await
}

/// What a promotion changes, on stderr (a note before the question).
fn print_changes(args: &PromoteArgs, c: &PromoteChanges) {
    let or_none = |v: Option<String>| v.unwrap_or_else(|| "none".into());
    eprintln!("promote {} from {} to {}:", args.service, args.from, args.to);
    eprintln!(
        "  digest  {} -> {}",
        or_none(c.digest_from.as_deref().map(short)),
        short(&c.digest_to)
    );
    eprintln!(
        "  config  {} -> {} ({}'s own)",
        or_none(c.config_from.map(|r| format!("r{r}"))),
        or_none(c.config_to.map(|r| format!("r{r}"))),
        args.to
    );
    eprintln!("  spec    {}", if c.spec_changed { "changed" } else { "unchanged" });
}

/// A deployment just recorded: printed at once (`no_wait`), else followed to its end.
async fn started(client: &Client, d: Deployment, no_wait: bool, json: bool) -> CmdResult {
    if no_wait {
        if json {
            print_json(&d)?;
        } else {
            outln!("{}: {}", name(&d), d.state);
            if d.state == "pending" {
                outln!("{}", approval_hint(&d));
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let end = follow(client, d, !json).await?;
    if json {
        print_json(&end)?;
    } else {
        let detail = match (&end.reason, end.state.as_str()) {
            (Some(r), _) => format!(": {r}"),
            (None, "succeeded") => format!(
                " ({}, service {} version {})",
                short(&end.digest),
                end.service_name,
                end.service_version.map_or_else(|| "-".into(), |v| v.to_string())
            ),
            _ => String::new(),
        };
        outln!("{} {}{detail}", name(&end), end.state);
    }
    Ok(exit_of(&end, false))
}

/// 0 for a deployment that succeeded (or one not waited for), [`EXIT_FAILED`] otherwise.
fn exit_of(d: &Deployment, no_wait: bool) -> ExitCode {
    if no_wait || d.state == "succeeded" { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FAILED) }
}

fn approval_hint(d: &Deployment) -> String {
    format!(
        "it waits for approval by someone other than {}: kiln deploy approve {} --env {} {}",
        d.asked_by, d.service, d.environment, d.number
    )
}

/// Follows `d` until it is final, printing (on stderr, when `notes`) what it waits for
/// whenever that changes.
async fn follow(client: &Client, mut d: Deployment, notes: bool) -> Result<Deployment, Fail> {
    let mut last = String::new();
    loop {
        let line = match d.state.as_str() {
            "pending" => approval_hint(&d),
            "running" => match client.service(&d.project, &d.service_name).await {
                Ok(s) if d.service_version.is_some() => {
                    format!(
                        "{}/{} healthy (service {} version {})",
                        s.healthy, s.replicas, s.name, s.template
                    )
                }
                _ => "starting".to_string(),
            },
            _ => return Ok(d),
        };
        if notes && line != last {
            eprintln!("{}: {line}", name(&d));
            last = line;
        }
        tokio::time::sleep(POLL).await;
        d = client.deployment(&d.project, &d.service, &d.environment, d.number).await?;
    }
}

fn print_deployment(d: &Deployment) {
    outln!("{} — {} ({})", name(d), d.state, kind_text(d));
    outln!("image     {}", d.image);
    outln!("digest    {}", d.digest);
    outln!("runs as   {} ({})", d.image_ref, d.service_name);
    outln!("version   {}", d.service_version.map_or_else(|| "-".into(), |v| v.to_string()));
    outln!("config    {}", config_text(d));
    if let Some(r) = &d.run {
        outln!("run       {} job {}", r.name, r.job);
    }
    outln!("asked by  {} at {}", d.asked_by, local_time(d.asked_at));
    if let (Some(by), Some(at)) = (&d.approved_by, d.approved_at) {
        outln!("approved  by {by} at {}", local_time(at));
    }
    if let Some(at) = d.finished_at {
        outln!("ended     {}", local_time(at));
    }
    if let Some(n) = &d.note {
        outln!("note      {n}");
    }
    if let Some(r) = &d.reason {
        outln!("reason    {r}");
    }
}
