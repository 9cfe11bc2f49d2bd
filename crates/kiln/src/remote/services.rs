//! `kiln service`: apply a service file, list and show services with their instances (node,
//! host IP, ports, health: what discovery serves), scale, restart, stop, roll back, delete,
//! the history of versions, and the instances' logs (`service_logs.rs`). Tables, or the
//! API's objects with `-o json`.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use comfy_table::Cell;
use kiln_api::service::{ApplyService, RollbackService, ScaleService, ServiceInfo};

use super::{CmdResult, Conn, Fail, outln, print_diagnostics, print_json, state_cell, table};
use crate::Format;

/// `kiln service`.
#[derive(Debug, Args)]
pub struct ServiceCmd {
    #[command(subcommand)]
    cmd: ServiceSub,
    /// The project.
    #[arg(long, short = 'p', env = "KILN_PROJECT", global = true)]
    project: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, Subcommand)]
enum ServiceSub {
    /// Apply a service file (`kind: service`): a new version when anything changed; the
    /// running instances are replaced by a rolling update when the spec changed.
    Apply {
        /// The service file.
        file: String,
        /// Why, kept with the version.
        #[arg(long)]
        note: Option<String>,
    },
    /// List services: replicas, healthy instances, state, version.
    #[command(alias = "ls")]
    List,
    /// A service's instances: slot, state, node, host IP and ports, and why slots wait.
    Show {
        /// The service.
        name: String,
    },
    /// Set the number of replicas (no instance is replaced).
    Scale {
        /// The service.
        name: String,
        /// Replicas (0 to 1000).
        replicas: u32,
    },
    /// Replace every instance by a rolling update.
    Restart {
        /// The service.
        name: String,
    },
    /// Stop every instance (`scale` starts it again).
    Stop {
        /// The service.
        name: String,
    },
    /// Stop every instance and forget the service.
    #[command(alias = "rm")]
    Delete {
        /// The service.
        name: String,
    },
    /// The stdout and stderr of the service's instances: every instance's, prefixed by its
    /// id, or one instance's.
    Logs {
        /// The service.
        name: String,
        /// Only this instance's log (an id `show` lists).
        #[arg(long)]
        instance: Option<String>,
        /// Keep following the logs until the instances end.
        #[arg(short, long)]
        follow: bool,
    },
    /// Every version: number, template, replicas, kind, who, when, note.
    History {
        /// The service.
        name: String,
    },
    /// Return to an earlier version (the one before the current by default).
    Rollback {
        /// The service.
        name: String,
        /// The version to return to.
        #[arg(long)]
        to: Option<u32>,
    },
}

