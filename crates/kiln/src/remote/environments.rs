//! `kiln env`: a project's environments (create, list, show, update, delete) and their
//! variables (`set-var`, `set-secret` from stdin, `unset`); a secret's value is never shown,
//! only `***`. Tables, or the API's objects with `-o json`.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use comfy_table::Cell;
use kiln_api::environments::{CreateEnvironment, Environment, SetVariable, UpdateEnvironment};

use super::access::secret_value;
use super::{CmdResult, Conn, Fail, local_time, outln, print_json, table};
use crate::Format;

/// `kiln env`.
#[derive(Debug, Args)]
pub struct EnvCmd {
    #[command(subcommand)]
    cmd: EnvSub,
    /// The project.
    #[arg(long, short = 'p', env = "KILN_PROJECT", global = true)]
    project: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, Subcommand)]
enum EnvSub {
    /// Create an environment (admin).
    Create {
        /// Its name (`dev`, `staging`, `prod`).
        name: String,
        /// The environment before it in the project's order.
        #[arg(long)]
        after: Option<String>,
        /// Config releases there need the approval of someone other than who asked.
        #[arg(long)]
        protected: bool,
    },
    /// List the project's environments in their order.
    #[command(alias = "ls")]
    List,
    /// An environment and its variables (secrets as ***).
    Show {
        /// The environment.
        name: String,
    },
    /// Change an environment's place in the order or its protection (admin).
    Update {
        /// The environment.
        name: String,
        /// The environment before it.
        #[arg(long, conflicts_with = "first")]
        after: Option<String>,
        /// Make it a first one (no environment before it).
        #[arg(long)]
        first: bool,
        /// Require a second person's approval of releases there.
        #[arg(long, conflicts_with = "unprotected")]
        protected: bool,
        /// No longer require it.
        #[arg(long)]
        unprotected: bool,
    },
    /// Delete an environment with its variables, config values and releases (admin).
    #[command(alias = "rm")]
    Delete {
        /// The environment.
        name: String,
    },
    /// Set plain variables of an environment.
    SetVar {
        /// The environment.
        name: String,
        /// KEY=VALUE, one or more.
        #[arg(required = true)]
        vars: Vec<String>,
    },
    /// Set a secret of an environment (admin): sealed like a project secret, shown as ***.
    /// The value is read from stdin (one trailing newline dropped).
    SetSecret {
        /// The environment.
        name: String,
        /// Its name (an environment variable name).
        key: String,
        /// The value (instead of stdin; it will show in your shell history).
        #[arg(long)]
        value: Option<String>,
    },
    /// Remove a variable or secret of an environment.
    Unset {
        /// The environment.
        name: String,
        /// The variable.
        key: String,
    },
}

/// Runs `kiln env …`.
pub async fn env(cmd: EnvCmd) -> CmdResult {
    let json = cmd.conn.output == Format::Json;
    let project = cmd
        .project
        .clone()
        .ok_or_else(|| Fail::invalid("which project? pass --project P (or set KILN_PROJECT)"))?;
    let client = cmd.conn.client()?;
    let show = |e: &Environment| -> Result<ExitCode, Fail> {
        if json {
            print_json(e)?;
        } else {
            print_env(e);
        }
        Ok(ExitCode::SUCCESS)
    };
    match cmd.cmd {
        EnvSub::Create { name, after, protected } => {
            let req = CreateEnvironment { name, after, protected };
            let e = client.create_environment(&project, &req).await?;
            if json {
                return show(&e);
            }
            let after = e.after.as_deref().map(|a| format!(" after {a}")).unwrap_or_default();
            let protected = if e.protected { ", protected" } else { "" };
            outln!("environment {}/{} created{after}{protected}", e.project, e.name);
            Ok(ExitCode::SUCCESS)
        }
        EnvSub::List => {
            let list = client.environments(&project).await?;
            if json {
                print_json(&list)?;
            } else if list.is_empty() {
                outln!(
                    "no environments (create one with `kiln env create NAME --project {project}`)"
                );
            } else {
                let mut t = table(&["ENVIRONMENT", "AFTER", "PROTECTED", "VARIABLES", "SECRETS"]);
                for e in &list {
                    let secrets = e.variables.iter().filter(|v| v.secret).count();
                    t.add_row(vec![
                        Cell::new(&e.name),
                        Cell::new(e.after.as_deref().unwrap_or("-")),
                        Cell::new(if e.protected { "yes" } else { "no" }),
                        Cell::new(e.variables.len() - secrets),
                        Cell::new(secrets),
                    ]);
                }
                outln!("{t}");
            }
            Ok(ExitCode::SUCCESS)
        }
        EnvSub::Show { name } => show(&client.environment(&project, &name).await?),
        EnvSub::Update { name, after, first, protected, unprotected } => {
            let after = if first { Some(String::new()) } else { after };
            let protected = match (protected, unprotected) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            };
            if after.is_none() && protected.is_none() {
                return Err(Fail::invalid(
                    "nothing to change: pass --after E, --first, --protected or --unprotected",
                ));
            }
            show(
                &client
                    .update_environment(&project, &name, &UpdateEnvironment { after, protected })
                    .await?,
            )
        }
        EnvSub::Delete { name } => {
            client.delete_environment(&project, &name).await?;
            if json {
                print_json(
                    &serde_json::json!({ "project": project, "environment": name, "deleted": true }),
                )?;
            } else {
                outln!("environment {project}/{name} deleted");
            }
            Ok(ExitCode::SUCCESS)
        }
        EnvSub::SetVar { name, vars } => {
            let pairs = vars
                .iter()
                .map(|p| match p.split_once('=') {
                    Some((k, v)) if !k.trim().is_empty() => {
                        Ok((k.trim().to_string(), v.to_string()))
                    }
                    _ => Err(Fail::invalid(format!("{p:?}: expected KEY=VALUE"))),
                })
                .collect::<Result<Vec<_>, Fail>>()?;
            let mut set = Vec::new();
            for (key, value) in pairs {
                let req = SetVariable { value, secret: false };
                set.push(client.set_env_variable(&project, &name, &key, &req).await?);
            }
            if json {
                print_json(&set)?;
            } else {
                for v in &set {
                    outln!("{}={} set in {project}/{name}", v.name, v.value);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        EnvSub::SetSecret { name, key, value } => {
            let value = secret_value(value, &key)?;
            let v = client
                .set_env_variable(&project, &name, &key, &SetVariable { value, secret: true })
                .await?;
            if json {
                print_json(&v)?;
            } else {
                outln!("secret {} of {project}/{name} set", v.name);
            }
            Ok(ExitCode::SUCCESS)
        }
        EnvSub::Unset { name, key } => {
            client.unset_env_variable(&project, &name, &key).await?;
            if json {
                print_json(
                    &serde_json::json!({ "environment": name, "name": key, "deleted": true }),
                )?;
            } else {
                outln!("{key} removed from {project}/{name}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_env(e: &Environment) {
    let after = e.after.as_deref().map(|a| format!(", after {a}")).unwrap_or_default();
    let protected =
        if e.protected { ", protected: releases need a second person's approval" } else { "" };
    outln!("environment {}/{}{after}{protected}", e.project, e.name);
    if e.variables.is_empty() {
        outln!("no variables");
        return;
    }
    let mut t = table(&["NAME", "VALUE", "SECRET", "UPDATED"]);
    for v in &e.variables {
        t.add_row(vec![
            Cell::new(&v.name),
            Cell::new(&v.value),
            Cell::new(if v.secret { "yes" } else { "no" }),
            Cell::new(local_time(v.updated_at)),
        ]);
    }
    outln!("{t}");
}
