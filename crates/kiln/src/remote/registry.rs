//! `kiln registry`: the server's OCI registry: repositories, tags, visibility, garbage
//! collection, push events, project webhooks and vulnerability scanning (`scans.rs`).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use comfy_table::Cell;
use kiln_api::{RegistryGcRequest, SetVisibility};

use super::scans::AdvisoriesSub;
use super::webhooks::WebhookSub;
use super::{CmdResult, Conn, local_time, outln, print_json, table};
use crate::Format;

/// `kiln registry`.
#[derive(Debug, Args)]
pub struct RegistryCmd {
    #[command(subcommand)]
    cmd: RegistrySub,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, Subcommand)]
enum RegistrySub {
    /// List the repositories you can see.
    Repos,
    /// List a repository's tags and the digests they name.
    Tags {
        /// `<project>/<name>`.
        repository: String,
    },
    /// Make a repository public (anyone may pull) or, with --private, private again (admin).
    Public {
        /// `<project>/<name>`.
        repository: String,
        /// Make it private instead.
        #[arg(long)]
        private: bool,
    },
    /// Delete untagged manifests and unreferenced blobs now (admin); prints what was freed.
    Gc {
        /// Leave alone what was pushed or touched this recently (e.g. `1h`, `0s`).
        #[arg(long, default_value = "1h")]
        grace: humantime::Duration,
    },
    /// Push events, newest first.
    Events {
        /// Only this project's.
        #[arg(long)]
        project: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// A project's webhooks (list, add, rm): `kiln webhook`, adding push-only webhooks.
    #[command(subcommand)]
    Webhooks(WebhookSub),
    /// Vulnerability advisories (OSV): `import DIR|FILE` (admin).
    #[command(subcommand)]
    Advisories(AdvisoriesSub),
    /// Scan an image again now and show its findings.
    Scan {
        /// `<project>/<name>:<tag>` or `<project>/<name>@sha256:…`.
        image: String,
    },
    /// An image's vulnerabilities (findings), most severe first.
    Vulns {
        /// `<project>/<name>:<tag>` or `<project>/<name>@sha256:…`.
        image: String,
        /// Only findings at least this severe: low, medium, high, critical.
        #[arg(long)]
        severity: Option<String>,
    },
}

fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

/// Runs `kiln registry …`.
pub async fn registry(cmd: RegistryCmd) -> CmdResult {
    let client = cmd.conn.client()?;
    let json = cmd.conn.output == Format::Json;
    match cmd.cmd {
        RegistrySub::Repos => {
            let list = client.registry_repositories().await?;
            if json {
                print_json(&list)?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = table(&["REPOSITORY", "PROJECT", "VISIBILITY", "CREATED"]);
            for r in &list {
                t.add_row(vec![
                    Cell::new(&r.name),
                    Cell::new(&r.project),
                    Cell::new(if r.public { "public" } else { "private" }),
                    Cell::new(local_time(r.created_at)),
                ]);
            }
            outln!("{t}");
        }
        RegistrySub::Tags { repository } => {
            let list = client.registry_tags(&repository).await?;
            if json {
                print_json(&list)?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = table(&["TAG", "DIGEST"]);
            for tag in &list {
                t.add_row(vec![Cell::new(&tag.tag), Cell::new(&tag.digest)]);
            }
            outln!("{t}");
        }
        RegistrySub::Public { repository, private } => {
            let r =
                client.registry_visibility(&SetVisibility { repository, public: !private }).await?;
            if json {
                print_json(&r)?;
            } else {
                outln!("{} is now {}", r.name, if r.public { "public" } else { "private" });
            }
        }
        RegistrySub::Gc { grace } => {
            let req = RegistryGcRequest { grace_seconds: Some(grace.as_secs()) };
            let r = client.registry_gc(&req).await?;
            if json {
                print_json(&r)?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = table(&["FREED", "COUNT"]);
            t.add_row(vec![Cell::new("untagged manifests"), Cell::new(r.manifests.len())]);
            t.add_row(vec![Cell::new("blobs"), Cell::new(r.blobs)]);
            t.add_row(vec![Cell::new("orphaned blob files"), Cell::new(r.orphans)]);
            t.add_row(vec![Cell::new("abandoned uploads"), Cell::new(r.uploads)]);
            t.add_row(vec![Cell::new("bytes"), Cell::new(size(r.bytes_freed))]);
            outln!("{t}");
        }
        RegistrySub::Events { project, limit } => {
            let list = client.registry_events(project.as_deref(), Some(limit)).await?;
            if json {
                print_json(&list)?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = table(&["WHEN", "EVENT", "REPOSITORY", "TAG", "DIGEST", "BY"]);
            for e in &list {
                let tag = match (&e.tag, e.action.as_str()) {
                    (Some(t), _) => t.clone(),
                    (None, "vulnerability") => {
                        format!("{} ({})", e.tags.join(", "), e.advisories.join(", "))
                    }
                    (None, _) => "-".to_string(),
                };
                t.add_row(vec![
                    Cell::new(local_time(e.created_at)),
                    Cell::new(&e.action),
                    Cell::new(&e.repository),
                    Cell::new(tag),
                    Cell::new(&e.digest),
                    Cell::new(&e.actor),
                ]);
            }
            outln!("{t}");
        }
        RegistrySub::Webhooks(sub) => {
            return super::webhooks::run(&client, sub, json, &["push"]).await;
        }
        RegistrySub::Advisories(sub) => return super::scans::advisories(&client, sub, json).await,
        RegistrySub::Scan { image } => {
            if !json {
                eprintln!("scanning {image}…");
            }
            let s = client.scan_image(&image).await?;
            return super::scans::print_scan(&s, json);
        }
        RegistrySub::Vulns { image, severity } => {
            let s = client.image_vulns(&image, severity.as_deref()).await?;
            return super::scans::print_scan(&s, json);
        }
    }
    Ok(ExitCode::SUCCESS)
}