/// Runs `kiln service …`.
pub async fn service(cmd: ServiceCmd) -> CmdResult {
    let client = cmd.conn.client()?;
    let json = cmd.conn.output == Format::Json;
    let project = || {
        cmd.project
            .clone()
            .ok_or_else(|| Fail::invalid("which project? pass --project P (or set KILN_PROJECT)"))
    };
    let show = |s: &ServiceInfo| -> Result<ExitCode, Fail> {
        if json {
            print_json(s)?;
        } else {
            print_service(s);
        }
        Ok(ExitCode::SUCCESS)
    };
    match cmd.cmd {
        ServiceSub::Apply { file, note } => {
            let project = project()?;
            let yaml = std::fs::read_to_string(&file)
                .map_err(|e| Fail::invalid(format!("cannot read {file}: {e}")))?;
            // Checked here first: every problem at file:line:col, nothing sent.
            let compiled = kiln_workflow::compile_service(&file, &yaml);
            let diagnostics: Vec<kiln_api::Diagnostic> =
                compiled.diagnostics.iter().map(diagnostic).collect();
            let Some(spec) = compiled.spec else {
                return Err(Fail {
                    message: format!("{file} was not applied: fix the errors above"),
                    diagnostics,
                    ..Fail::invalid("")
                });
            };
            print_diagnostics(&diagnostics);
            let body = ApplyService { yaml, file: Some(file.clone()), note };
            let s = client.apply_service(&project, &spec.name, &body).await?;
            if json {
                return show(&s);
            }
            outln!(
                "service {}/{} at version {} (template {}), {} replica{}",
                s.project,
                s.name,
                s.version,
                s.template,
                s.replicas,
                if s.replicas == 1 { "" } else { "s" }
            );
            Ok(ExitCode::SUCCESS)
        }
        ServiceSub::List => {
            let list = client.services(cmd.project.as_deref()).await?;
            if json {
                print_json(&list)?;
            } else if list.is_empty() {
                outln!("no services (apply one with `kiln service apply FILE --project P`)");
            } else {
                let mut t = table(&[
                    "PROJECT", "SERVICE", "STATE", "HEALTHY", "REPLICAS", "VERSION", "LABELS",
                    "OWNER",
                ]);
                for s in &list {
                    let labels: Vec<String> =
                        s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    t.add_row(vec![
                        Cell::new(&s.project),
                        Cell::new(&s.name),
                        state_cell(&s.state),
                        Cell::new(format!("{}/{}", s.healthy, s.replicas)),
                        Cell::new(s.replicas),
                        Cell::new(format!("{} (template {})", s.version, s.template)),
                        Cell::new(labels.join(",")),
                        Cell::new(owner_of(s)),
                    ]);
                }
                outln!("{t}");
            }
            Ok(ExitCode::SUCCESS)
        }
        ServiceSub::Show { name } => show(&client.service(&project()?, &name).await?),
        ServiceSub::Scale { name, replicas } => show(
            &client.service_action(&project()?, &name, "scale", &ScaleService { replicas }).await?,
        ),
        ServiceSub::Restart { name } => show(
            &client.service_action(&project()?, &name, "restart", &serde_json::json!({})).await?,
        ),
        ServiceSub::Stop { name } => {
            show(&client.service_action(&project()?, &name, "stop", &serde_json::json!({})).await?)
        }
        ServiceSub::Rollback { name, to } => show(
            &client.service_action(&project()?, &name, "rollback", &RollbackService { to }).await?,
        ),
        ServiceSub::Delete { name } => {
            let project = project()?;
            client.delete_service(&project, &name).await?;
            if json {
                print_json(
                    &serde_json::json!({ "project": project, "service": name, "deleted": true }),
                )?;
            } else {
                outln!("service {project}/{name} deleted; its instances are stopping");
            }
            Ok(ExitCode::SUCCESS)
        }
        ServiceSub::Logs { name, instance, follow } => {
            let project = project()?;
            super::service_logs::logs(&client, &project, &name, instance, follow, cmd.conn.output)
                .await
        }
        ServiceSub::History { name } => {
            let versions = client.service_history(&project()?, &name).await?;
            if json {
                print_json(&versions)?;
            } else {
                let mut t = table(&["VERSION", "TEMPLATE", "REPLICAS", "KIND", "BY", "AT", "NOTE"]);
                for v in &versions {
                    t.add_row(vec![
                        Cell::new(v.version),
                        Cell::new(v.template),
                        Cell::new(v.replicas),
                        Cell::new(&v.kind),
                        Cell::new(&v.by),
                        Cell::new(v.at.format("%Y-%m-%d %H:%M:%S")),
                        Cell::new(v.note.as_deref().unwrap_or("")),
                    ]);
                }
                outln!("{t}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub(crate) fn diagnostic(d: &kiln_workflow::Diagnostic) -> kiln_api::Diagnostic {
    kiln_api::Diagnostic {
        severity: match d.severity {
            kiln_workflow::Severity::Error => "error".into(),
            kiln_workflow::Severity::Warning => "warning".into(),
        },
        file: d.file.clone(),
        line: d.line,
        column: d.column,
        message: d.message.clone(),
    }
}

/// Who owns a service: a run's pool (see [`owner_text`]), `deploy api to prod` for a
/// deployed one; `-` for one applied by hand.
fn owner_of(s: &ServiceInfo) -> String {
    match &s.deployed {
        Some(d) => format!("deploy {} to {}", d.service, d.environment),
        None => owner_text(s.owner.as_ref()),
    }
}

/// Who owns a service: `run P/W#N` (`, job J`), `pool X`; `-` for one applied by hand.
fn owner_text(owner: Option<&kiln_api::service::ServiceOwner>) -> String {
    match owner {
        Some(o) => {
            let job = o.job.as_deref().map(|j| format!(", job {j}")).unwrap_or_default();
            format!("run {}{job} (pool {})", o.run_name, o.pool)
        }
        None => "-".to_string(),
    }
}

fn print_service(s: &ServiceInfo) {
    outln!(
        "service {}/{} {} — {}/{} healthy, version {} (template {}, stable {})",
        s.project,
        s.name,
        s.state,
        s.healthy,
        s.replicas,
        s.version,
        s.template,
        s.stable
    );
    if s.owner.is_some() {
        outln!("owned by {}: deleted when it ends", owner_text(s.owner.as_ref()));
    }
    if let Some(d) = &s.deployed {
        outln!(
            "runs the deployments of {} to {}: `kiln deploy history {} --env {}`",
            d.service,
            d.environment,
            d.service,
            d.environment
        );
    }
    if s.instances.is_empty() {
        outln!("no instances");
    } else {
        let mut t = table(&[
            "SLOT", "INSTANCE", "VERSION", "STATE", "NODE", "HOST IP", "PORTS", "RESTARTS",
            "REASON",
        ]);
        for i in &s.instances {
            let ports: Vec<String> = i.ports.iter().map(|(k, v)| format!("{k}={v}")).collect();
            t.add_row(vec![
                Cell::new(i.slot),
                Cell::new(&i.id),
                Cell::new(i.version),
                state_cell(&i.state),
                Cell::new(i.node.as_deref().unwrap_or("-")),
                Cell::new(i.host_ip.as_deref().unwrap_or("-")),
                Cell::new(ports.join(",")),
                Cell::new(i.restarts),
                Cell::new(i.reason.as_deref().unwrap_or("")),
            ]);
        }
        outln!("{t}");
    }
    for w in &s.waits {
        outln!("slot {} waits: {}", w.slot, w.reason);
    }
}
