//! Who may do what: `kiln token create|list|revoke` and `kiln secret set|list|rm`.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use comfy_table::Cell;
use kiln_api::CreateToken;

use super::{CmdResult, Conn, Fail, local_time, opt_time, outln, print_json, table};
use crate::Format;

/// `kiln token`.
#[derive(Debug, Args)]
pub struct TokenCmd {
    #[command(subcommand)]
    cmd: TokenSub,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, Subcommand)]
enum TokenSub {
    /// Create an API token (admin); its secret is shown this once.
    Create {
        /// A name people recognise: runs and approvals record it as "by".
        name: String,
        /// What it may do: read; also apply, trigger, cancel, retry and approve; everything.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Limit it to one project.
        #[arg(long)]
        project: Option<String>,
    },
    /// List tokens (admin).
    List,
    /// Revoke a token (admin); it stops working at once.
    Revoke {
        /// The token's id (see `kiln token list`).
        id: String,
    },
}

/// A token's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RoleArg {
    /// Reads pipelines, runs, logs and artifacts.
    Viewer,
    /// Also applies pipelines, triggers, cancels, retries, approves and rejects.
    Developer,
    /// Also creates projects, tokens and secrets.
    Admin,
    /// Only runs agents (`kiln agent --token`): registers, takes work, reports; reads nothing.
    Agent,
}

impl RoleArg {
    fn as_str(self) -> &'static str {
        match self {
            RoleArg::Viewer => "viewer",
            RoleArg::Developer => "developer",
            RoleArg::Admin => "admin",
            RoleArg::Agent => "agent",
        }
    }
}

/// `kiln secret`.
#[derive(Debug, Args)]
pub struct SecretCmd {
    #[command(subcommand)]
    cmd: SecretSub,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, Subcommand)]
enum SecretSub {
    /// Set a project secret (admin): injected into the project's jobs as env NAME, masked
    /// as *** in logs. The value is read from stdin (one trailing newline dropped).
    Set {
        /// Project.
        project: String,
        /// Env name.
        name: String,
        /// The value (instead of stdin; it will show in your shell history).
        #[arg(long)]
        value: Option<String>,
    },
    /// List a project's secrets (names only).
    List {
        /// Project.
        project: String,
    },
    /// Delete a project secret (admin).
    #[command(alias = "delete")]
    Rm {
        /// Project.
        project: String,
        /// Env name.
        name: String,
    },
}

/// Runs `kiln token …`.
pub async fn token(cmd: TokenCmd) -> CmdResult {
    let client = cmd.conn.client()?;
    let json = cmd.conn.output == Format::Json;
    match cmd.cmd {
        TokenSub::Create { name, role, project } => {
            let req = CreateToken { name, role: role.as_str().to_string(), project };
            let created = client.create_token(&req).await?;
            if json {
                print_json(&created)?;
                return Ok(ExitCode::SUCCESS);
            }
            let t = &created.token;
            let scope = t.project.as_deref().map(|p| format!(", project {p}")).unwrap_or_default();
            outln!("created token {} (id {}, role {}{scope})", t.name, t.id, t.role);
            eprintln!("The secret is shown this once; keep it:");
            outln!();
            outln!("  export KILN_TOKEN={}", created.secret);
            outln!();
        }
        TokenSub::List => {
            let list = client.tokens().await?;
            if json {
                print_json(&list)?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut t =
                table(&["ID", "NAME", "ROLE", "PROJECT", "CREATED", "LAST USED", "REVOKED"]);
            for tok in &list {
                t.add_row(vec![
                    Cell::new(&tok.id),
                    Cell::new(&tok.name),
                    Cell::new(&tok.role),
                    Cell::new(tok.project.as_deref().unwrap_or("(all)")),
                    Cell::new(local_time(tok.created_at)),
                    Cell::new(opt_time(tok.last_used_at)),
                    Cell::new(opt_time(tok.revoked_at)),
                ]);
            }
            outln!("{t}");
        }
        TokenSub::Revoke { id } => {
            let t = client.revoke_token(&id).await?;
            if json {
                print_json(&t)?;
            } else {
                outln!("revoked token {} (id {})", t.name, t.id);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The secret's value: `--value`, else stdin (a hidden prompt on a terminal).
pub(crate) fn secret_value(value: Option<String>, name: &str) -> Result<String, Fail> {
    if let Some(v) = value {
        return Ok(v);
    }
    let stdin = std::io::stdin();
    let text = if stdin.is_terminal() {
        dialoguer::Password::new()
            .with_prompt(format!("Value of {name}"))
            .interact()
            .map_err(|e| Fail::invalid(format!("cannot read the value: {e}")))?
    } else {
        let mut text = String::new();
        stdin
            .lock()
            .read_to_string(&mut text)
            .map_err(|e| Fail::invalid(format!("cannot read the value from stdin: {e}")))?;
        text
    };
    let text = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
    if text.is_empty() {
        return Err(Fail::invalid(format!(
            "no value for {name}: pipe it on stdin (`printf %s \"$VALUE\" | kiln …`) or pass --value"
        )));
    }
    Ok(text.to_string())
}

/// Runs `kiln secret …`.
pub async fn secret(cmd: SecretCmd) -> CmdResult {
    let json = cmd.conn.output == Format::Json;
    match cmd.cmd {
        SecretSub::Set { project, name, value } => {
            let value = secret_value(value, &name)?;
            let client = cmd.conn.client()?;
            let s = client.set_secret(&project, &name, &value).await?;
            if json {
                print_json(&s)?;
            } else {
                outln!("secret {} of project {project} set", s.name);
            }
        }
        SecretSub::List { project } => {
            let client = cmd.conn.client()?;
            let list = client.secrets(&project).await?;
            if json {
                print_json(&list)?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = table(&["NAME", "CREATED", "UPDATED"]);
            for s in &list {
                t.add_row(vec![s.name.clone(), local_time(s.created_at), local_time(s.updated_at)]);
            }
            outln!("{t}");
        }
        SecretSub::Rm { project, name } => {
            let client = cmd.conn.client()?;
            client.delete_secret(&project, &name).await?;
            if json {
                print_json(
                    &serde_json::json!({ "project": project, "name": name, "deleted": true }),
                )?;
            } else {
                outln!("secret {name} of project {project} deleted");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
