//! The data placement works on: nodes (what an agent registered), asks (what a task needs)
//! and placements (where it goes). Plain values; no behaviour beyond validation and display.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::fmt;

use crate::constraint::Constraints;

/// Identifies a node (an agent's machine) in the pool.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub String);

/// Identifies one task to place (one attempt of one job); unique in a pool's ledger.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId(pub String);

/// The tasks that UNIQUE, CLUSTER, GROUP_BY and MAX_PER count together, such as one job of
/// one run (`run-42/build`) or every instance of a service. Tasks of different groups never
/// see each other's placements.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKey(pub String);

macro_rules! display_id {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl From<&str> for $t {
            fn from(s: &str) -> Self {
                Self(s.to_string())
            }
        }
    )*};
}
display_id!(NodeId, TaskId, GroupKey);

/// Amounts of the three scalar resources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Resources {
    /// CPU in thousandths of a core (`500` = half a core).
    pub cpu_millis: u64,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Disk in bytes.
    pub disk_bytes: u64,
}

impl Resources {
    /// `cpu_millis`, `memory_bytes`, `disk_bytes`.
    pub const fn new(cpu_millis: u64, memory_bytes: u64, disk_bytes: u64) -> Self {
        Resources { cpu_millis, memory_bytes, disk_bytes }
    }

    /// Each amount of `self` minus `other`, stopping at zero.
    pub fn saturating_sub(self, other: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_sub(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_sub(other.memory_bytes),
            disk_bytes: self.disk_bytes.saturating_sub(other.disk_bytes),
        }
    }

    /// Each amount of `self` plus `other`, stopping at `u64::MAX`.
    pub fn saturating_add(self, other: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_add(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_add(other.memory_bytes),
            disk_bytes: self.disk_bytes.saturating_add(other.disk_bytes),
        }
    }

    /// Whether every amount of `self` is at most the same amount of `other`.
    pub fn fits_in(self, other: Resources) -> bool {
        self.cpu_millis <= other.cpu_millis
            && self.memory_bytes <= other.memory_bytes
            && self.disk_bytes <= other.disk_bytes
    }
}

/// A node attribute's value (BCS and Mesos call them text, scalar and set).
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    /// Text, such as `city: shenzhen`.
    Text(String),
    /// A number, such as `cores: 96` or `gcc: 12.2`.
    Number(f64),
    /// A set of texts, such as `gcc: {9, 12}`.
    Set(BTreeSet<String>),
}

impl AttrValue {
    /// The canonical text of the value: the text, the number as Rust prints an `f64`
    /// (`12`, `12.5`), or the set's items sorted and joined with `,`.
    pub fn canonical(&self) -> String {
        match self {
            AttrValue::Text(t) => t.clone(),
            AttrValue::Number(n) => format_number(*n),
            AttrValue::Set(items) => items.iter().cloned().collect::<Vec<_>>().join(","),
        }
    }

    /// The value as a number: a number, or a text that parses as one.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            AttrValue::Number(n) => Some(*n),
            AttrValue::Text(t) => t.trim().parse().ok().filter(|n: &f64| n.is_finite()),
            AttrValue::Set(_) => None,
        }
    }
}

/// Why an attribute as an agent wrote it can not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttrError {
    /// An empty name, or one with spaces or `=`.
    #[error("attribute name '{0}': expected a non-empty name without spaces or '='")]
    Name(String),
    /// A kind other than string, number or set.
    #[error("attribute '{name}': unknown kind '{kind}', expected string, number or set")]
    Kind {
        /// The attribute.
        name: String,
        /// The kind written.
        kind: String,
    },
    /// A value that does not fit its kind.
    #[error("attribute '{name}': value '{value}' is not {expected}")]
    Value {
        /// The attribute.
        name: String,
        /// The value written.
        value: String,
        /// What the kind takes.
        expected: &'static str,
    },
}

