//! Service files (`kind: service`): the raw form as written (`RawServiceFile`, with `KEYS`
//! and the JSON Schema), reading it with the workflow's [`Reader`], and checking it into a
//! [`ServiceSpec`] with the workflow's [`Checker`] (resources, constraints and ports are
//! checked exactly as a job's).
//!
//! Like the workflow compiler, every stage reports all the problems it finds and goes on;
//! the spec is kept only when no error was reported. Values are literal: `${{ }}`
//! expressions are not evaluated in service files and are an error.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

use crate::check::{Checker, is_env_name};
use crate::diag::{Diagnostic, Severity};
use crate::plan::{PortSpec, Scheduling};
use crate::raw::{
    ConstraintsSchema, DurationText, Entries, EnvMap, RawPort, RawResources, RawTerm, Sp, TextList,
};
use crate::read::{Reader, suggest};
use crate::service::{
    Amount, HealthCheck, MAX_REPLICAS, OnChange, Probe, Restart, RestartPolicy, ServiceConfig,
    ServiceRun, ServiceSpec, UpdatePolicy,
};
use crate::yaml::{self, Kind as NodeKind, Node, Pos};
use crate::{CompiledService, Kind};

/// Schema of `kind:` in a service file.
pub struct ServiceKindSchema;

impl JsonSchema for ServiceKindSchema {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "ServiceKind".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "const": "service",
            "description": "Marks a service file (without it, a file is a workflow)."
        })
    }
}

/// Schema of `replicas`.
pub struct ReplicasSchema;

impl JsonSchema for ReplicasSchema {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Replicas".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "integer", "minimum": 1, "maximum": MAX_REPLICAS })
    }
}

/// Schema of a count or a percentage (`max-surge`, `max-unavailable`).
pub struct AmountSchema;

impl JsonSchema for AmountSchema {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Amount".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": "^\\s*[0-9]+\\s*%\\s*$",
                  "description": "A percentage of replicas, at most 100%." }
            ]
        })
    }
}

/// Schema of `labels`: Kubernetes' label syntax.
pub struct LabelsSchema;

impl JsonSchema for LabelsSchema {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Labels".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "propertyNames": {
                "pattern": "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
            },
            "additionalProperties": {
                "type": ["string", "number", "boolean", "null"],
                "description": "Empty, or 1 to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit."
            }
        })
    }
}

/// A service file as written.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(
    title = "Kiln service",
    deny_unknown_fields,
    extend("anyOf" = [{ "required": ["image"] }, { "required": ["command"] }])
)]
pub struct RawServiceFile {
    /// `service`: this file describes a long-running service, not a workflow.
    #[schemars(with = "ServiceKindSchema")]
    pub kind: Option<Sp<String>>,
    /// The service's name: lowercase letters, digits and `-` (at most 63).
    #[schemars(with = "String")]
    pub name: Option<Sp<String>>,
    /// Container image. Without one, `command` runs on the process executor.
    pub image: Option<Sp<String>>,
    /// Replaces the image's entrypoint; required without `image`.
    #[schemars(with = "Option<TextList>")]
    pub command: Option<Sp<Vec<Sp<String>>>>,
    /// Arguments for the entrypoint or `command`.
    #[schemars(with = "Option<TextList>")]
    pub args: Option<Sp<Vec<Sp<String>>>>,
    /// Env of every instance (literal values).
    #[schemars(with = "Option<EnvMap>")]
    pub env: Option<Entries<Sp<String>>>,
    /// Resources of each instance (as a job's).
    pub resources: Option<Sp<RawResources>>,
    /// How many instances run: 1 to 1000 (default 1).
    #[schemars(with = "Option<ReplicasSchema>")]
    pub replicas: Option<Sp<String>>,
    /// Which machines of the pool may run an instance (as a job's `constraints`; `[hostname,
    /// UNIQUE]`, `[city, UNIQUE]` spread the instances). See docs/scheduling.md.
    #[schemars(with = "Option<ConstraintsSchema>")]
    pub constraints: Option<Sp<Vec<Sp<Vec<RawTerm>>>>>,
    /// Named ports: `{name, host, container}`; host `0` (the default) takes a free port of the
    /// machine's range, exported as `KILN_PORT_<NAME>`.
    pub ports: Option<Sp<Vec<RawPort>>>,
    /// Labels, in Kubernetes' syntax (`team: build`, `example.com/tier: cache`).
    #[schemars(with = "Option<LabelsSchema>")]
    pub labels: Option<Entries<Sp<String>>>,
    /// How an instance's health is checked (one of `tcp`, `http`, `command`).
    pub health: Option<Sp<RawHealth>>,
    /// What happens when an instance exits.
    pub restart: Option<Sp<RawRestart>>,
    /// How a new version replaces the running one.
    pub update: Option<Sp<RawUpdate>>,
    /// The project environment the service runs in: its instances get the environment's
    /// variables and secrets (a deploy sets it).
    #[schemars(with = "Option<String>")]
    pub environment: Option<Sp<String>>,
    /// Config files of the config center written into every instance:
    /// `{ app, path, on-change, signal }`.
    pub config: Option<Sp<RawServiceConfig>>,
}

