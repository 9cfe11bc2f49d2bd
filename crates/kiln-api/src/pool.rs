//! The resource pool on the wire: what an agent declares of its host, the operators' view of
//! nodes and their free capacity (offers), and attribute values.
//!
//! Attributes follow Mesos agents' `--attributes` (which Marathon and BCS constraints read):
//! a value is a number when it parses as one (`cores=8`, `ratio=0.5`), a set when written
//! `{a,b}` (`zones={gz,sz}`), and text otherwise (`city=shenzhen`).

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An attribute value of a node: text, a number or a set of texts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum AttrValue {
    /// A number (BCS's scalar).
    Number(f64),
    /// Text (BCS's string).
    Text(String),
    /// A set of texts (BCS's set), kept sorted and without duplicates.
    Set(Vec<String>),
}

/// Why an attribute could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttrError {
    /// Not `key=value`.
    #[error(
        "attribute `{0}` is not key=value (for example city=shenzhen, cores=8, zones={{gz,sz}})"
    )]
    NoEquals(String),
    /// The key is empty or has characters other than letters, digits, `.`, `_`, `-`.
    #[error(
        "attribute name `{0}` is not valid: use 1 to 64 letters, digits, `.`, `_` or `-`, starting with a letter"
    )]
    BadKey(String),
    /// A set with an empty member, or an unclosed brace.
    #[error(
        "attribute `{key}`: set `{value}` is not valid: write {{a,b,c}} with non-empty members"
    )]
    BadSet {
        /// Attribute name.
        key: String,
        /// What was given.
        value: String,
    },
}

impl AttrValue {
    /// Reads a value as Mesos does: a number if it parses as a finite one, `{a,b}` a set, else
    /// text. `key` only names the attribute in errors.
    pub fn parse(key: &str, value: &str) -> Result<AttrValue, AttrError> {
        let v = value.trim();
        if let Some(inner) = v.strip_prefix('{') {
            let bad = || AttrError::BadSet { key: key.to_string(), value: value.to_string() };
            let inner = inner.strip_suffix('}').ok_or_else(bad)?;
            let mut members = Vec::new();
            if !inner.trim().is_empty() {
                for m in inner.split(',') {
                    let m = m.trim();
                    if m.is_empty() {
                        return Err(bad());
                    }
                    members.push(m.to_string());
                }
            }
            members.sort();
            members.dedup();
            return Ok(AttrValue::Set(members));
        }
        match v.parse::<f64>() {
            Ok(n) if n.is_finite() && !v.is_empty() => Ok(AttrValue::Number(n)),
            _ => Ok(AttrValue::Text(v.to_string())),
        }
    }

    /// The type's name as BCS calls it: `string`, `scalar` or `set`.
    pub fn kind(&self) -> &'static str {
        match self {
            AttrValue::Number(_) => "scalar",
            AttrValue::Text(_) => "string",
            AttrValue::Set(_) => "set",
        }
    }
}

impl fmt::Display for AttrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrValue::Number(n) => write!(f, "{n}"),
            AttrValue::Text(t) => f.write_str(t),
            AttrValue::Set(s) => write!(f, "{{{}}}", s.join(",")),
        }
    }
}

/// Checks an attribute name: 1 to 64 of `[A-Za-z0-9._-]`, starting with a letter.
pub fn check_attr_key(key: &str) -> Result<(), AttrError> {
    let ok = !key.is_empty()
        && key.len() <= 64
        && key.starts_with(|c: char| c.is_ascii_alphabetic())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok { Ok(()) } else { Err(AttrError::BadKey(key.to_string())) }
}

/// Reads `key=value` (see [`AttrValue::parse`]).
pub fn parse_attr(text: &str) -> Result<(String, AttrValue), AttrError> {
    let (key, value) = text.split_once('=').ok_or_else(|| AttrError::NoEquals(text.to_string()))?;
    let key = key.trim();
    check_attr_key(key)?;
    Ok((key.to_string(), AttrValue::parse(key, value)?))
}

/// What a host offers in all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Resources {
    /// CPU in millicores (1000 = one core).
    pub cpu_millis: u64,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Disk in bytes (of the agent's work directory's file system).
    pub disk_bytes: u64,
}

/// An inclusive range of host ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PortRange {
    /// First port.
    pub start: u16,
    /// Last port (inclusive).
    pub end: u16,
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