impl AttrValue {
    /// Reads an attribute as an agent's flags write it (BCS's `--string`, `--scalar`,
    /// `--set`): `kind` is `string` (or `text`), `number` (or `scalar`), or `set` (items
    /// separated by commas, blanks trimmed, empty items dropped).
    pub fn parse(name: &str, kind: &str, value: &str) -> Result<AttrValue, AttrError> {
        check_attr_name(name)?;
        match kind.to_ascii_lowercase().as_str() {
            "string" | "text" => Ok(AttrValue::Text(value.to_string())),
            "number" | "scalar" => value
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite())
                .map(AttrValue::Number)
                .ok_or_else(|| AttrError::Value {
                    name: name.to_string(),
                    value: value.to_string(),
                    expected: "a number",
                }),
            "set" => Ok(AttrValue::Set(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|i| !i.is_empty())
                    .map(str::to_string)
                    .collect(),
            )),
            _ => Err(AttrError::Kind { name: name.to_string(), kind: kind.to_string() }),
        }
    }

    /// Reads attributes from JSON: an object whose values are text, a number, or a list of
    /// texts (a set).
    pub fn map_from_json(v: &serde_json::Value) -> Result<BTreeMap<String, AttrValue>, AttrError> {
        let obj = v.as_object().ok_or_else(|| AttrError::Value {
            name: "attributes".to_string(),
            value: v.to_string(),
            expected: "an object of name -> text, number or list of texts",
        })?;
        let mut out = BTreeMap::new();
        for (name, value) in obj {
            check_attr_name(name)?;
            let bad = || AttrError::Value {
                name: name.clone(),
                value: value.to_string(),
                expected: "text, a number or a list of texts",
            };
            let parsed = match value {
                serde_json::Value::String(s) => AttrValue::Text(s.clone()),
                serde_json::Value::Number(n) => AttrValue::Number(n.as_f64().ok_or_else(bad)?),
                serde_json::Value::Array(items) => AttrValue::Set(
                    items
                        .iter()
                        .map(|i| i.as_str().map(str::to_string))
                        .collect::<Option<_>>()
                        .ok_or_else(bad)?,
                ),
                _ => return Err(bad()),
            };
            out.insert(name.clone(), parsed);
        }
        Ok(out)
    }
}

fn check_attr_name(name: &str) -> Result<(), AttrError> {
    if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '=') {
        return Err(AttrError::Name(name.to_string()));
    }
    Ok(())
}

/// `12` for 12.0, `12.5` for 12.5.
pub(crate) fn format_number(n: f64) -> String {
    format!("{n}")
}

/// An inclusive range of host ports, such as `31000-32000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// First port.
    pub start: u16,
    /// Last port (inclusive).
    pub end: u16,
}

impl PortRange {
    /// The agents' default dynamic port range, 31000-32000 (as Mesos and BCS).
    pub const DEFAULT: PortRange = PortRange { start: 31000, end: 32000 };

    /// Whether `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        self.start <= port && port <= self.end
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// A machine of the pool, as its agent registered it.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Unique id.
    pub id: NodeId,
    /// Host name (also the attribute `hostname` unless one is set).
    pub hostname: String,
    /// The address tasks' ports are reached on (also the attribute `ip` unless one is set).
    pub ip: String,
    /// Disabled by an operator: nothing new is placed on it.
    pub disabled: bool,
    /// Everything the machine has.
    pub total: Resources,
    /// Kept back for the system and the agent; never handed to tasks.
    pub reserved: Resources,
    /// Host ports handed out to tasks (dynamic ones are taken from here, lowest first).
    pub ports: Vec<PortRange>,
    /// Attributes (`city`, `storageType`, `gcc`...), matched by constraints.
    pub attributes: BTreeMap<String, AttrValue>,
    /// Tasks it runs at once at most (an agent's slots); `None`: only resources limit it.
    pub slots: Option<u32>,
    /// The container images its engine holds, by [`image_key`] (every repo tag and repo
    /// digest of an image), with the image's size in bytes. A score only (ImageLocality):
    /// changing them never changes the node's version or what fits.
    pub images: BTreeMap<String, u64>,
}

impl Node {
    /// A node with `total` resources, the default port range, nothing reserved and no
    /// attributes; `id` is also its hostname.
    pub fn new(id: &str, ip: &str, total: Resources) -> Node {
        Node {
            id: NodeId(id.to_string()),
            hostname: id.to_string(),
            ip: ip.to_string(),
            disabled: false,
            total,
            reserved: Resources::default(),
            ports: vec![PortRange::DEFAULT],
            attributes: BTreeMap::new(),
            slots: None,
            images: BTreeMap::new(),
        }
    }

    /// What tasks may use: `total - reserved`.
    pub fn allocatable(&self) -> Resources {
        self.total.saturating_sub(self.reserved)
    }