/// A service's `config` as written.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawServiceConfig {
    /// The config center's application (default: the service's name).
    #[schemars(with = "Option<String>")]
    pub app: Option<Sp<String>>,
    /// Where the files appear in the container: an absolute path (default
    /// `/etc/kiln/config`).
    #[schemars(with = "Option<String>")]
    pub path: Option<Sp<String>>,
    /// What a new release does: `restart` (rolling, the default), `signal` (rewrite the files,
    /// then send `signal`) or `none` (rewrite the files).
    #[schemars(rename = "on-change", with = "Option<OnChangeSchema>")]
    pub on_change: Option<Sp<String>>,
    /// The signal of `on-change: signal` (default `HUP`): HUP, USR1, USR2, INT, QUIT, TERM or
    /// WINCH, with or without `SIG`.
    #[schemars(with = "Option<String>")]
    pub signal: Option<Sp<String>>,
}

impl RawServiceConfig {
    /// The keys of `config`.
    pub const KEYS: &[&str] = &["app", "path", "on-change", "signal"];
}

/// `on-change` in the schema.
#[derive(JsonSchema)]
#[allow(dead_code)]
#[serde(rename_all = "lowercase")]
enum OnChangeSchema {
    Restart,
    Signal,
    None,
}

/// The keys of a service pool's `service`: a service file's but `kind` and `name`.
pub(crate) const POOL_SERVICE_KEYS: &[&str] = &[
    "image",
    "command",
    "args",
    "env",
    "resources",
    "replicas",
    "constraints",
    "ports",
    "labels",
    "health",
    "restart",
    "update",
    "environment",
    "config",
];

impl RawServiceFile {
    /// The keys of a service file.
    pub const KEYS: &[&str] = &[
        "kind",
        "name",
        "image",
        "command",
        "args",
        "env",
        "resources",
        "replicas",
        "constraints",
        "ports",
        "labels",
        "health",
        "restart",
        "update",
        "environment",
        "config",
    ];
}

/// A health check as written.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(
    deny_unknown_fields,
    extend("oneOf" = [{ "required": ["tcp"] }, { "required": ["http"] }, { "required": ["command"] }])
)]
pub struct RawHealth {
    /// A TCP connection to this port (by name) succeeds.
    #[schemars(with = "Option<String>")]
    pub tcp: Option<Sp<String>>,
    /// An HTTP GET answers 200 to 399: `{ port, path }`.
    pub http: Option<Sp<RawHttpProbe>>,
    /// This command, run inside the instance, exits 0.
    #[schemars(with = "Option<TextList>")]
    pub command: Option<Sp<Vec<Sp<String>>>>,
    /// Failures do not count for this long after start (default 0s).
    #[schemars(with = "Option<DurationText>")]
    pub grace: Option<Sp<String>>,
    /// Time between checks (default 10s).
    #[schemars(with = "Option<DurationText>")]
    pub interval: Option<Sp<String>>,
    /// How long one check may take (default 1s).
    #[schemars(with = "Option<DurationText>")]
    pub timeout: Option<Sp<String>>,
    /// Consecutive failures that make an instance unhealthy (default 3).
    #[schemars(with = "Option<u32>")]
    pub failures: Option<Sp<u32>>,
}

impl RawHealth {
    /// The keys of `health`.
    pub const KEYS: &[&str] =
        &["tcp", "http", "command", "grace", "interval", "timeout", "failures"];
}

/// An HTTP probe as written.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawHttpProbe {
    /// The port, by name.
    #[schemars(with = "String")]
    pub port: Option<Sp<String>>,
    /// The path, starting with `/` (default `/`).
    pub path: Option<Sp<String>>,
}

impl RawHttpProbe {
    /// The keys of `health.http`.
    pub const KEYS: &[&str] = &["port", "path"];
}

/// A restart policy as written.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawRestart {
    /// `always` (the default), `on-failure` or `never`.
    pub policy: Option<Sp<Restart>>,
    /// Wait between restarts: `{ initial, max }`, doubling from `initial` up to `max`.
    pub backoff: Option<Sp<RawBackoff>>,
}

impl RawRestart {
    /// The keys of `restart`.
    pub const KEYS: &[&str] = &["policy", "backoff"];
}

/// A restart back-off as written.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawBackoff {
    /// Wait before the first restart (default 10s).
    #[schemars(with = "Option<DurationText>")]
    pub initial: Option<Sp<String>>,
    /// Longest wait (default 5m).
    #[schemars(with = "Option<DurationText>")]
    pub max: Option<Sp<String>>,
}

impl RawBackoff {
    /// The keys of `restart.backoff`.
    pub const KEYS: &[&str] = &["initial", "max"];
}

/// An update policy as written.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawUpdate {
    /// Instances above `replicas` during an update: a count or a percentage (default 25%,
    /// rounded up).
    #[schemars(rename = "max-surge", with = "Option<AmountSchema>")]
    pub max_surge: Option<Sp<String>>,
    /// Instances of `replicas` that may be unavailable during an update: a count or a
    /// percentage (default 25%, rounded down). Not 0 together with `max-surge: 0`.
    #[schemars(rename = "max-unavailable", with = "Option<AmountSchema>")]
    pub max_unavailable: Option<Sp<String>>,
    /// An update not healthy by then rolls back by itself (default 10m).
    #[schemars(with = "Option<DurationText>")]
    pub deadline: Option<Sp<String>>,
}

