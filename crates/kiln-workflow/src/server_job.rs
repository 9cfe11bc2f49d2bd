//! Jobs the server carries out itself instead of an agent: `trigger:` (start other pipelines,
//! GitLab's downstream and multi-project pipelines) and `deploy:` (a service to a project
//! environment). Their raw forms as written (with the JSON Schema), reading them with the
//! workflow's [`Reader`], checking them with its [`Checker`], and the checked forms a plan
//! carries ([`TriggerSpec`] and [`DeploySpec`], in `RunSpec::Trigger` and `RunSpec::Deploy`).
//!
//! Invariants (after `compile`): a trigger has at least one target, each naming a pipeline
//! (and maybe a project) by a valid name, with param names that are env names and values
//! that may hold templates; a deploy has a checked service with a name, an environment and an
//! image (both may be templates). A job with either says nothing an agent would use (image,
//! script, env, caches...): the reader refuses those keys beside them.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use crate::check::{Checker, RefScope, is_env_name};
use crate::raw::{DurationText, Entries, ScalarText, Sp};
use crate::read::Reader;
use crate::service::ServiceSpec;
use crate::service_file::{RawServiceFile, is_store_name};
use crate::yaml::{Kind, Node};

/// What a trigger job does: start these pipelines, as one group when written as a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerSpec {
    /// The runs to start, in the order written.
    pub targets: Vec<TriggerTarget>,
    /// Written as a list: the runs are one group (one group id, shown together).
    pub group: bool,
}

/// One pipeline a trigger job starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerTarget {
    /// Its project; `None`: the triggering run's.
    pub project: Option<String>,
    /// The pipeline's name in its project.
    pub pipeline: String,
    /// Param values (templates until the job starts).
    pub params: BTreeMap<String, String>,
    /// The job waits for the run to end and takes its outcome; `false`: it succeeds once the
    /// run is created.
    pub wait: bool,
}

/// What a deploy job does: deploy `service` with `image` to `environment`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploySpec {
    /// The service as a service file says it (its `image` is `image`).
    pub service: ServiceSpec,
    /// The environment (a template until the job starts).
    pub environment: String,
    /// The image, in Kiln's registry (a template until the job starts).
    pub image: String,
    /// Longest wait for the new version to be healthy (default: the service's update
    /// deadline).
    pub timeout: Option<Duration>,
}

/// `trigger:` as written: one target, or a list (a group).
#[derive(Debug, Clone, PartialEq)]
pub struct RawTrigger {
    /// Written as a list.
    pub list: bool,
    /// The targets, in the order written.
    pub targets: Vec<Sp<RawTriggerTarget>>,
}

/// One target of `trigger:` as written.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawTriggerTarget {
    /// The pipeline to start: its name in its project.
    #[schemars(with = "String")]
    pub pipeline: Option<Sp<String>>,
    /// Its project (default: this run's). The run's author must be allowed to start it.
    #[schemars(with = "Option<String>")]
    pub project: Option<Sp<String>>,
    /// Values of its params; may use `${{ }}`, such as `${{ jobs.build.outputs.image }}`.
    #[schemars(with = "Option<BTreeMap<String, ScalarText>>")]
    pub params: Option<Entries<Sp<String>>>,
    /// Wait for the run to end and take its outcome and outputs (default `true`); `false`:
    /// the job succeeds once the run is created.
    pub wait: Option<Sp<bool>>,
}

impl RawTriggerTarget {
    /// The keys of a trigger target.
    pub const KEYS: &[&str] = &["pipeline", "project", "params", "wait"];
}

/// Schema of `trigger:`: one target, or a list started as one group.
#[derive(JsonSchema)]
#[schemars(untagged)]
pub enum TriggerSchema {
    /// One pipeline.
    One(RawTriggerTarget),
    /// Several, started as one group; the job waits for all of them.
    Group(Vec<RawTriggerTarget>),
}

/// `deploy:` as written.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawDeploy {
    /// The service: what a `kind: service` file says (with its `name`), without `kind` and
    /// `image` (the image is `deploy.image`).
    #[schemars(with = "DeployServiceSchema")]
    pub service: Option<Sp<RawServiceFile>>,
    /// The project environment to deploy to; may use `${{ }}`.
    #[schemars(with = "String")]
    pub environment: Option<Sp<String>>,
    /// The image, in Kiln's registry: usually a build job's output, such as
    /// `${{ jobs.build.outputs.image }}`.
    #[schemars(with = "String")]
    pub image: Option<Sp<String>>,
    /// Longest wait for the new version to be healthy before it rolls back (default: the
    /// service's `update.deadline`).
    #[schemars(with = "Option<DurationText>")]
    pub timeout: Option<Sp<String>>,
}

