//! The elastic pool, for operators: `kiln pool groups`, `kiln pool group apply FILE|show|
//! delete` and `kiln pool events` (node groups like cluster-autoscaler's, their nodes and
//! the autoscaler's decisions with their reasons).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use comfy_table::Cell;
use kiln_api::autoscale::{NodeGroupInfo, NodeGroupSpec, PoolEvent};

use super::{CmdResult, Conn, Fail, outln, print_json, state_cell, table};
use crate::Format;

/// `kiln pool`.
#[derive(Debug, Args)]
pub struct PoolCmd {
    #[command(subcommand)]
    cmd: PoolSub,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, Subcommand)]
enum PoolSub {
    /// List the node groups: bounds, nodes by state, provider, its last failure.
    Groups,
    /// A node group: apply a file, show or delete one.
    Group {
        #[command(subcommand)]
        cmd: GroupSub,
    },
    /// The autoscaler's events, oldest first: scale-out, drain, scale-in, nodes registered
    /// and removed, provider failures, tasks no group takes; each with its reason.
    Events {
        /// Only this group's.
        #[arg(long, short = 'g')]
        group: Option<String>,
        /// The latest this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Keep printing new events as they happen (Ctrl-C stops).
        #[arg(long, short = 'f')]
        follow: bool,
    },
}

#[derive(Debug, Subcommand)]
enum GroupSub {
    /// Create or replace a node group from a file (`kind: node-group`, YAML or JSON; see
    /// docs/pool.md#elastic-pool) (admin).
    Apply {
        /// The file.
        file: PathBuf,
    },
    /// Show a node group and its nodes.
    Show {
        /// The group's name.
        name: String,
    },
    /// Delete a node group that has no node left (apply it with `max: 0` first) (admin).
    #[command(alias = "rm")]
    Delete {
        /// The group's name.
        name: String,
    },
}

/// Reads a node group file: YAML (JSON is YAML too), unknown keys refused, with the file
/// and position of the first problem.
pub fn read_group_file(path: &std::path::Path) -> Result<NodeGroupSpec, Fail> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Fail::invalid(format!("cannot read `{shown}`: {e}")))?;
    serde_saphyr::from_str::<NodeGroupSpec>(&text)
        .map_err(|e| Fail::invalid(format!("{shown}: {e}")))
}

/// Runs `kiln pool …`.
pub async fn pool(cmd: PoolCmd) -> CmdResult {
    let client = cmd.conn.client()?;
    let json = cmd.conn.output == Format::Json;
    match cmd.cmd {
        PoolSub::Groups => {
            let groups = client.node_groups().await?;
            if json {
                print_json(&groups)?;
            } else if groups.is_empty() {
                outln!("no node groups (add one with `kiln pool group apply FILE`)");
            } else {
                print_groups(&groups);
            }
        }
        PoolSub::Group { cmd: GroupSub::Apply { file } } => {
            let spec = read_group_file(&file)?;
            let applied = client.apply_node_group(&spec).await?;
            if json {
                print_json(&applied)?;
            } else {
                let g = &applied.group.spec;
                outln!("node group {} {} (min {}, max {})", g.name, applied.change, g.min, g.max);
            }
        }
        PoolSub::Group { cmd: GroupSub::Show { name } } => {
            let g = client.node_group(&name).await?;
            if json {
                print_json(&g)?;
            } else {
                print_groups(std::slice::from_ref(&g));
                if let Some(f) = &g.failure {
                    outln!(
                        "provider failing: {} ({} in a row; next try at {})",
                        f.error,
                        f.failures,
                        f.retry_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    );
                }
                if g.nodes.is_empty() {
                    outln!("no nodes");
                } else {
                    let mut t = table(&["NODE", "STATE", "RUNNING", "IDLE"]);
                    for n in &g.nodes {
                        t.add_row(vec![
                            Cell::new(&n.name),
                            state_cell(&n.state),
                            Cell::new(n.running),
                            Cell::new(
                                n.idle_ms.map_or("-".to_string(), |ms| format!("{}s", ms / 1000)),
                            ),
                        ]);
                    }
                    outln!("{t}");
                }
            }
        }
        PoolSub::Group { cmd: GroupSub::Delete { name } } => {
            client.delete_node_group(&name).await?;
            if json {
                print_json(&serde_json::json!({ "name": name, "deleted": true }))?;
            } else {
                outln!("node group {name} deleted");
            }
        }
        PoolSub::Events { group, limit, follow } => {
            let events = client.pool_events(group.as_deref(), None, limit).await?;
            let mut last = events.last().map_or(0, |e| e.id);
            if json && !follow {
                print_json(&events)?;
            } else {
                print_events(&events, json, follow)?;
            }
            if follow {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let new = client.pool_events(group.as_deref(), Some(last), 1000).await?;
                    if let Some(e) = new.last() {
                        last = e.id;
                    }
                    print_events(&new, json, true)?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_groups(groups: &[NodeGroupInfo]) {
    let mut t =
        table(&["GROUP", "MIN", "MAX", "READY", "COMING", "DRAINING", "PROVIDER", "FAILING"]);
    for g in groups {
        let count = |s: &str| g.nodes.iter().filter(|n| n.state == s).count();
        let provider = match (&g.spec.provider.command, &g.spec.provider.http) {
            (Some(argv), _) => argv.join(" "),
            (None, Some(url)) => url.clone(),
            _ => "-".to_string(),
        };
        t.add_row(vec![
            Cell::new(&g.spec.name),
            Cell::new(g.spec.min),
            Cell::new(g.spec.max),
            Cell::new(count("ready")),
            Cell::new(count("coming")),
            Cell::new(count("draining") + count("removing")),
            Cell::new(provider),
            Cell::new(g.failure.as_ref().map_or("-".to_string(), |f| f.error.clone())),
        ]);
    }
    outln!("{t}");
}

/// Prints events: a table, or when following one line each (JSON lines with `-o json`).
fn print_events(events: &[PoolEvent], json: bool, lines: bool) -> Result<(), Fail> {
    if json {
        for e in events {
            let line = serde_json::to_string(e)
                .map_err(|e| Fail::invalid(format!("cannot write JSON: {e}")))?;
            outln!("{line}");
        }
        return Ok(());
    }
    let at = |e: &PoolEvent| e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let group = |e: &PoolEvent| if e.group.is_empty() { "-".to_string() } else { e.group.clone() };
    if lines {
        for e in events {
            outln!(
                "{}  {:<10} {:<16} {}  {}",
                at(e),
                group(e),
                e.kind,
                e.nodes.join(","),
                e.reason
            );
        }
        return Ok(());
    }
    if events.is_empty() {
        outln!("no pool events");
        return Ok(());
    }
    let mut t = table(&["TIME", "GROUP", "EVENT", "NODES", "REASON"]);
    for e in events {
        t.add_row(vec![
            Cell::new(at(e)),
            Cell::new(group(e)),
            Cell::new(&e.kind),
            Cell::new(if e.nodes.is_empty() { "-".to_string() } else { e.nodes.join(",") }),
            Cell::new(&e.reason),
        ]);
    }
    outln!("{t}");
    Ok(())
}
