//! `kiln webhook add|list|rm`: a project's webhooks, which receive run events (`run`) and
//! registry pushes (`push`) as signed JSON POSTs. `kiln registry webhooks` is the same
//! command with pushes as its default.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use comfy_table::Cell;
use kiln_api::CreateWebhook;

use super::{CmdResult, Conn, local_time, outln, print_json, table};
use crate::Format;

/// `kiln webhook`.
#[derive(Debug, Args)]
pub struct WebhookCmd {
    #[command(subcommand)]
    sub: WebhookSub,
    #[command(flatten)]
    conn: Conn,
}

/// What to do with a project's webhooks.
#[derive(Debug, Subcommand)]
pub enum WebhookSub {
    /// List a project's webhooks.
    #[command(alias = "ls")]
    List {
        /// Project.
        project: String,
    },
    /// Add a webhook to a project; prints its signing secret, shown this once.
    Add {
        /// Project.
        project: String,
        /// Target URL (`http://` or `https://`).
        url: String,
        /// What it receives: `run` (runs started, waiting for approval, ended), `push`
        /// (registry pushes), `vulnerability` (new advisories hit a stored image), or several:
        /// `--events run,push`. Default: `run,push` for
        /// `kiln webhook add`, `push` for `kiln registry webhooks add`.
        #[arg(long, value_delimiter = ',', value_parser = ["run", "push", "vulnerability"])]
        events: Vec<String>,
        /// The signing secret (default: one is generated). Receivers check
        /// `X-Kiln-Signature: sha256=<hex HMAC-SHA256 of the body>` with it.
        #[arg(long, env = "KILN_WEBHOOK_SECRET", hide_env_values = true)]
        secret: Option<String>,
    },
    /// Remove a webhook.
    #[command(alias = "delete")]
    Rm {
        /// Project.
        project: String,
        /// The webhook's id (see `kiln webhook list`).
        id: String,
    },
}

/// Runs `kiln webhook …`.
pub async fn webhook(cmd: WebhookCmd) -> CmdResult {
    let client = cmd.conn.client()?;
    run(&client, cmd.sub, cmd.conn.output == Format::Json, &["run", "push"]).await
}

/// Runs a webhook subcommand; `add` without `--events` takes `default_events`.
pub async fn run(
    client: &kiln_client::Client,
    sub: WebhookSub,
    json: bool,
    default_events: &[&str],
) -> CmdResult {
    match sub {
        WebhookSub::List { project } => {
            let list = client.webhooks(&project).await?;
            if json {
                print_json(&list)?;
                return Ok(ExitCode::SUCCESS);
            }
            if list.is_empty() {
                eprintln!("no webhooks in project {project}");
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = table(&["ID", "URL", "EVENTS", "SIGNED", "CREATED"]);
            for w in &list {
                t.add_row(vec![
                    Cell::new(&w.id),
                    Cell::new(&w.url),
                    Cell::new(w.events.join(",")),
                    Cell::new(if w.signed { "yes" } else { "no" }),
                    Cell::new(local_time(w.created_at)),
                ]);
            }
            outln!("{t}");
        }
        WebhookSub::Add { project, url, events, secret } => {
            let events = if events.is_empty() {
                default_events.iter().map(|e| e.to_string()).collect()
            } else {
                events
            };
            let req = CreateWebhook { url, events: Some(events), secret };
            let w = client.add_webhook(&project, &req).await?;
            if json {
                print_json(&w)?;
            } else {
                outln!(
                    "added webhook {} to project {project}: {} ({})",
                    w.id,
                    w.url,
                    w.events.join(",")
                );
                if let Some(secret) = &w.secret {
                    outln!("signing secret (shown once): {secret}");
                }
            }
        }
        WebhookSub::Rm { project, id } => {
            client.delete_webhook(&project, &id).await?;
            if json {
                print_json(&serde_json::json!({"deleted": id}))?;
            } else {
                outln!("removed webhook {id} of project {project}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