impl RawDeploy {
    /// The keys of `deploy`.
    pub const KEYS: &[&str] = &["service", "environment", "image", "timeout"];
}

/// The keys of a deploy's `service`: a service file's but `kind` and `image`.
pub(crate) const DEPLOY_SERVICE_KEYS: &[&str] = &[
    "name",
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

/// Schema of a deploy's `service`: a service file's, without `kind` and `image`.
pub struct DeployServiceSchema;

impl JsonSchema for DeployServiceSchema {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "DeployService".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut schema = RawServiceFile::json_schema(generator);
        if let Some(obj) = schema.as_object_mut() {
            obj.remove("title");
            obj.remove("anyOf");
            obj.insert(
                "description".into(),
                "The service: what a `kind: service` file says, without `kind` and `image`.".into(),
            );
            obj.insert("required".into(), serde_json::json!(["name"]));
            if let Some(props) = obj.get_mut("properties").and_then(|p| p.as_object_mut()) {
                props.remove("kind");
                props.remove("image");
            }
        }
        schema
    }
}

/// Keys of a job that mean nothing beside `trigger:` or `deploy:` (an agent's business).
pub(crate) const AGENT_KEYS: &[&str] = &[
    "image",
    "script",
    "command",
    "args",
    "env",
    "workdir",
    "resources",
    "services",
    "cache",
    "artifacts",
    "constraints",
    "ports",
    "network",
    "priority",
    "placement",
    "checkout",
    "allow-untrusted-inline",
    "service-pools",
    "array",
    "parallelism",
];

impl Reader<'_> {
    /// `trigger:`: one target or a list of them.
    pub(crate) fn trigger(&mut self, node: &Node) -> Option<Sp<RawTrigger>> {
        let (items, list): (Vec<&Node>, bool) = match &node.kind {
            Kind::Seq(items) => (items.iter().collect(), true),
            _ => (vec![node], false),
        };
        if list && items.is_empty() {
            self.error(
                node.pos(),
                "trigger: an empty list starts nothing; name at least one { pipeline: <name> }",
            );
            return None;
        }
        let targets = items
            .into_iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let what = if list { format!("trigger {}", i + 1) } else { "trigger".into() };
                self.trigger_target(item, &what)
            })
            .collect();
        Some(Sp::new(RawTrigger { list, targets }, node.origin))
    }

    fn trigger_target(&mut self, node: &Node, what: &str) -> Option<Sp<RawTriggerTarget>> {
        let f = self.fields(node, what, RawTriggerTarget::KEYS)?;
        let pipeline = f.get("pipeline").and_then(|n| self.text(n, &format!("{what} pipeline")));
        if f.get("pipeline").is_none() {
            self.error(
                f.pos(),
                format!("{what} has no 'pipeline': add pipeline: <name of the pipeline to start>"),
            );
        }
        let project = f.get("project").and_then(|n| self.text(n, &format!("{what} project")));
        let params = f.get("params").and_then(|n| self.text_map(n, &format!("{what} params")));
        let wait = f.get("wait").and_then(|n| self.bool(n, &format!("{what} wait")));
        Some(Sp::new(RawTriggerTarget { pipeline, project, params, wait }, node.origin))
    }

    /// `deploy: { service, environment, image, timeout }`.
    pub(crate) fn deploy(&mut self, node: &Node) -> Option<Sp<RawDeploy>> {
        let f = self.fields(node, "deploy", RawDeploy::KEYS)?;
        let service = f.get("service").and_then(|n| self.deploy_service(n, "deploy service"));
        let environment = f.get("environment").and_then(|n| self.text(n, "deploy environment"));
        let image = f.get("image").and_then(|n| self.text(n, "deploy image"));
        let timeout = f.get("timeout").and_then(|n| self.text(n, "deploy timeout"));
        for (key, hint) in [
            ("service", "service: { name: <lowercase-name>, replicas: N, ports: [...] }"),
            ("environment", "environment: <name of a project environment>"),
            ("image", "image: ${{ jobs.<build job>.outputs.<image output> }}"),
        ] {
            if f.get(key).is_none() {
                self.error(f.pos(), format!("deploy has no '{key}': add {hint}"));
            }
        }
        Some(Sp::new(RawDeploy { service, environment, image, timeout }, node.origin))
    }
}