    /// The attribute `name`, with `hostname` and `ip` built in.
    pub fn attribute(&self, name: &str) -> Option<AttrValue> {
        match self.attributes.get(name) {
            Some(v) => Some(v.clone()),
            None if name == "hostname" => Some(AttrValue::Text(self.hostname.clone())),
            None if name == "ip" => Some(AttrValue::Text(self.ip.clone())),
            None => None,
        }
    }
}

/// How a task's container is networked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Network {
    /// Its own network namespace; host ports are mapped to container ports.
    #[default]
    Bridge,
    /// The host's network: the container listens on the host port itself.
    Host,
}

/// How to choose among the nodes a task fits on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Fill the fullest node that fits first (keeps whole machines free for big tasks).
    #[default]
    BinPack,
    /// Prefer the emptiest node (spreads load and failures).
    Spread,
}

/// A named port a task asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PortAsk {
    /// Name (`http`, `SERVICE_PORT`); exported as `KILN_PORT_<NAME>`.
    pub name: String,
    /// The host port: `0` = any free port of the node's ranges, chosen at placement.
    pub host: u16,
    /// The port inside the container. In host network mode it is the host port and may be
    /// left out; in bridge mode it is required.
    pub container: Option<u16>,
}

/// What one task needs: the request placement answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    /// The task (unique in the ledger).
    pub task: TaskId,
    /// The group its UNIQUE, CLUSTER, GROUP_BY and MAX_PER constraints count in.
    pub group: GroupKey,
    /// The project it is charged to (quotas, fair share).
    pub project: String,
    /// Higher goes first when the pool is short (default 0).
    pub priority: i32,
    /// CPU, memory and disk.
    pub resources: Resources,
    /// Named host ports.
    pub ports: Vec<PortAsk>,
    /// Bridge or host networking.
    pub network: Network,
    /// Where it may run.
    pub constraints: Constraints,
    /// Bin-pack (default) or spread.
    pub strategy: Strategy,
    /// The task's container image, by [`image_key`]: nodes that hold it score higher
    /// (ImageLocality), never overriding constraints or fit. `None`: no preference.
    pub image: Option<String>,
}

impl Ask {
    /// A task of `group` in `project` asking for `resources`, with no port, constraint or
    /// priority.
    pub fn new(task: &str, group: &str, project: &str, resources: Resources) -> Ask {
        Ask {
            task: TaskId(task.to_string()),
            group: GroupKey(group.to_string()),
            project: project.to_string(),
            priority: 0,
            resources,
            ports: Vec::new(),
            network: Network::Bridge,
            constraints: Constraints::default(),
            strategy: Strategy::BinPack,
            image: None,
        }
    }

    /// Checks the ports: names are non-empty `[A-Za-z0-9_-]`, distinct once turned into env
    /// names; fixed host ports distinct; a container port in bridge mode; in host mode a
    /// container port, if given, equal to a fixed host port.
    pub fn validate(&self) -> Result<(), AskError> {
        if self.ports.is_empty() {
            return Ok(());
        }
        for (i, p) in self.ports.iter().enumerate() {
            if p.name.is_empty()
                || !p.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(AskError::PortName(p.name.clone()));
            }
            let same_env = |a: &str, b: &str| {
                a.len() == b.len()
                    && a.bytes().zip(b.bytes()).all(|(x, y)| {
                        let norm = |c: u8| if c == b'-' { b'_' } else { c.to_ascii_uppercase() };
                        norm(x) == norm(y)
                    })
            };
            if let Some(other) = self.ports[..i].iter().find(|o| same_env(&o.name, &p.name)) {
                return Err(AskError::DuplicatePort(other.name.clone(), p.name.clone()));
            }
            if p.host != 0 && self.ports[..i].iter().any(|o| o.host == p.host) {
                return Err(AskError::DuplicateHostPort(p.host));
            }
            match (self.network, p.container) {
                (Network::Bridge, None) | (Network::Bridge, Some(0)) => {
                    return Err(AskError::ContainerPortNeeded(p.name.clone()));
                }
                (Network::Host, Some(c)) if p.host == 0 || c != p.host => {
                    return Err(AskError::HostModePort(p.name.clone(), c));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Why an [`Ask`] is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AskError {
    /// A port name with characters other than letters, digits, `_` and `-`.
    #[error("port name '{0}': expected letters, digits, '_' or '-'")]
    PortName(String),
    /// Two ports whose env names (`KILN_PORT_<NAME>`) collide.
    #[error("ports '{0}' and '{1}' would both be exported as {name}", name = port_env_name(.1))]
    DuplicatePort(String, String),
    /// The same fixed host port asked twice.
    #[error("host port {0} is asked twice")]
    DuplicateHostPort(u16),
    /// Bridge networking with no container port.
    #[error("port '{0}': a container port is needed in bridge network mode")]
    ContainerPortNeeded(String),
    /// Host networking with a container port other than the host port.
    #[error(
        "port '{0}': in host network mode the container listens on the host port; container port {1} can only be given with the same fixed host port"
    )]
    HostModePort(String, u16),
}

/// `KILN_PORT_` and the name upper-cased, `-` turned into `_`.
pub fn port_env_name(name: &str) -> String {
    let mut s = String::from("KILN_PORT_");
    s.extend(name.chars().map(|c| if c == '-' { '_' } else { c.to_ascii_uppercase() }));
    s
}

/// A host port given to a task.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AssignedPort {
    /// The port's name.
    pub name: String,
    /// The host port (reach the task at `Placement::ip:host`).
    pub host: u16,
    /// The container port (equal to `host` in host network mode).
    pub container: u16,
}

/// Where a task goes: the answer of a successful placement.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// The task.
    pub task: TaskId,
    /// The node chosen.
    pub node: NodeId,
    /// Its host name.
    pub hostname: String,
    /// Its IP, where the task's ports are reached.
    pub ip: String,
    /// The node's version in the pool when it was chosen: a commit on a node that changed
    /// since is refused.
    pub node_version: u64,
    /// What is reserved.
    pub resources: Resources,
    /// The host ports given, in the order asked.
    pub ports: Vec<AssignedPort>,
    /// Bridge or host.
    pub network: Network,
}