impl PortRange {
    /// The default range agents offer: 31000-32000, like BCS and Mesos.
    pub const DEFAULT: PortRange = PortRange { start: 31000, end: 32000 };

    /// Reads `start-end`.
    pub fn parse(text: &str) -> Result<PortRange, String> {
        let bad = || {
            format!("port range `{text}` is not valid: write start-end, for example 31000-32000")
        };
        let (a, b) = text.split_once('-').ok_or_else(bad)?;
        let start: u16 = a.trim().parse().map_err(|_| bad())?;
        let end: u16 = b.trim().parse().map_err(|_| bad())?;
        if start == 0 || start > end {
            return Err(bad());
        }
        Ok(PortRange { start, end })
    }
}

/// A node as operators see it (`kiln nodes`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeInfo {
    /// Position in the list (stable order: by name).
    pub index: usize,
    /// The agent's name (unique).
    pub name: String,
    /// The IP the node is reached at (host ports are published on it).
    pub ip: String,
    /// Host name.
    pub hostname: String,
    /// `ready` (its agent polls), `lost` (missed heartbeats; its tasks were rescheduled) or
    /// `down` (its agent stopped or has not come back since the server started).
    pub state: String,
    /// Set by an operator: no new work is placed on it.
    pub disabled: bool,
    /// `docker` or `process`.
    pub executor: String,
    /// Jobs at once.
    pub capacity: u32,
    /// What it has in all.
    pub resources: Resources,
    /// Host ports it hands out.
    pub ports: PortRange,
    /// Attributes: the agent's own, with operators' values over them.
    #[schema(value_type = Object)]
    pub attributes: BTreeMap<String, AttrValue>,
    /// Attributes set by operators (`kiln nodes set`), a subset of `attributes`.
    #[schema(value_type = Object)]
    pub operator_attributes: BTreeMap<String, AttrValue>,
    /// Attempts running there now.
    pub running: u32,
    /// Its agent's last poll.
    pub last_seen: Option<DateTime<Utc>>,
    /// The images its engine holds, as its agent last reported them (none for executors
    /// without images).
    #[serde(default)]
    pub images: Vec<NodeImage>,
}

/// An image a node's engine holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeImage {
    /// The engine's image id (`sha256:…`).
    pub id: String,
    /// Repo tags (`busybox:latest`, `127.0.0.1:7171/shop/web:1`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Repo digests (`127.0.0.1:7171/shop/web@sha256:…`).
    #[serde(default)]
    pub digests: Vec<String>,
    /// Size in bytes.
    pub size: u64,
    /// When a task on the node last used it, or it was pulled there (the agent's clock);
    /// absent: not since the agent started keeping track.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used: Option<DateTime<Utc>>,
}

/// Body of `POST /api/v1/nodes/prepull`: pull an image onto nodes ahead of the jobs that
/// need it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PrepullRequest {
    /// The image (`busybox:latest`, `127.0.0.1:7171/shop/web:1`); an image of Kiln's
    /// registry is pulled with a pull token of its project.
    pub image: String,
    /// Only nodes whose attributes have these values (`city=shenzhen`; the built-in
    /// `hostname` and `ip`, and `name`, the node's name, too); empty: every node.
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
}

/// A prepull and how far it got on each node (`kiln nodes prepull`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PrepullStatus {
    /// Its id (`GET /api/v1/nodes/prepull/{id}`).
    pub id: String,
    /// The image.
    pub image: String,
    /// When it was asked for.
    pub started_at: DateTime<Utc>,
    /// Every node has answered (or was skipped).
    pub done: bool,
    /// The selected nodes, by name.
    pub nodes: Vec<PrepullNode>,
}

/// One node's part of a prepull.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PrepullNode {
    /// The node's name.
    pub node: String,
    /// `pulling`, `pulled`, `failed` or `skipped` (its executor has no images, or its agent
    /// is not connected).
    pub state: String,
    /// Why it failed or was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// How long the pull took, in milliseconds, once it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub millis: Option<u64>,
}

/// A node's free capacity (`kiln offers`, like `bcs-client offer`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Offer {
    /// Position in the list.
    pub index: usize,
    /// The agent's name.
    pub name: String,
    /// IP.
    pub ip: String,
    /// Host name.
    pub hostname: String,
    /// Free now.
    pub free: Resources,
    /// Free job slots.
    pub free_slots: u32,
    /// Host port ranges not handed out.
    pub free_ports: Vec<PortRange>,
    /// Attributes.
    #[schema(value_type = Object)]
    pub attributes: BTreeMap<String, AttrValue>,
}