impl RawUpdate {
    /// The keys of `update`.
    pub const KEYS: &[&str] = &["max-surge", "max-unavailable", "deadline"];
}

/// The JSON Schema of service files (draft 7).
pub fn json_schema() -> serde_json::Value {
    let mut generator = schemars::generate::SchemaSettings::draft07().into_generator();
    let mut schema = generator.root_schema_for::<RawServiceFile>().to_value();
    if let Some(obj) = schema.as_object_mut() {
        obj.insert("required".into(), serde_json::json!(["kind", "name"]));
    }
    schema
}

/// The kind a file's top-level `kind:` declares, where it is, or why it is not one.
/// `None`: no `kind` (or the top level is not a mapping).
pub(crate) fn declared_kind(root: &Node) -> Option<(Pos, Result<Kind, String>)> {
    let NodeKind::Map(entries) = &root.kind else { return None };
    let (_, value) = entries.iter().find(|(k, _)| k.scalar() == Some("kind"))?;
    let found = match value.scalar().filter(|_| !value.is_null()) {
        Some("workflow") => Ok(Kind::Workflow),
        Some("service") => Ok(Kind::Service),
        Some("metric") => Ok(Kind::Metric),
        other => {
            let hint = other
                .and_then(|s| suggest(s, Kind::NAMES))
                .map(|s| format!(" (did you mean '{s}'?)"))
                .unwrap_or_default();
            Err(format!(
                "kind: expected workflow, service or metric, found {}{hint}",
                value.describe()
            ))
        }
    };
    Some((value.pos(), found))
}

/// What a workflow compile says of a `kind: service` file.
pub(crate) const SERVICE_IN_WORKFLOW: &str = "this is a service file (kind: service): apply it \
                                              with kiln service apply; workflows are run with \
                                              kiln run or stored as pipelines";

/// Compiles one service file.
pub(crate) fn compile(file: &str, text: &str) -> CompiledService {
    let mut diags = Vec::new();
    let spec = spec(file, text, &mut diags);
    diags.sort_by_key(|d| (d.line, d.column));
    let failed = diags.iter().any(|d| d.severity == Severity::Error);
    CompiledService { spec: if failed { None } else { spec }, diagnostics: diags }
}

fn spec(file: &str, text: &str, diags: &mut Vec<Diagnostic>) -> Option<ServiceSpec> {
    let (root, problems) = yaml::parse(text);
    let had_problems = !problems.is_empty();
    let error = |diags: &mut Vec<Diagnostic>, pos: Pos, message: String| {
        diags.push(Diagnostic {
            severity: Severity::Error,
            file: file.to_owned(),
            line: pos.line,
            column: pos.column,
            message,
        });
    };
    for p in problems {
        error(diags, p.pos, p.message);
    }
    let Some(root) = root else {
        if !had_problems {
            error(
                diags,
                Pos { line: 1, column: 1 },
                "the file is empty: expected a service with kind: service and name".into(),
            );
        }
        return None;
    };
    if matches!(root.kind, NodeKind::Map(_)) {
        match declared_kind(&root) {
            Some((_, Ok(Kind::Service))) => {}
            Some((pos, Ok(Kind::Metric))) => {
                error(diags, pos, crate::metric_file::METRIC_ELSEWHERE.into());
                return None;
            }
            Some((pos, Ok(Kind::Workflow))) => {
                error(
                    diags,
                    pos,
                    "this is a workflow file (kind: workflow): run it with kiln run or store it \
                     as a pipeline; a service file has kind: service"
                        .into(),
                );
                return None;
            }
            Some((pos, Err(message))) => {
                error(diags, pos, message);
                return None;
            }
            None => {
                error(
                    diags,
                    root.pos(),
                    "this is not a service file: it has no 'kind: service' (a file without \
                     kind is a workflow; run it with kiln run)"
                        .into(),
                );
                return None;
            }
        }
    }
    let raw = Reader::new(file, diags).service(&root)?;
    Some(Checker::new(file, diags).service(&raw))
}