impl Placement {
    /// The env to inject into the task: `KILN_HOST_IP`, `KILN_HOSTNAME`, `KILN_NODE` and one
    /// `KILN_PORT_<NAME>` per port (its host port), sorted by name.
    pub fn env(&self) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        env.insert("KILN_HOST_IP".to_string(), self.ip.clone());
        env.insert("KILN_HOSTNAME".to_string(), self.hostname.clone());
        env.insert("KILN_NODE".to_string(), self.node.0.clone());
        for p in &self.ports {
            env.insert(port_env_name(&p.name), p.host.to_string());
        }
        env
    }
}

/// `8` for 8000 millicores, `0.5` for 500.
pub fn format_cpu(millis: u64) -> String {
    if millis.is_multiple_of(1000) {
        format!("{}", millis / 1000)
    } else {
        let s = format!("{:.3}", millis as f64 / 1000.0);
        s.trim_end_matches('0').to_string()
    }
}

/// `4Gi`, `512Mi`, `1.5Gi`, or bytes when under 1Ki.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] =
        [("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)];
    for (unit, size) in UNITS {
        if bytes >= size {
            let v = bytes as f64 / size as f64;
            let s = format!("{v:.1}");
            let s = s.strip_suffix(".0").unwrap_or(&s);
            return format!("{s}{unit}");
        }
    }
    format!("{bytes}B")
}

/// The one spelling of an image reference that nodes' image lists and asks are compared in,
/// as Docker resolves short names: `busybox` and `docker.io/library/busybox:latest` are
/// `busybox:latest`, `user/app` is `user/app:latest`; a reference by digest
/// (`repo@sha256:…`) keeps its digest and drops any tag; other registries are kept as they
/// are (`127.0.0.1:7171/shop/web:1`).
pub fn image_key(reference: &str) -> String {
    let r = reference.trim();
    let (name, digest) = match r.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (r, None),
    };
    // A tag is after the last ':' that follows the last '/' (a registry's port is not one).
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    let (repo, tag) = match name[slash..].rfind(':') {
        Some(i) => (&name[..slash + i], Some(&name[slash + i + 1..])),
        None => (name, None),
    };
    let repo = repo
        .strip_prefix("docker.io/")
        .or_else(|| repo.strip_prefix("index.docker.io/"))
        .unwrap_or(repo);
    let repo = repo.strip_prefix("library/").filter(|r| !r.contains('/')).unwrap_or(repo);
    match (digest, tag) {
        (Some(d), _) => format!("{repo}@{d}"),
        (None, Some(t)) if !t.is_empty() => format!("{repo}:{t}"),
        (None, _) => format!("{repo}:latest"),
    }
}
