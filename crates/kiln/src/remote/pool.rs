//! The pool, for operators: `kiln nodes` (list, set, unset, disable, enable, forget, images,
//! prepull) and `kiln offers`, shaped like `bcs-client as -l` and `bcs-client offer`;
//! `kiln quota`.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use comfy_table::Cell;
use kiln_api::pool::{
    AttrValue, NodeInfo, NodeUpdate, Offer, PortRange, PrepullRequest, PrepullStatus, QuotaInfo,
    QuotaLimits, parse_attr,
};

use super::{CmdResult, Conn, Fail, human_size, outln, print_json, state_cell, table};
use crate::Format;

/// `kiln nodes`.
#[derive(Debug, Args)]
pub struct NodesCmd {
    #[command(subcommand)]
    cmd: Option<NodesSub>,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, Subcommand)]
enum NodesSub {
    /// List the nodes (the default): index, IP, host name, state, disabled, one column per
    /// attribute.
    #[command(alias = "ls")]
    List,
    /// Set attributes of a node (admin): `key=value`, a number if it parses as one, a set
    /// written `{a,b}`, else text. They override the agent's own and outlive restarts.
    Set {
        /// The node's name or IP.
        node: String,
        /// `key=value` pairs.
        #[arg(required = true, value_name = "KEY=VALUE")]
        attributes: Vec<String>,
    },
    /// Remove attributes operators set on a node (admin).
    Unset {
        /// The node's name or IP.
        node: String,
        /// Attribute names.
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
    },
    /// Place no new work on a node (admin); what runs there finishes.
    Disable {
        /// The node's name or IP.
        node: String,
    },
    /// Place work on a node again (admin).
    Enable {
        /// The node's name or IP.
        node: String,
    },
    /// Forget a node whose agent is gone, with its attributes (admin).
    #[command(alias = "rm")]
    Forget {
        /// The node's name or IP.
        node: String,
    },
    /// List the images a node's engine holds, as its agent last reported them (placement
    /// prefers nodes holding a job's image).
    Images {
        /// The node's name or IP.
        node: String,
    },
    /// Pull an image onto nodes ahead of the jobs that need it (admin): every connected
    /// node, or those the selector picks. An image of Kiln's registry is pulled with a pull
    /// token of its project. Shows each node's result as it comes, then a table.
    Prepull {
        /// The image (`busybox:latest`, `HOST:PORT/project/repo:tag`).
        image: String,
        /// Only nodes whose attribute has this value (`city=shenzhen`; also `hostname`,
        /// `ip` and `name`); repeatable, all must hold.
        #[arg(long = "selector", short = 'l', value_name = "KEY=VALUE")]
        selector: Vec<String>,
    },
}

/// `kiln quota`.
#[derive(Debug, Args)]
pub struct QuotaCmd {
    #[command(subcommand)]
    cmd: Option<QuotaSub>,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, Subcommand)]
enum QuotaSub {
    /// List quotas and what each project holds and has waiting (the default).
    #[command(alias = "ls")]
    List,
    /// Set a project's quota (admin), replacing the one it had; a limit left out is none.
    Set {
        /// The project.
        project: String,
        /// CPU at once: cores (`8`, `0.5`) or millicores (`500m`).
        #[arg(long, value_parser = kiln_workflow::units::cpu_millis)]
        cpu: Option<u64>,
        /// Memory at once: `16Gi`, `512Mi`, `2G`.
        #[arg(long, value_parser = kiln_workflow::units::memory_bytes)]
        memory: Option<u64>,
        /// Jobs running at once.
        #[arg(long)]
        jobs: Option<u32>,
    },
    /// Remove a project's quota (admin).
    #[command(alias = "rm")]
    Unset {
        /// The project.
        project: String,
    },
}