impl Reader<'_> {
    /// Reads a service file's tree. `None` when the top level is not a mapping.
    fn service(&mut self, root: &Node) -> Option<RawServiceFile> {
        self.service_body(root, "the service file", RawServiceFile::KEYS, true)
    }

    /// Reads the `service` of a service pool: a service file's keys but `kind` and `name`.
    pub(crate) fn pool_service(&mut self, node: &Node, what: &str) -> Option<Sp<RawServiceFile>> {
        let raw = self.service_body(node, what, POOL_SERVICE_KEYS, true)?;
        Some(Sp::new(raw, node.origin))
    }

    /// Reads the `service` of a deploy job: a service file's keys but `kind` and `image`
    /// (the deploy's `image` is what runs).
    pub(crate) fn deploy_service(&mut self, node: &Node, what: &str) -> Option<Sp<RawServiceFile>> {
        let without_image;
        let body = match &node.kind {
            NodeKind::Map(entries) if entries.iter().any(|(k, _)| k.scalar() == Some("image")) => {
                for (k, _) in entries.iter().filter(|(k, _)| k.scalar() == Some("image")) {
                    self.error(
                        k.pos(),
                        format!(
                            "{what}: the image is the deploy's own `image` (what a build job \
                             made): remove it here"
                        ),
                    );
                }
                let entries =
                    entries.iter().filter(|(k, _)| k.scalar() != Some("image")).cloned().collect();
                without_image = Node { origin: node.origin, kind: NodeKind::Map(entries) };
                &without_image
            }
            _ => node,
        };
        let keys = crate::server_job::DEPLOY_SERVICE_KEYS;
        let raw = self.service_body(body, what, keys, false)?;
        Some(Sp::new(raw, node.origin))
    }

    /// Reads a service's mapping with `keys` (a `name` is required when `keys` has one);
    /// with `needs_run`, an image or a command is required.
    fn service_body(
        &mut self,
        root: &Node,
        what: &str,
        keys: &[&str],
        needs_run: bool,
    ) -> Option<RawServiceFile> {
        let f = self.fields(root, what, keys)?;
        let name = match f.get("name") {
            Some(n) => self.text(n, "name"),
            None if keys.contains(&"name") => {
                self.error(f.pos(), "the service has no 'name': add name: <lowercase-name>");
                None
            }
            None => None,
        };
        let image = f.get("image").and_then(|n| self.text(n, "image"));
        let command = f.get("command").and_then(|n| self.text_list(n, "command"));
        let args = f.get("args").and_then(|n| self.text_list(n, "args"));
        if needs_run && f.get("image").is_none() && f.get("command").is_none() {
            self.error(
                f.pos(),
                "the service has nothing to run: add image (a container image), or command (run \
                 on the process executor)",
            );
        }
        let health = f.get("health").and_then(|n| self.health(n));
        let restart = f.get("restart").and_then(|n| self.restart(n));
        let update = f.get("update").and_then(|n| self.update(n));
        let environment = f.get("environment").and_then(|n| self.text(n, "environment"));
        let config = f.get("config").and_then(|n| self.service_config(n));
        Some(RawServiceFile {
            kind: f.get("kind").and_then(|n| self.text(n, "kind")),
            name,
            image,
            command,
            args,
            env: f.get("env").and_then(|n| self.text_map(n, "env")),
            resources: f.get("resources").and_then(|n| self.resources(n)),
            replicas: f.get("replicas").and_then(|n| self.text(n, "replicas")),
            constraints: f.get("constraints").and_then(|n| self.constraints(n)),
            ports: f.get("ports").and_then(|n| self.ports(n)),
            labels: f.get("labels").and_then(|n| self.text_map(n, "labels")),
            health,
            restart,
            update,
            environment,
            config,
        })
    }

    fn service_config(&mut self, node: &Node) -> Option<Sp<RawServiceConfig>> {
        let f = self.fields(node, "config", RawServiceConfig::KEYS)?;
        let app = f.get("app").and_then(|n| self.text(n, "config app"));
        let path = f.get("path").and_then(|n| self.text(n, "config path"));
        let on_change = f.get("on-change").and_then(|n| self.text(n, "config on-change"));
        let signal = f.get("signal").and_then(|n| self.text(n, "config signal"));
        Some(Sp::new(RawServiceConfig { app, path, on_change, signal }, node.origin))
    }

    fn health(&mut self, node: &Node) -> Option<Sp<RawHealth>> {
        let f = self.fields(node, "health", RawHealth::KEYS)?;
        // `tcp:` with no value names no port: keep it (as empty text) so the checker says so.
        let tcp = f.present("tcp").and_then(|n| {
            if n.is_null() {
                Some(Sp::new(String::new(), n.origin))
            } else {
                self.text(n, "health tcp")
            }
        });
        let http = f.present("http").and_then(|n| {
            if n.is_null() {
                return Some(Sp::new(RawHttpProbe { port: None, path: None }, n.origin));
            }
            let h = self.fields(n, "health http", RawHttpProbe::KEYS)?;
            let port = h.get("port").and_then(|p| self.text(p, "health http port"));
            let path = h.get("path").and_then(|p| self.text(p, "health http path"));
            Some(Sp::new(RawHttpProbe { port, path }, n.origin))
        });
        let command = f.get("command").and_then(|n| self.text_list(n, "health command"));
        let written: Vec<(&str, Pos)> = ["tcp", "http", "command"]
            .into_iter()
            .filter_map(|k| f.present(k).map(|n| (k, n.pos())))
            .collect();
        if written.is_empty() {
            self.error(
                f.pos(),
                "health has no probe: add one of tcp: <port>, http: { port, path } or command: [...]",
            );
        } else if let Some((_, at)) = written.get(1) {
            let names: Vec<&str> = written.iter().map(|(k, _)| *k).collect();
            self.error(*at, format!("health has {}: a check has one probe", names.join(" and ")));
        }
        let duration =
            |r: &mut Self, key: &str| f.get(key).and_then(|n| r.text(n, &format!("health {key}")));
        let grace = duration(self, "grace");
        let interval = duration(self, "interval");
        let timeout = duration(self, "timeout");
        let failures = f.get("failures").and_then(|n| self.count(n, "health failures"));
        Some(Sp::new(
            RawHealth { tcp, http, command, grace, interval, timeout, failures },
            node.origin,
        ))
    }

    fn restart(&mut self, node: &Node) -> Option<Sp<RawRestart>> {
        let f = self.fields(node, "restart", RawRestart::KEYS)?;
        let policy = f.get("policy").and_then(|n| {
            self.one_of(
                n,
                "restart policy",
                Restart::NAMES,
                &[Restart::Always, Restart::OnFailure, Restart::Never],
            )
        });
        let backoff = f.get("backoff").and_then(|n| {
            let b = self.fields(n, "restart backoff", RawBackoff::KEYS)?;
            let initial = b.get("initial").and_then(|v| self.text(v, "restart backoff initial"));
            let max = b.get("max").and_then(|v| self.text(v, "restart backoff max"));
            Some(Sp::new(RawBackoff { initial, max }, n.origin))
        });
        Some(Sp::new(RawRestart { policy, backoff }, node.origin))
    }

    fn update(&mut self, node: &Node) -> Option<Sp<RawUpdate>> {
        let f = self.fields(node, "update", RawUpdate::KEYS)?;
        let max_surge = f.get("max-surge").and_then(|n| self.text(n, "update max-surge"));
        let max_unavailable =
            f.get("max-unavailable").and_then(|n| self.text(n, "update max-unavailable"));
        let deadline = f.get("deadline").and_then(|n| self.text(n, "update deadline"));
        Some(Sp::new(RawUpdate { max_surge, max_unavailable, deadline }, node.origin))
    }
}