/// Where an attempt was placed: its node and the host ports it was given. Reach a port at
/// `ip:host` (the job sees them as `KILN_HOST_IP` and `KILN_PORT_<NAME>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobPlacement {
    /// The node's name (`KILN_NODE`).
    pub node: String,
    /// Its host name (`KILN_HOSTNAME`).
    pub hostname: String,
    /// Its IP (`KILN_HOST_IP`), where the ports are published.
    pub ip: String,
    /// The named ports, in the order the job lists them.
    #[serde(default)]
    pub ports: Vec<PlacedPort>,
}

/// A named port of a placed attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PlacedPort {
    /// The port's name in the job.
    pub name: String,
    /// The host port given (`KILN_PORT_<NAME>`).
    pub host: u16,
    /// The container port it maps to (equal to `host` with `network: host`).
    pub container: u16,
}

/// Body of `PATCH /api/v1/nodes/{node}`: what operators change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeUpdate {
    /// Attributes to set (over the agent's own).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub set: BTreeMap<String, AttrValue>,
    /// Operator attributes to remove (an attribute the agent itself declares stays).
    #[serde(default)]
    pub unset: Vec<String>,
    /// Disable (`true`) or enable (`false`) placement on it.
    #[serde(default)]
    pub disabled: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_as_mesos_reads_them() {
        assert_eq!(
            parse_attr("city=shenzhen").unwrap(),
            ("city".into(), AttrValue::Text("shenzhen".into()))
        );
        assert_eq!(parse_attr("cores=8").unwrap().1, AttrValue::Number(8.0));
        assert_eq!(parse_attr("ratio= 0.5").unwrap().1, AttrValue::Number(0.5));
        assert_eq!(
            parse_attr("zones={sz, gz,sz}").unwrap().1,
            AttrValue::Set(vec!["gz".into(), "sz".into()])
        );
        assert_eq!(parse_attr("empty={}").unwrap().1, AttrValue::Set(vec![]));
        assert_eq!(parse_attr("v=").unwrap().1, AttrValue::Text(String::new()));
        assert_eq!(parse_attr("x=inf").unwrap().1, AttrValue::Text("inf".into()));
        assert!(matches!(parse_attr("city"), Err(AttrError::NoEquals(_))));
        assert!(matches!(parse_attr("9lives=1"), Err(AttrError::BadKey(_))));
        assert!(matches!(parse_attr("z={a,,b}"), Err(AttrError::BadSet { .. })));
        assert!(matches!(parse_attr("z={a"), Err(AttrError::BadSet { .. })));
    }

    #[test]
    fn values_keep_their_type_through_json() {
        for v in [
            AttrValue::Number(8.0),
            AttrValue::Text("8a".into()),
            AttrValue::Set(vec!["a".into(), "b".into()]),
        ] {
            let json = serde_json::to_string(&v).unwrap();
            assert_eq!(serde_json::from_str::<AttrValue>(&json).unwrap(), v, "{json}");
        }
        assert_eq!(AttrValue::Set(vec!["a".into(), "b".into()]).to_string(), "{a,b}");
    }

    #[test]
    fn port_ranges_are_checked() {
        assert_eq!(PortRange::parse("31000-32000").unwrap(), PortRange::DEFAULT);
        assert!(PortRange::parse("32000-31000").is_err());
        assert!(PortRange::parse("0-10").is_err());
        assert!(PortRange::parse("31000").is_err());
    }
}

/// What one project may hold on the pool at once; `None` = no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuotaLimits {
    /// CPU in millicores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_millis: Option<u64>,
    /// Memory in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Jobs running at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs: Option<u32>,
}

/// What a project holds on the pool now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuotaUsage {
    /// CPU in millicores reserved by its running jobs.
    pub cpu_millis: u64,
    /// Memory in bytes reserved by its running jobs.
    pub memory_bytes: u64,
    /// Its jobs placed on nodes (running or about to).
    pub jobs: u32,
    /// Its jobs waiting for a node.
    pub waiting: u32,
}

/// A project's quota and use (`kiln quota`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuotaInfo {
    /// The project.
    pub project: String,
    /// Its limits (all `None` when it has no quota).
    pub limits: QuotaLimits,
    /// What it holds now.
    pub used: QuotaUsage,
}