impl Checker<'_> {
    /// Checks `trigger:`: names, param names, templates of param values (read where the job
    /// stands).
    pub(crate) fn trigger(&mut self, raw: &Sp<RawTrigger>, scope: &RefScope<'_>) -> TriggerSpec {
        let mut targets = Vec::new();
        for t in &raw.value.targets {
            let Some(pipeline) = &t.value.pipeline else { continue };
            self.server_name(pipeline, "trigger pipeline", "a pipeline");
            if let Some(project) = &t.value.project {
                self.server_name(project, "trigger project", "a project");
            }
            let mut params = BTreeMap::new();
            for (key, value) in t.value.params.iter().flat_map(|p| &p.0) {
                if !is_env_name(&key.value) {
                    self.error(
                        key.at.pos,
                        format!(
                            "trigger param '{}': expected a param name (letters, digits and _, \
                             not starting with a digit)",
                            key.value
                        ),
                    );
                }
                self.template(value, scope, false);
                params.insert(key.value.clone(), value.value.clone());
            }
            targets.push(TriggerTarget {
                project: t.value.project.as_ref().map(|p| p.value.clone()),
                pipeline: pipeline.value.clone(),
                params,
                wait: t.value.wait.as_ref().is_none_or(|w| w.value),
            });
        }
        TriggerSpec { targets, group: raw.value.list }
    }

    /// A pipeline or project name of a trigger: literal, and valid as the store takes it.
    fn server_name(&mut self, name: &Sp<String>, what: &str, kind: &str) {
        if let Some(at) = name.value.find("${{") {
            self.error(
                name.at.locate(&name.value, at),
                format!("{what}: names {kind}; ${{{{ }}}} expressions are not evaluated here"),
            );
        } else if what == "trigger pipeline" && name.value.contains('/') {
            let (project, pipeline) = name.value.split_once('/').unwrap_or_default();
            self.error(
                name.at.pos,
                format!(
                    "trigger pipeline '{}': name the pipeline alone and its project apart: \
                     pipeline: {pipeline}, project: {project}",
                    name.value
                ),
            );
        } else if !is_store_name(&name.value) {
            self.error(
                name.at.pos,
                format!(
                    "{what}: expected the name of {kind} (1 to 64 letters, digits, ., _ and -, \
                     starting with a letter or digit), found '{}'",
                    name.value
                ),
            );
        }
    }

    /// Checks `deploy:`: the service as a service file's (positions in the workflow), the
    /// environment (a name, or a template), the image template and the timeout.
    pub(crate) fn deploy(
        &mut self,
        raw: &Sp<RawDeploy>,
        scope: &RefScope<'_>,
    ) -> Option<DeploySpec> {
        let d = &raw.value;
        let service = d.service.as_ref().map(|s| self.service(&s.value));
        if let Some(image) = &d.image {
            if image.value.trim().is_empty() {
                self.error(image.at.pos, "deploy image: must not be empty");
            }
            self.template(image, scope, false);
        }
        if let Some(env) = &d.environment {
            self.environment_name(env, scope, "deploy environment");
        }
        let timeout = d.timeout.as_ref().and_then(|t| self.duration(t, "deploy timeout"));
        // The service may say its environment only when it is the deploy's.
        if let (Some(env), Some(svc)) = (&d.environment, &d.service)
            && let Some(own) = &svc.value.environment
            && own.value != env.value
        {
            self.error(
                own.at.pos,
                format!(
                    "deploy service environment '{}': the deploy goes to '{}' \
                     (deploy.environment); remove it here",
                    own.value, env.value
                ),
            );
        }
        Some(DeploySpec {
            service: service?,
            environment: d.environment.as_ref()?.value.clone(),
            image: d.image.as_ref()?.value.clone(),
            timeout,
        })
    }

    /// An environment's name as a job names it: a name the store takes, or a template
    /// (checked here, its result checked by the server when the job starts).
    pub(crate) fn environment_name(&mut self, env: &Sp<String>, scope: &RefScope<'_>, what: &str) {
        if env.value.contains("${{") {
            self.template(env, scope, false);
        } else if !is_store_name(&env.value) {
            self.error(
                env.at.pos,
                format!(
                    "{what}: expected an environment's name (letters, digits, ., _ and -, \
                     starting with a letter or digit), found '{}'",
                    env.value
                ),
            );
        }
    }
}