/// A name as the store takes it (an environment's, a config application's): 1 to 64
/// letters, digits, `.`, `_` and `-`, starting with a letter or digit.
pub(crate) fn is_store_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// `[a-z0-9-]`, 1 to 63, a letter or digit at both ends: a service name (a DNS label, as a
/// Kubernetes object name).
pub(crate) fn is_service_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Kubernetes' label name (and non-empty value): 1 to 63 of `[A-Za-z0-9-_.]`, a letter or
/// digit at both ends.
fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// A DNS-1123 subdomain (a label key's prefix): at most 253, dot-separated lowercase labels.
fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// Kubernetes' label key: `[prefix/]name`.
fn is_label_key(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_label_name(name),
        None => is_label_name(s),
    }
}

impl Checker<'_> {
    /// Checks a read service file (or a pool's service, without a name); always returns its
    /// best spec.
    pub(crate) fn service(&mut self, raw: &RawServiceFile) -> ServiceSpec {
        let name = raw.name.as_ref().map(|n| {
            if !is_service_name(&n.value) {
                self.error(
                    n.at.pos,
                    format!(
                        "name: expected 1 to 63 lowercase letters, digits and -, not at either \
                         end, found '{}'",
                        n.value
                    ),
                );
            }
            n.value.clone()
        });
        for item in raw.image.iter().chain(raw.command.iter().flat_map(|c| &c.value)) {
            self.literal(item);
        }
        for item in raw.args.iter().flat_map(|a| &a.value) {
            self.literal(item);
        }
        if let Some(c) = &raw.command
            && c.value.is_empty()
        {
            self.error(c.at.pos, "command is empty: name the program to run");
        }
        let run = ServiceRun {
            command: raw
                .command
                .as_ref()
                .map(|c| c.value.iter().map(|s| s.value.clone()).collect()),
            args: raw
                .args
                .as_ref()
                .map(|a| a.value.iter().map(|s| s.value.clone()).collect())
                .unwrap_or_default(),
        };
        let mut env = BTreeMap::new();
        for (key, value) in raw.env.iter().flat_map(|e| &e.0) {
            if !is_env_name(&key.value) {
                self.error(
                    key.at.pos,
                    format!(
                        "env name '{}': expected letters, digits and _, not starting with a digit",
                        key.value
                    ),
                );
            }
            self.literal(value);
            env.insert(key.value.clone(), value.value.clone());
        }
        let resources = raw.resources.as_ref().map(|r| self.resources(r)).unwrap_or_default();
        let replicas = raw.replicas.as_ref().map_or(1, |r| self.replicas(r));
        let mut scheduling = Scheduling {
            constraints: raw.constraints.as_ref().map(|c| self.constraints(c)).unwrap_or_default(),
            ..Scheduling::default()
        };
        if let Some(ports) = &raw.ports {
            scheduling.ports = self.service_ports(ports, scheduling.network());
        }
        let labels = raw.labels.as_ref().map(|l| self.labels(l)).unwrap_or_default();
        let health = raw.health.as_ref().and_then(|h| self.health(h, &scheduling.ports));
        let restart = raw.restart.as_ref().map(|r| self.restart(r)).unwrap_or_default();
        let update = raw.update.as_ref().map(|u| self.update(u)).unwrap_or_default();
        let environment = raw.environment.as_ref().map(|e| {
            self.literal(e);
            if !is_store_name(&e.value) {
                self.error(
                    e.at.pos,
                    format!(
                        "environment: expected an environment's name (letters, digits, ., _ \
                         and -, starting with a letter or digit), found '{}'",
                        e.value
                    ),
                );
            }
            e.value.clone()
        });
        let config = raw.config.as_ref().map(|c| self.service_config(c));
        ServiceSpec {
            name: name.unwrap_or_default(),
            image: raw.image.as_ref().map(|i| i.value.clone()),
            run,
            env,
            resources,
            replicas,
            scheduling,
            labels,
            health,
            restart,
            update,
            environment,
            config,
        }
    }

    fn service_config(&mut self, c: &Sp<RawServiceConfig>) -> ServiceConfig {
        let raw = &c.value;
        for t in [&raw.app, &raw.path, &raw.on_change, &raw.signal].into_iter().flatten() {
            self.literal(t);
        }
        if let Some(app) = &raw.app
            && !is_store_name(&app.value)
        {
            self.error(
                app.at.pos,
                format!(
                    "config app: expected an application's name (letters, digits, ., _ and -, \
                     starting with a letter or digit), found '{}'",
                    app.value
                ),
            );
        }
        let path = match &raw.path {
            Some(p) => {
                let v = p.value.trim_end_matches('/');
                if !v.starts_with('/') || v.split('/').any(|s| s == "..") || v.is_empty() {
                    self.error(
                        p.at.pos,
                        format!(
                            "config path: expected an absolute directory in the container, \
                             without `..`, found '{}'",
                            p.value
                        ),
                    );
                }
                v.to_string()
            }
            None => ServiceConfig::DEFAULT_PATH.to_string(),
        };
        let signal = raw.signal.as_ref().map(|s| {
            let name = s.value.trim().trim_start_matches("SIG").to_ascii_uppercase();
            if !OnChange::SIGNALS.contains(&name.as_str()) {
                self.error(
                    s.at.pos,
                    format!(
                        "config signal: expected one of {}, found '{}'",
                        OnChange::SIGNALS.join(", "),
                        s.value
                    ),
                );
            }
            name
        });
        let on_change = match raw.on_change.as_ref().map(|o| (o, o.value.trim())) {
            None | Some((_, "restart")) => OnChange::Restart,
            Some((_, "signal")) => OnChange::Signal(signal.clone().unwrap_or_else(|| "HUP".into())),
            Some((_, "none")) => OnChange::None,
            Some((o, other)) => {
                self.error(
                    o.at.pos,
                    format!(
                        "config on-change: expected one of restart, signal, none, found '{other}'"
                    ),
                );
                OnChange::Restart
            }
        };
        if let (Some(s), false) = (&raw.signal, matches!(on_change, OnChange::Signal(_))) {
            self.error(
                s.at.pos,
                "config signal: only with on-change: signal (a restart or none sends no signal)",
            );
        }
        ServiceConfig { app: raw.app.as_ref().map(|a| a.value.clone()), path, on_change }
    }

    /// Service files hold literal values: an expression is an error.
    fn literal(&mut self, text: &Sp<String>) {
        if let Some(at) = text.value.find("${{") {
            self.error(
                text.at.locate(&text.value, at),
                "${{ }} expressions are not evaluated in service files: write the value itself",
            );
        }
    }

    fn replicas(&mut self, r: &Sp<String>) -> u32 {
        let t = r.value.trim();
        // Digits too many for u64 are still a number, just out of range.
        let n = (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse::<u64>().unwrap_or(u64::MAX));
        match n {
            Some(n) if (1..=u64::from(MAX_REPLICAS)).contains(&n) => n as u32,
            Some(_) => {
                self.error(r.at.pos, format!("replicas: expected 1 to {MAX_REPLICAS}, found {t}"));
                1
            }
            None => {
                self.error(
                    r.at.pos,
                    format!(
                        "replicas: expected a whole number from 1 to {MAX_REPLICAS}, found '{}'",
                        r.value
                    ),
                );
                1
            }
        }
    }

    /// Ports as a job's, and a name written twice said plainly (with the first's line).
    fn service_ports(
        &mut self,
        ports: &Sp<Vec<RawPort>>,
        network: kiln_scheduler::Network,
    ) -> Vec<PortSpec> {
        let mut seen: BTreeMap<&str, Pos> = BTreeMap::new();
        let mut distinct = Vec::new();
        for p in &ports.value {
            if let Some(first) = seen.get(p.name.value.as_str()) {
                self.error(
                    p.name.at.pos,
                    format!(
                        "port name '{}' is used twice (first at line {}): port names are unique \
                         in a service",
                        p.name.value, first.line
                    ),
                );
            } else {
                seen.insert(&p.name.value, p.name.at.pos);
                distinct.push(p.clone());
            }
        }
        self.ports(&Sp::new(distinct, ports.at), network)
    }

    fn labels(&mut self, raw: &Entries<Sp<String>>) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (key, value) in &raw.0 {
            if !is_label_key(&key.value) {
                self.error(
                    key.at.pos,
                    format!(
                        "label key '{}': expected a name of 1 to 63 letters, digits, '-', '_' or \
                         '.' starting and ending with a letter or digit, optionally after a DNS \
                         prefix and '/' (Kubernetes' label syntax)",
                        key.value
                    ),
                );
            }
            if !value.value.is_empty() && !is_label_name(&value.value) {
                self.error(
                    value.at.pos,
                    format!(
                        "label '{}': value '{}' is not a label value: expected empty, or 1 to 63 \
                         letters, digits, '-', '_' or '.' starting and ending with a letter or \
                         digit (Kubernetes' label syntax)",
                        key.value, value.value
                    ),
                );
            }
            out.insert(key.value.clone(), value.value.clone());
        }
        out
    }

    /// A port a probe names: one of the service's.
    fn probe_port(&mut self, port: &Sp<String>, what: &str, ports: &[PortSpec]) -> bool {
        let names: Vec<&str> = ports.iter().map(|p| p.name.as_str()).collect();
        if names.is_empty() {
            self.error(
                port.at.pos,
                format!(
                    "{what}: the service declares no ports to check; add ports: [{{ name: \
                     <name>, container: <port> }}] and name one here"
                ),
            );
            return false;
        }
        let listed = names.join(", ");
        if port.value.trim().is_empty() {
            self.error(
                port.at.pos,
                format!("{what}: name the port to check, one of the service's ports ({listed})"),
            );
            return false;
        }
        if names.contains(&port.value.as_str()) {
            return true;
        }
        let hint = suggest(&port.value, &names)
            .map(|s| format!(" (did you mean '{s}'?)"))
            .unwrap_or_default();
        self.error(
            port.at.pos,
            format!("{what}: the service has no port '{}'{hint}; its ports: {listed}", port.value),
        );
        false
    }

    fn health(&mut self, h: &Sp<RawHealth>, ports: &[PortSpec]) -> Option<HealthCheck> {
        let raw = &h.value;
        let probe = if let Some(tcp) = &raw.tcp {
            self.probe_port(tcp, "health tcp", ports)
                .then(|| Probe::Tcp { port: tcp.value.clone() })
        } else if let Some(http) = &raw.http {
            let port = match &http.value.port {
                Some(p) => self.probe_port(p, "health http port", ports).then(|| p.value.clone()),
                None => {
                    self.probe_port(&Sp::new(String::new(), http.at), "health http port", ports);
                    None
                }
            };
            let path = match &http.value.path {
                Some(p) if !p.value.starts_with('/') => {
                    self.error(
                        p.at.pos,
                        format!(
                            "health http path: expected a path starting with /, found '{}'",
                            p.value
                        ),
                    );
                    None
                }
                Some(p) => {
                    self.literal(p);
                    Some(p.value.clone())
                }
                None => Some("/".to_owned()),
            };
            port.zip(path).map(|(port, path)| Probe::Http { port, path })
        } else if let Some(command) = &raw.command {
            if command.value.is_empty() {
                self.error(command.at.pos, "health command is empty: name the program to run");
            }
            for c in &command.value {
                self.literal(c);
            }
            Some(Probe::Command(command.value.iter().map(|c| c.value.clone()).collect()))
        } else {
            None // reported by the reader
        };
        let grace = match &raw.grace {
            Some(g) => self.duration_or_zero(g, "health grace"),
            None => Some(Duration::ZERO),
        };
        let interval =
            self.duration_or(&raw.interval, "health interval", HealthCheck::DEFAULT_INTERVAL);
        let timeout =
            self.duration_or(&raw.timeout, "health timeout", HealthCheck::DEFAULT_TIMEOUT);
        let failures = match &raw.failures {
            Some(f) if f.value == 0 => {
                self.error(
                    f.at.pos,
                    "health failures: expected at least 1 (consecutive failures that make an \
                     instance unhealthy)",
                );
                None
            }
            Some(f) => Some(f.value),
            None => Some(HealthCheck::DEFAULT_FAILURES),
        };
        if let (Some(i), Some(t), Some(at)) = (interval, timeout, raw.timeout.as_ref())
            && t > i
        {
            self.warning(
                at.at.pos,
                format!(
                    "health timeout ({}) is longer than interval ({}): checks will overlap",
                    humantime::format_duration(t),
                    humantime::format_duration(i)
                ),
            );
        }
        Some(HealthCheck {
            probe: probe?,
            grace: grace?,
            interval: interval?,
            timeout: timeout?,
            failures: failures?,
        })
    }

    /// A duration if written (more than zero), else `default`; `None` after an error.
    fn duration_or(
        &mut self,
        text: &Option<Sp<String>>,
        what: &str,
        default: Duration,
    ) -> Option<Duration> {
        match text {
            Some(t) => self.duration(t, what),
            None => Some(default),
        }
    }

    /// A duration that may be zero (`0s`).
    fn duration_or_zero(&mut self, text: &Sp<String>, what: &str) -> Option<Duration> {
        match humantime::parse_duration(text.value.trim()) {
            Ok(d) if d.is_zero() => Some(d),
            _ => self.duration(text, what),
        }
    }

    fn restart(&mut self, r: &Sp<RawRestart>) -> RestartPolicy {
        let d = RestartPolicy::default();
        let policy = r.value.policy.as_ref().map_or(d.policy, |p| p.value);
        let backoff = r.value.backoff.as_ref();
        let initial = backoff.and_then(|b| b.value.initial.as_ref());
        let max = backoff.and_then(|b| b.value.max.as_ref());
        let initial_backoff = initial
            .map_or(Some(d.initial_backoff), |t| self.duration(t, "restart backoff initial"));
        let max_backoff =
            max.map_or(Some(d.max_backoff), |t| self.duration(t, "restart backoff max"));
        if let (Some(i), Some(m)) = (initial_backoff, max_backoff)
            && i > m
        {
            let at = max.or(initial).map_or(r.at.pos, |t| t.at.pos);
            self.error(
                at,
                format!(
                    "restart backoff: initial ({}) is longer than max ({}){}",
                    humantime::format_duration(i),
                    humantime::format_duration(m),
                    if max.is_none() { ", the default max" } else { "" }
                ),
            );
        }
        RestartPolicy {
            policy,
            initial_backoff: initial_backoff.unwrap_or(d.initial_backoff),
            max_backoff: max_backoff.unwrap_or(d.max_backoff),
        }
    }

    fn update(&mut self, u: &Sp<RawUpdate>) -> UpdatePolicy {
        let d = UpdatePolicy::default();
        let amount = |c: &mut Self, text: &Option<Sp<String>>, what: &str, default: Amount| {
            let Some(t) = text else { return Some(default) };
            t.value.parse::<Amount>().map_err(|e| c.error(t.at.pos, format!("{what}: {e}"))).ok()
        };
        let surge = amount(self, &u.value.max_surge, "update max-surge", d.max_surge);
        let unavailable =
            amount(self, &u.value.max_unavailable, "update max-unavailable", d.max_unavailable);
        if let (Some(s), Some(un)) = (surge, unavailable)
            && s.is_zero()
            && un.is_zero()
        {
            let at = u
                .value
                .max_unavailable
                .as_ref()
                .or(u.value.max_surge.as_ref())
                .map_or(u.at.pos, |t| t.at.pos);
            self.error(
                at,
                "update: max-surge and max-unavailable are both 0: an update could neither start \
                 a new instance before stopping an old one nor stop one first, so it could never \
                 make progress (Kubernetes refuses this too); allow a surge or some unavailability",
            );
        }
        let deadline = self.duration_or(&u.value.deadline, "update deadline", d.deadline);
        UpdatePolicy {
            max_surge: surge.unwrap_or(d.max_surge),
            max_unavailable: unavailable.unwrap_or(d.max_unavailable),
            deadline: deadline.unwrap_or(d.deadline),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["distccd", "a", "web-2", "0x"] {
            assert!(is_service_name(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "Web", "a_b", "a.b", &"x".repeat(64)] {
            assert!(!is_service_name(bad), "{bad}");
        }
    }

    #[test]
    fn label_syntax() {
        for ok in ["app", "team", "example.com/tier", "a.b-c_d", "k8s.io/x", "A1"] {
            assert!(is_label_key(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "Example.com/x", "/x", "a/", "a b", "a/b/c", &"x".repeat(64)] {
            assert!(!is_label_key(bad), "{bad}");
        }
        assert!(is_label_name("v1.2_3-x") && !is_label_name("v1 ") && !is_label_name("_x"));
    }

    #[test]
    fn keys_match_schema() {
        let schema = json_schema();
        let props = |node: &serde_json::Value| {
            let mut keys: Vec<String> = node["properties"]
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            keys.sort();
            keys
        };
        let sorted = |keys: &[&str]| {
            let mut v: Vec<String> = keys.iter().map(|s| s.to_string()).collect();
            v.sort();
            v
        };
        let def = |name: &str| &schema["definitions"][name];
        assert_eq!(props(&schema), sorted(RawServiceFile::KEYS));
        let mut pool = sorted(RawServiceFile::KEYS);
        pool.retain(|k| k != "kind" && k != "name");
        assert_eq!(sorted(POOL_SERVICE_KEYS), pool);
        assert_eq!(props(def("RawHealth")), sorted(RawHealth::KEYS));
        assert_eq!(props(def("RawHttpProbe")), sorted(RawHttpProbe::KEYS));
        assert_eq!(props(def("RawRestart")), sorted(RawRestart::KEYS));
        assert_eq!(props(def("RawBackoff")), sorted(RawBackoff::KEYS));
        assert_eq!(props(def("RawUpdate")), sorted(RawUpdate::KEYS));
        assert_eq!(props(def("RawServiceConfig")), sorted(RawServiceConfig::KEYS));
        assert_eq!(props(def("RawResources")), sorted(RawResources::KEYS));
        assert_eq!(props(def("RawPort")), sorted(RawPort::KEYS));
    }

    #[test]
    fn kinds() {
        let kind = |text: &str| {
            let (root, _) = yaml::parse(text);
            root.and_then(|r| declared_kind(&r)).map(|(p, k)| (p.line, p.column, k))
        };
        assert_eq!(kind("kind: service\n"), Some((1, 7, Ok(Kind::Service))));
        assert_eq!(kind("name: x\nkind: workflow\n"), Some((2, 7, Ok(Kind::Workflow))));
        assert_eq!(kind("name: x\n"), None);
        assert_eq!(kind("[a]\n"), None);
        let Some((_, _, Err(e))) = kind("kind: servce\n") else { panic!("no error") };
        assert_eq!(
            e,
            "kind: expected workflow, service or metric, found 'servce' (did you mean 'service'?)"
        );
        let Some((_, _, Err(e))) = kind("kind:\n") else { panic!("no error") };
        assert!(e.contains("nothing (null)"), "{e}");
    }
}