/// Runs `kiln quota …`.
pub async fn quota(cmd: QuotaCmd) -> CmdResult {
    let client = cmd.conn.client()?;
    let json = cmd.conn.output == Format::Json;
    match cmd.cmd.unwrap_or(QuotaSub::List) {
        QuotaSub::List => {
            let quotas = client.quotas().await?;
            if json {
                print_json(&quotas)?;
            } else if quotas.is_empty() {
                outln!(
                    "no quotas and no work on the pool (set one with `kiln quota set PROJECT --cpu 8 --memory 16Gi --jobs 4`)"
                );
            } else {
                print_quotas(&quotas);
            }
        }
        QuotaSub::Set { project, cpu, memory, jobs } => {
            if cpu.is_none() && memory.is_none() && jobs.is_none() {
                return Err(Fail::invalid(
                    "give at least one of --cpu, --memory, --jobs (`kiln quota unset` removes a quota)",
                ));
            }
            let limits = QuotaLimits { cpu_millis: cpu, memory_bytes: memory, jobs };
            let q = client.set_quota(&project, &limits).await?;
            if json {
                print_json(&q)?;
            } else {
                print_quotas(std::slice::from_ref(&q));
            }
        }
        QuotaSub::Unset { project } => {
            client.delete_quota(&project).await?;
            if json {
                print_json(&serde_json::json!({ "project": project, "quota": null }))?;
            } else {
                outln!("project {project} has no quota now");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_quotas(quotas: &[QuotaInfo]) {
    let mut t = table(&["PROJECT", "CPU", "MEMORY", "JOBS", "WAITING"]);
    let of = |used: String, limit: Option<String>| match limit {
        Some(l) => format!("{used} / {l}"),
        None => format!("{used} / -"),
    };
    for q in quotas {
        let cpu = kiln_scheduler::model::format_cpu;
        t.add_row(vec![
            Cell::new(&q.project),
            Cell::new(of(cpu(q.used.cpu_millis), q.limits.cpu_millis.map(cpu))),
            Cell::new(of(human_size(q.used.memory_bytes), q.limits.memory_bytes.map(human_size))),
            Cell::new(of(q.used.jobs.to_string(), q.limits.jobs.map(|j| j.to_string()))),
            Cell::new(q.used.waiting),
        ]);
    }
    outln!("{t}");
}

/// `kiln offers`.
#[derive(Debug, Args)]
pub struct OffersArgs {
    #[command(flatten)]
    conn: Conn,
}

/// Runs `kiln nodes …`.
pub async fn nodes(cmd: NodesCmd) -> CmdResult {
    let client = cmd.conn.client()?;
    let json = cmd.conn.output == Format::Json;
    let update = |node: String, update: NodeUpdate| {
        let client = client.clone();
        async move {
            let n = client.update_node(&node, &update).await?;
            if json {
                print_json(&n)?;
            } else {
                print_nodes(std::slice::from_ref(&n));
            }
            Ok::<_, Fail>(ExitCode::SUCCESS)
        }
    };
    match cmd.cmd.unwrap_or(NodesSub::List) {
        NodesSub::List => {
            let nodes = client.nodes().await?;
            if json {
                print_json(&nodes)?;
            } else if nodes.is_empty() {
                outln!("no nodes: start an agent with `kiln agent --server URL --token T`");
            } else {
                print_nodes(&nodes);
            }
            Ok(ExitCode::SUCCESS)
        }
        NodesSub::Set { node, attributes } => {
            let mut set = BTreeMap::new();
            for a in &attributes {
                let (k, v) = parse_attr(a).map_err(|e| Fail::invalid(e.to_string()))?;
                set.insert(k, v);
            }
            update(node, NodeUpdate { set, ..NodeUpdate::default() }).await
        }
        NodesSub::Unset { node, keys } => {
            update(node, NodeUpdate { unset: keys, ..NodeUpdate::default() }).await
        }
        NodesSub::Disable { node } => {
            update(node, NodeUpdate { disabled: Some(true), ..NodeUpdate::default() }).await
        }
        NodesSub::Enable { node } => {
            update(node, NodeUpdate { disabled: Some(false), ..NodeUpdate::default() }).await
        }
        NodesSub::Images { node } => {
            let nodes = client.nodes().await?;
            let Some(n) = nodes.iter().find(|n| n.name == node || n.ip == node) else {
                return Err(Fail::invalid(format!(
                    "no node is named `{node}` or has that IP (`kiln nodes` lists them)"
                )));
            };
            if json {
                print_json(&n.images)?;
            } else if n.images.is_empty() {
                outln!("node {} reports no images", n.name);
            } else {
                print_images(n);
            }
            Ok(ExitCode::SUCCESS)
        }
        NodesSub::Prepull { image, selector } => {
            let mut wanted = BTreeMap::new();
            for s in &selector {
                let (k, v) = s.split_once('=').ok_or_else(|| {
                    Fail::invalid(format!("selector `{s}`: expected key=value (zone=a)"))
                })?;
                wanted.insert(k.trim().to_string(), v.trim().to_string());
            }
            let req = PrepullRequest { image, selector: wanted };
            let status = prepull(&client, &req, json).await?;
            if json {
                print_json(&status)?;
            } else {
                print_prepull(&status);
            }
            let failed = status.nodes.iter().filter(|n| n.state == "failed").count();
            Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        NodesSub::Forget { node } => {
            client.forget_node(&node).await?;
            if json {
                print_json(&serde_json::json!({ "forgotten": node }))?;
            } else {
                outln!("node {node} forgotten");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Starts a prepull and follows it to its end, telling each node's result on stderr as it
/// comes (unless `quiet`).
async fn prepull(
    client: &kiln_client::Client,
    req: &PrepullRequest,
    quiet: bool,
) -> Result<PrepullStatus, Fail> {
    let mut status = client.prepull(req).await?;
    let total = status.nodes.len();
    if !quiet {
        eprintln!("pulling {} onto {total} node(s)", status.image);
    }
    let mut told = BTreeSet::new();
    loop {
        for n in status.nodes.iter().filter(|n| n.state != "pulling") {
            if !quiet && told.insert(n.node.clone()) {
                let detail = n.detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default();
                eprintln!("  [{}/{total}] {} {}{detail}", told.len(), n.node, n.state);
            }
        }
        if status.done {
            return Ok(status);
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        status = client.prepull_status(&status.id).await?;
    }
}

fn print_prepull(status: &PrepullStatus) {
    let mut t = table(&["NODE", "STATE", "TIME", "DETAIL"]);
    for n in &status.nodes {
        let time =
            n.millis.map_or_else(|| "-".to_string(), |m| format!("{:.1}s", m as f64 / 1000.0));
        t.add_row(vec![
            Cell::new(&n.node),
            state_cell(&n.state),
            Cell::new(time),
            Cell::new(n.detail.as_deref().unwrap_or("-")),
        ]);
    }
    outln!("{t}");
}

fn print_images(n: &NodeInfo) {
    let mut t = table(&["ID", "TAGS", "SIZE", "LAST USED"]);
    for i in &n.images {
        let id = i.id.strip_prefix("sha256:").unwrap_or(&i.id);
        let tags = if i.tags.is_empty() { i.digests.join(",") } else { i.tags.join(",") };
        let used = i
            .last_used
            .map_or_else(|| "-".to_string(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string());
        t.add_row(vec![
            Cell::new(&id[..id.len().min(12)]),
            Cell::new(if tags.is_empty() { "-".to_string() } else { tags }),
            Cell::new(human_size(i.size)),
            Cell::new(used),
        ]);
    }
    outln!("{t}");
}

/// Runs `kiln offers`.
pub async fn offers(args: OffersArgs) -> CmdResult {
    let client = args.conn.client()?;
    let offers = client.offers().await?;
    if args.conn.output == Format::Json {
        print_json(&offers)?;
    } else if offers.is_empty() {
        outln!("no offers: no connected, enabled node (see `kiln nodes`)");
    } else {
        print_offers(&offers);
    }
    Ok(ExitCode::SUCCESS)
}

/// Every attribute name of `attrs`, sorted: one column each.
fn attribute_keys<'a>(attrs: impl Iterator<Item = &'a BTreeMap<String, AttrValue>>) -> Vec<String> {
    let keys: BTreeSet<String> = attrs.flat_map(|a| a.keys().cloned()).collect();
    keys.into_iter().collect()
}

fn attr_cell(attrs: &BTreeMap<String, AttrValue>, key: &str) -> String {
    attrs.get(key).map_or_else(|| "-".to_string(), ToString::to_string)
}

fn print_nodes(nodes: &[NodeInfo]) {
    let keys = attribute_keys(nodes.iter().map(|n| &n.attributes));
    let mut headers = vec!["INDEX", "IP", "HOSTNAME", "NAME", "STATE", "DISABLED", "RUNNING"];
    let upper: Vec<String> = keys.iter().map(|k| k.to_uppercase()).collect();
    headers.extend(upper.iter().map(String::as_str));
    let mut t = table(&headers);
    for n in nodes {
        let mut row = vec![
            Cell::new(n.index),
            Cell::new(if n.ip.is_empty() { "-" } else { &n.ip }),
            Cell::new(&n.hostname),
            Cell::new(&n.name),
            state_cell(&n.state),
            Cell::new(n.disabled),
            Cell::new(format!("{}/{}", n.running, n.capacity)),
        ];
        row.extend(keys.iter().map(|k| Cell::new(attr_cell(&n.attributes, k))));
        t.add_row(row);
    }
    outln!("{t}");
}

fn ports_text(ranges: &[PortRange]) -> String {
    if ranges.is_empty() {
        return "-".into();
    }
    ranges.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

fn print_offers(offers: &[Offer]) {
    let keys = attribute_keys(offers.iter().map(|o| &o.attributes));
    let mut headers = vec!["INDEX", "IP", "HOSTNAME", "CPUS", "MEMORY", "DISK", "SLOTS", "PORTS"];
    let upper: Vec<String> = keys.iter().map(|k| k.to_uppercase()).collect();
    headers.extend(upper.iter().map(String::as_str));
    let mut t = table(&headers);
    for o in offers {
        let mut row = vec![
            Cell::new(o.index),
            Cell::new(if o.ip.is_empty() { "-" } else { &o.ip }),
            Cell::new(&o.hostname),
            Cell::new(kiln_scheduler::model::format_cpu(o.free.cpu_millis)),
            Cell::new(human_size(o.free.memory_bytes)),
            Cell::new(human_size(o.free.disk_bytes)),
            Cell::new(o.free_slots),
            Cell::new(ports_text(&o.free_ports)),
        ];
        row.extend(keys.iter().map(|k| Cell::new(attr_cell(&o.attributes, k))));
        t.add_row(row);
    }
    outln!("{t}");
}
