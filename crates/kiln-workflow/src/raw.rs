//! The workflow file as written (`RawWorkflow` and its parts): what `read` fills from the
//! YAML tree, with the position of every value, and what the JSON Schema is derived from.
//!
//! Invariant: each struct's `KEYS` lists exactly the keys `read` accepts, and equals the
//! struct's schema properties (a test checks it), so editor completion and the compiler agree.
//! Doc comments on fields become the schema's descriptions.

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

use crate::yaml::Origin;

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Sp<T> {
    /// The value.
    pub value: T,
    /// Where it was written (for text, precise enough to locate offsets inside it).
    pub at: Origin,
}

impl<T> Sp<T> {
    /// Pairs a value with its origin.
    pub fn new(value: T, at: Origin) -> Self {
        Sp { value, at }
    }
}

impl<T: JsonSchema> JsonSchema for Sp<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

/// A mapping as written: entries in file order, keys with their positions.
#[derive(Debug, Clone, PartialEq)]
pub struct Entries<T>(pub Vec<(Sp<String>, T)>);

impl<T> Default for Entries<T> {
    fn default() -> Self {
        Entries(Vec::new())
    }
}

impl<T: JsonSchema> JsonSchema for Entries<T> {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        format!("Map_of_{}", T::schema_name()).into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        <BTreeMap<String, T>>::json_schema(generator)
    }
}

/// Schema of a scalar that is read as text: YAML may write it as a number or boolean.
pub struct ScalarText;

impl JsonSchema for ScalarText {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "ScalarText".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": ["string", "number", "boolean"] })
    }
}

/// Schema of one text or a list of texts (`script`, `needs`).
pub struct TextOrList;

impl JsonSchema for TextOrList {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "TextOrList".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                { "type": "string" },
                { "type": "array", "items": { "type": ["string", "number", "boolean"] } }
            ]
        })
    }
}

/// Schema of a list of texts (`command`, `args`, choice `options`).
pub struct TextList;

impl JsonSchema for TextList {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "TextList".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "array", "items": { "type": ["string", "number", "boolean"] } })
    }
}

/// Schema of an env mapping.
pub struct EnvMap;

impl JsonSchema for EnvMap {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "EnvMap".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "propertyNames": { "pattern": "^[A-Za-z_][A-Za-z0-9_]*$" },
            "additionalProperties": {
                "description": "Text (numbers and booleans are read as written; null is empty).",
                "type": ["string", "number", "boolean", "null"]
            }
        })
    }
}

/// Schema of a duration such as `30s`, `10m` or `1h30m`.
pub struct DurationText;

impl JsonSchema for DurationText {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A duration such as 30s, 10m, 1h30m or 2h 15m.",
            "pattern": "^\\s*([0-9]+\\s*[a-zA-Z]+\\s*)+$"
        })
    }
}

/// The whole file. Either `stages` (a workflow) or `uses` (run a template) must be present.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(
    title = "Kiln workflow (spec v1)",
    deny_unknown_fields,
    extend("oneOf" = [{ "required": ["stages"] }, { "required": ["uses"] }])
)]
pub struct RawWorkflow {
    /// The workflow's name.
    pub name: Sp<String>,
    /// Limit for the whole run, such as `30s`, `10m` or `1h30m`.
    #[schemars(with = "Option<DurationText>")]
    pub timeout: Option<Sp<String>>,
    /// At most this many runs of this workflow run at once (at least 1); further runs wait,
    /// pending, in the order they were started. Or per group: `{ group, limit,
    /// cancel-in-progress }`.
    #[schemars(with = "Option<ConcurrencySchema>")]
    pub concurrency: Option<Sp<u32>>,
    /// The group form of `concurrency` (its `limit` is `concurrency`).
    #[schemars(skip)]
    pub concurrency_group: Option<Sp<crate::git::RawConcurrencyGroup>>,
    /// Typed parameters, by name. Read them as `${{ params.NAME }}`; jobs also get them as
    /// env variables.
    pub params: Option<Entries<RawParam>>,
    /// Env for every job. Values may use `${{ params.NAME }}`.
    #[schemars(with = "Option<EnvMap>")]
    pub env: Option<Entries<Sp<String>>>,
    /// Stages, run one after another. Not allowed with `uses`.
    pub stages: Option<Sp<Vec<RawStage>>>,
    /// Run a template workflow instead: its path, relative to this file.
    pub uses: Option<Sp<String>>,
    /// Values for the template's params (only with `uses`).
    #[schemars(with = "Option<BTreeMap<String, ScalarText>>")]
    pub with: Option<Entries<Sp<String>>>,
    /// What starts runs: `image` pushes to Kiln's registry, `push` and `pull_request` on the
    /// `source` repository, `schedule`s, and whether the API may (`api`, default true).
    pub on: Option<Sp<RawOn>>,
    /// The git repository the workflow builds (checked out into every job's workspace).
    #[schemars(with = "Option<crate::git::SourceSchema>")]
    pub source: Option<Sp<crate::git::RawSource>>,
    /// Services started for the run, by pool name (`[a-z0-9-]`): every job waits until
    /// `ready` of a pool's instances are healthy, then gets its `export` env. Stopped and
    /// deleted when the run ends.
    #[schemars(rename = "service-pools", with = "Option<BTreeMap<String, RawPool>>")]
    pub service_pools: Option<Entries<Sp<RawPool>>>,
    /// Images to pull onto the nodes that can run this workflow's jobs when a run starts
    /// (`kiln nodes prepull` for each), so its jobs find them there.
    #[schemars(with = "Option<Vec<String>>")]
    pub prepull: Option<Sp<Vec<Sp<String>>>>,
}

impl RawWorkflow {
    /// The keys of a workflow file, besides `kind` (read before the file is; see
    /// `read::Reader::workflow`).
    pub const KEYS: &[&str] = &[
        "name",
        "timeout",
        "concurrency",
        "params",
        "env",
        "stages",
        "uses",
        "with",
        "on",
        "source",
        "service-pools",
        "prepull",
    ];
}

/// A service pool as written (`service-pools: { <name>: ... }`).
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawPool {
    /// The service: the keys of a `kind: service` file but `kind` and `name` (see
    /// docs/services.md), checked the same way.
    #[schemars(with = "PoolServiceSchema")]
    pub service: Option<Sp<crate::service_file::RawServiceFile>>,
    /// Healthy instances needed before the jobs that use the pool start: 1 to `replicas`
    /// (default: `replicas`).
    #[schemars(with = "Option<u32>")]
    pub ready: Option<Sp<u32>>,
    /// A job that waited this long for them fails (default 5m).
    #[schemars(with = "Option<DurationText>")]
    pub timeout: Option<Sp<String>>,
    /// Env of the jobs that use the pool: minijinja templates over `instances` (each with
    /// `id`, `slot`, `node`, `ip`, `ports.<name>`, `labels`) and `service`, rendered when a
    /// job is dispatched from the instances healthy then, trimmed.
    #[schemars(with = "Option<EnvMap>")]
    pub export: Option<Entries<Sp<String>>>,
}

impl RawPool {
    /// The keys of a pool.
    pub const KEYS: &[&str] = &["service", "ready", "timeout", "export"];
}

/// Schema of a pool's `service`: a service file's, without `kind` and `name`.
pub struct PoolServiceSchema;

impl JsonSchema for PoolServiceSchema {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "PoolService".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut schema = crate::service_file::RawServiceFile::json_schema(generator);
        if let Some(obj) = schema.as_object_mut() {
            obj.remove("title");
            obj.insert(
                "description".into(),
                "The service: what a `kind: service` file says, without `kind` and `name`.".into(),
            );
            if let Some(props) = obj.get_mut("properties").and_then(|p| p.as_object_mut()) {
                props.remove("kind");
                props.remove("name");
            }
        }
        schema
    }
}

/// The triggers of a workflow (`on:`).
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawOn {
    /// Image pushes to Kiln's registry that start a run: one `{ repository, tags }` or a list.
    #[schemars(with = "Option<ImageTriggerSchema>")]
    pub image: Option<Sp<Vec<Sp<RawImageTrigger>>>>,
    /// Cron schedules that start a run: one `{ cron, timezone, params, missed }` or a list.
    #[schemars(with = "Option<ScheduleSchema>")]
    pub schedule: Option<Sp<Vec<Sp<RawSchedule>>>>,
    /// Whether runs may also be started by hand: the API, `kiln trigger`, the web UI
    /// (default true). `false`: only the other triggers start runs.
    pub api: Option<Sp<bool>>,
    // Git triggers (see `git.rs`).
    /// Pushes to the `source` repository (`push:` alone: every push).
    pub push: Option<Sp<crate::git::RawPushTrigger>>,
    /// Pull/merge requests on the `source` repository (`pull_request:` alone: opened,
    /// synchronize, reopened into any branch).
    pub pull_request: Option<Sp<crate::git::RawPullRequestTrigger>>,
    /// Same as `pull_request` (GitLab's name); not both.
    pub merge_request: Option<Sp<crate::git::RawPullRequestTrigger>>,
}

impl RawOn {
    /// The keys of `on`.
    pub const KEYS: &[&str] =
        &["image", "push", "pull_request", "merge_request", "schedule", "api"];
}

/// One schedule (`on.schedule`).
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawSchedule {
    /// Cron expression: 5 fields (minute hour day-of-month month day-of-week), or 6 with
    /// seconds first; `@daily`-style aliases.
    #[schemars(with = "String")]
    pub cron: Option<Sp<String>>,
    /// IANA time zone the expression is read in, such as `Asia/Shanghai` (default `UTC`).
    #[schemars(with = "Option<String>")]
    pub timezone: Option<Sp<String>>,
    /// Values of the workflow's params for the runs this schedule starts.
    #[schemars(with = "Option<BTreeMap<String, ScalarText>>")]
    pub params: Option<Entries<Sp<String>>>,
    /// Fires missed while the server was down: `skip` (default) starts none, `run-once` starts
    /// one run for all of them when the server is back.
    pub missed: Option<Sp<MissedText>>,
}

impl RawSchedule {
    /// The keys of a schedule.
    pub const KEYS: &[&str] = &["cron", "timezone", "params", "missed"];
}

/// A missed-schedule policy, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[schemars(rename_all = "kebab-case")]
pub enum MissedText {
    /// Start nothing for missed fires.
    Skip,
    /// Start one run for all missed fires.
    RunOnce,
}

/// Schema of `on.schedule`: one schedule or a list.
#[derive(JsonSchema)]
#[expect(dead_code, reason = "describes the schema only; the reader builds `RawSchedule`s")]
#[schemars(untagged)]
pub enum ScheduleSchema {
    /// One schedule.
    One(RawSchedule),
    /// Several.
    Many(Vec<RawSchedule>),
}

/// One image trigger.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawImageTrigger {
    /// Repository, a glob: `app` (in the pipeline's project), `team/app`, `team/*`.
    #[schemars(with = "String")]
    pub repository: Option<Sp<String>>,
    /// Tag globs that start a run (default: every tag); a push by digest alone starts none.
    #[schemars(with = "Option<Vec<String>>")]
    pub tags: Option<Sp<Vec<Sp<String>>>>,
}

impl RawImageTrigger {
    /// The keys of an image trigger.
    pub const KEYS: &[&str] = &["repository", "tags"];
}

/// Schema of `on.image`: one trigger or a list.
#[derive(JsonSchema)]
#[expect(dead_code, reason = "describes the schema only; the reader builds `RawImageTrigger`s")]
#[schemars(untagged)]
pub enum ImageTriggerSchema {
    /// One trigger.
    One(RawImageTrigger),
    /// Several.
    Many(Vec<RawImageTrigger>),
}

/// The type of a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[schemars(rename_all = "lowercase")]
pub enum ParamType {
    /// Any text.
    String,
    /// A number.
    Number,
    /// `true` or `false`.
    Bool,
    /// One of `options`.
    Choice,
}

impl ParamType {
    /// The names of the types, as written.
    pub const NAMES: &[&str] = &["string", "number", "bool", "choice"];
}

/// A parameter declaration.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawParam {
    /// `string` (the default), `number`, `bool` or `choice`.
    #[schemars(rename = "type")]
    pub kind: Option<Sp<ParamType>>,
    /// The value when none is given; checked against the type.
    #[schemars(with = "Option<ScalarText>")]
    pub default: Option<Sp<String>>,
    /// The allowed values of a `choice`.
    #[schemars(with = "Option<TextList>")]
    pub options: Option<Sp<Vec<Sp<String>>>>,
    /// A value must be given when there is no default (default `false`).
    pub required: Option<Sp<bool>>,
    /// Help text, shown when asking for a value.
    pub description: Option<Sp<String>>,
}

impl RawParam {
    /// The keys of a parameter.
    pub const KEYS: &[&str] = &["type", "default", "options", "required", "description"];
}

/// What a stage does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[schemars(rename_all = "lowercase")]
pub enum StageType {
    /// Runs jobs (the default).
    Jobs,
    /// Pauses the run until someone approves it.
    Approval,
}

/// A stage.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawStage {
    /// The stage's name, unique in the workflow.
    pub name: Sp<String>,
    /// `jobs` (the default) or `approval`.
    #[schemars(rename = "type")]
    pub kind: Option<Sp<StageType>>,
    /// Shown to the approver (approval stages only).
    pub description: Option<Sp<String>>,
    /// The stage's jobs by id (`[A-Za-z0-9_-]+`, unique in the workflow); they run in
    /// parallel. Not allowed in an approval stage.
    pub jobs: Option<Entries<RawJob>>,
}

impl RawStage {
    /// The keys of a stage.
    pub const KEYS: &[&str] = &["name", "type", "description", "jobs"];
}

/// A job.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawJob {
    /// Container image (optional for the process executor).
    pub image: Option<Sp<String>>,
    /// Shell lines run as one `sh -e` script: a list, or one text with one line per line.
    /// Not with `command`/`args`.
    #[schemars(with = "Option<TextOrList>")]
    pub script: Option<Sp<Vec<Sp<String>>>>,
    /// Replaces the image's entrypoint (component style). Not with `script`.
    #[schemars(with = "Option<TextList>")]
    pub command: Option<Sp<Vec<Sp<String>>>>,
    /// Arguments for the entrypoint or `command`. Not with `script`.
    #[schemars(with = "Option<TextList>")]
    pub args: Option<Sp<Vec<Sp<String>>>>,
    /// Env of this job; wins over the global env.
    #[schemars(with = "Option<EnvMap>")]
    pub env: Option<Entries<Sp<String>>>,
    /// Working directory inside the container (default: the workspace).
    pub workdir: Option<Sp<String>>,
    /// Limit for each attempt, such as `5m`.
    #[schemars(with = "Option<DurationText>")]
    pub timeout: Option<Sp<String>>,
    /// Extra attempts after a failure: a count, or `{ max, on }`.
    #[schemars(with = "Option<RetrySchema>")]
    pub retry: Option<Sp<RawRetry>>,
    /// Container limits.
    pub resources: Option<Sp<RawResources>>,
    /// Jobs of this or earlier stages this one waits for (no cycles). Without it: every job
    /// of the nearest earlier stage that has jobs. `[]` waits for none.
    #[schemars(with = "Option<TextOrList>")]
    pub needs: Option<Sp<Vec<Sp<String>>>>,
    /// Run condition, with or without `${{ }}` (default `success()`).
    #[schemars(rename = "if", with = "Option<ScalarText>")]
    pub condition: Option<Sp<String>>,
    /// Run one instance per combination of values.
    pub matrix: Option<Sp<RawMatrix>>,
    /// Run the job this many times (1 to 1,000,000), each index with `KILN_ARRAY_INDEX` set
    /// (0 to N-1), like Slurm job arrays and AWS Batch array jobs: one job whose indexes are
    /// kept as ranges, not N jobs. Not with `matrix`.
    #[schemars(with = "Option<u32>")]
    pub array: Option<Sp<u32>>,
    /// With `array`: at most this many of its indexes run at once (Slurm's `%N`).
    #[schemars(with = "Option<u32>")]
    pub parallelism: Option<Sp<u32>>,
    /// Sidecar containers reachable by their `name`.
    pub services: Option<Sp<Vec<RawService>>>,
    /// Files kept between runs under a key (GitLab `cache`).
    pub cache: Option<Sp<RawCache>>,
    /// Files saved when the job ends and placed into the workspace of the jobs that need it
    /// (GitLab `artifacts`).
    pub artifacts: Option<Sp<RawArtifacts>>,
    /// Which machines of the server's pool may run the job: every item must hold. An item is
    /// one test, `[attribute, OPERATOR, value]` (Marathon's form) or `{attribute, operator,
    /// value}`, or an OR of tests, `{any: [test, ...]}`; or BCS's object, `{intersectionItem:
    /// [{unionData: [...]}], nodeSelector}`. See docs/scheduling.md.
    #[schemars(with = "Option<ConstraintsSchema>")]
    pub constraints: Option<Sp<Vec<Sp<Vec<RawTerm>>>>>,
    /// Named host ports: `{name, host, container}`; host `0` (the default) takes a free
    /// port of the machine's range, exported to the job as `KILN_PORT_<NAME>`.
    pub ports: Option<Sp<Vec<RawPort>>>,
    /// `bridge` (the default) or `host` (the job uses the machine's network; its ports are
    /// the host ports).
    pub network: Option<Sp<NetworkText>>,
    /// Higher runs first when the pool is short (a whole number, default 0).
    #[schemars(with = "Option<i32>")]
    pub priority: Option<Sp<String>>,
    /// `binpack` (the default: fill the fullest machine that fits) or `spread` (the
    /// emptiest).
    pub placement: Option<Sp<PlacementText>>,
    /// `false`: the workflow's `source` commit is not checked out into this job's workspace
    /// (default `true`).
    pub checkout: Option<Sp<bool>>,
    /// `true`: values from outside (params an image push fills) may be written inline as
    /// `${{ }}` in `script` (an error otherwise; use their env variables instead).
    #[schemars(rename = "allow-untrusted-inline", with = "Option<bool>")]
    pub allow_untrusted_inline: Option<Sp<bool>>,
    /// Services started for this job alone (as the workflow's `service-pools`): the job
    /// waits for them, gets their `export` env, and they are deleted when the job ends.
    #[schemars(rename = "service-pools", with = "Option<BTreeMap<String, RawPool>>")]
    pub service_pools: Option<Entries<Sp<RawPool>>>,
    /// Starts other pipelines on the server instead of running anything (GitLab's
    /// `trigger:`): `{ pipeline, project, params, wait }`, or a list of them started as one
    /// group. Only `needs`, `if`, `timeout`, `retry` and `matrix` go with it.
    #[schemars(with = "Option<crate::server_job::TriggerSchema>")]
    pub trigger: Option<Sp<crate::server_job::RawTrigger>>,
    /// Deploys a service to an environment on the server instead of running anything:
    /// `{ service, environment, image, timeout }`. Only `needs`, `if`, `timeout`, `retry`,
    /// `matrix` and `environment` go with it.
    pub deploy: Option<Sp<crate::server_job::RawDeploy>>,
    /// Builds an image from a Dockerfile of the workspace with buildah (no Docker socket, no
    /// privileged container) and pushes it to Kiln's registry (or another, logged in to with
    /// a secret): `{ context, dockerfile, tags, build-args, target, cache, push, credentials,
    /// insecure-registries }`. The job's outputs `digest` and `image` name what
    /// was pushed. Not with `image`, `script`, `command`, `args`, `services` or `workdir`.
    pub build: Option<Sp<crate::build::RawBuild>>,
    /// The project environment the job runs in (GitLab's `environment:`): it gets the
    /// environment's variables and secrets (masked in its log) and `KILN_ENVIRONMENT`. May use
    /// `${{ }}`. A deploy job runs in the environment it deploys to.
    #[schemars(with = "Option<String>")]
    pub environment: Option<Sp<String>>,
}

/// One constraint test as written (any of its forms).
#[derive(Debug, Clone, PartialEq)]
pub struct RawTerm {
    /// The node attribute.
    pub attribute: Sp<String>,
    /// The operator, as written.
    pub operator: Sp<String>,
    /// The value, if written.
    pub value: Option<Sp<String>>,
}

/// Schema of `constraints`.
pub struct ConstraintsSchema;

impl JsonSchema for ConstraintsSchema {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Constraints".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let scalar = json_schema!({ "type": ["string", "number", "boolean"] });
        let operator = json_schema!({
            "type": "string",
            "description": "LIKE, UNLIKE, UNIQUE, CLUSTER, GROUP_BY, MAX_PER, GREATER, LESS or EXISTS (any case; GROUPBY and MAXPER too)."
        });
        let term = json_schema!({
            "anyOf": [
                {
                    "type": "array",
                    "minItems": 2,
                    "maxItems": 3,
                    "items": [{ "type": "string" }, operator, scalar],
                    "description": "[attribute, OPERATOR] or [attribute, OPERATOR, value]"
                },
                {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["attribute", "operator"],
                    "properties": {
                        "attribute": { "type": "string" },
                        "operator": operator,
                        "value": scalar
                    }
                }
            ]
        });
        let union_data = json_schema!({
            "type": "object",
            "required": ["name", "operate"],
            "properties": {
                "name": { "type": "string" },
                "operate": { "type": "string" },
                "type": { "type": "integer", "description": "1 scalar, 3 text, 4 set." },
                "scalar": { "type": "object", "properties": { "value": { "type": "number" } } },
                "text": { "type": "object", "properties": { "value": { "type": "string" } } },
                "set": {
                    "type": "object",
                    "properties": { "item": { "type": "array", "items": { "type": "string" } } }
                }
            }
        });
        json_schema!({
            "anyOf": [
                {
                    "type": "array",
                    "items": {
                        "anyOf": [
                            term,
                            {
                                "type": "object",
                                "additionalProperties": false,
                                "required": ["any"],
                                "properties": {
                                    "any": { "type": "array", "minItems": 1, "items": term }
                                }
                            }
                        ]
                    }
                },
                {
                    "type": "object",
                    "description": "BCS's shape: an AND of `intersectionItem`s, each an OR of \
                                    `unionData` tests; `nodeSelector` entries are exact matches.",
                    "additionalProperties": false,
                    "properties": {
                        "intersectionItem": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["unionData"],
                                "properties": {
                                    "unionData": { "type": "array", "items": union_data }
                                }
                            }
                        },
                        "nodeSelector": {
                            "type": "object",
                            "additionalProperties": { "type": "string" }
                        }
                    }
                }
            ]
        })
    }
}

/// A named host port.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawPort {
    /// Name (letters, digits, `_`, `-`), exported as `KILN_PORT_<NAME>`.
    pub name: Sp<String>,
    /// The host port; `0` (the default) takes a free one from the machine's range.
    #[schemars(with = "Option<u16>")]
    pub host: Option<Sp<String>>,
    /// The port inside the container (needed with the bridge network; with `network:
    /// host` it is the host port).
    #[schemars(with = "Option<u16>")]
    pub container: Option<Sp<String>>,
}

impl RawPort {
    /// The keys of a port.
    pub const KEYS: &[&str] = &["name", "host", "container"];
}

/// A network mode, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[schemars(rename_all = "lowercase")]
pub enum NetworkText {
    /// Its own network, host ports mapped.
    Bridge,
    /// The machine's network.
    Host,
}

impl NetworkText {
    /// The names, as written.
    pub const NAMES: &[&str] = &["bridge", "host"];
}

/// A placement strategy, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[schemars(rename_all = "lowercase")]
pub enum PlacementText {
    /// Fill the fullest machine that fits.
    Binpack,
    /// Prefer the emptiest machine.
    Spread,
}

impl PlacementText {
    /// The names, as written.
    pub const NAMES: &[&str] = &["binpack", "spread"];
}

impl RawJob {
    /// The keys of a job.
    pub const KEYS: &[&str] = &[
        "image",
        "script",
        "command",
        "args",
        "env",
        "workdir",
        "timeout",
        "retry",
        "resources",
        "needs",
        "if",
        "matrix",
        "array",
        "parallelism",
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
        "trigger",
        "deploy",
        "build",
        "environment",
    ];
}

/// A retry policy.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawRetry {
    /// Extra attempts after the first.
    pub max: Option<Sp<u32>>,
    /// Which failures are retried (default: all three).
    pub on: Option<Sp<Vec<Sp<RetryOnText>>>>,
}

impl RawRetry {
    /// The keys of a retry policy.
    pub const KEYS: &[&str] = &["max", "on"];
}

/// A kind of failure, as written in `retry.on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[schemars(rename_all = "lowercase")]
pub enum RetryOnText {
    /// The job exited non-zero.
    Failure,
    /// The attempt hit its timeout.
    Timeout,
    /// The executor could not run it.
    Error,
}

/// Schema of `retry`: a count or a policy.
#[derive(JsonSchema)]
#[expect(dead_code, reason = "describes the schema only; the reader builds `RawRetry`")]
#[schemars(untagged)]
pub enum RetrySchema {
    /// Extra attempts, on any failure.
    Count(u32),
    /// Attempts and which failures count.
    Policy(RawRetry),
}

/// Container limits.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawResources {
    /// CPU cores: a number (`0.5`) or millicores (`500m`).
    #[schemars(with = "Option<CpuText>")]
    pub cpu: Option<Sp<String>>,
    /// Memory: bytes, or a number with Ki, Mi, Gi, Ti (powers of 1024) or K, M, G, T.
    #[schemars(with = "Option<MemoryText>")]
    pub memory: Option<Sp<String>>,
    /// Disk the job needs on the machine (scheduling only), written as memory is.
    #[schemars(with = "Option<MemoryText>")]
    pub disk: Option<Sp<String>>,
}

impl RawResources {
    /// The keys of `resources`.
    pub const KEYS: &[&str] = &["cpu", "memory", "disk"];
}

/// Schema of a CPU amount.
pub struct CpuText;

impl JsonSchema for CpuText {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Cpu".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                { "type": "number", "exclusiveMinimum": 0 },
                { "type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?m?$" }
            ]
        })
    }
}

/// Schema of a memory amount.
pub struct MemoryText;

impl JsonSchema for MemoryText {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Memory".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                { "type": "integer", "exclusiveMinimum": 0 },
                { "type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?([KMGT]i?)?$" }
            ]
        })
    }
}

/// Schema of `concurrency`: a count, or a group.
#[derive(JsonSchema)]
#[expect(dead_code, reason = "describes the schema only; the reader reads either form")]
#[schemars(untagged)]
pub enum ConcurrencySchema {
    /// At most this many runs at once.
    Count(ConcurrencyCount),
    /// Per group.
    Group(crate::git::RawConcurrencyGroup),
}

/// Schema of `concurrency`.
pub struct ConcurrencyCount;

impl JsonSchema for ConcurrencyCount {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Concurrency".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "integer", "minimum": 1 })
    }
}

/// Schema of a non-empty list of paths or globs relative to the workspace.
pub struct PathList;

impl JsonSchema for PathList {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "PathList".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "array",
            "minItems": 1,
            "items": {
                "description": "A path or glob relative to the workspace (no leading / or ~, \
                                no ..).",
                "type": ["string", "number", "boolean"]
            }
        })
    }
}

/// A job's cache.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawCache {
    /// The cache's name (default `default`); may use `${{ }}`.
    #[schemars(with = "Option<ScalarText>")]
    pub key: Option<Sp<String>>,
    /// Files whose contents are hashed into the key (GitLab `cache:key:files`).
    #[schemars(with = "Option<PathList>")]
    pub files: Option<Sp<Vec<Sp<String>>>>,
    /// Paths or globs to save and restore, relative to the workspace.
    #[schemars(with = "PathList")]
    pub paths: Option<Sp<Vec<Sp<String>>>>,
    /// `pull-push` (the default): restore and save; `pull`: restore only; `push`: save only.
    pub policy: Option<Sp<CachePolicyText>>,
}

impl RawCache {
    /// The keys of `cache`.
    pub const KEYS: &[&str] = &["key", "files", "paths", "policy"];
}

/// A cache policy, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[schemars(rename_all = "kebab-case")]
pub enum CachePolicyText {
    /// Restore before the job, save after it.
    PullPush,
    /// Restore only.
    Pull,
    /// Save only.
    Push,
}

impl CachePolicyText {
    /// The names of the policies, as written.
    pub const NAMES: &[&str] = &["pull-push", "pull", "push"];
}

/// A job's artifacts.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawArtifacts {
    /// Paths or globs to save, relative to the workspace.
    #[schemars(with = "PathList")]
    pub paths: Option<Sp<Vec<Sp<String>>>>,
    /// `on_success` (the default), `on_failure` or `always`.
    pub when: Option<Sp<ArtifactWhenText>>,
}

impl RawArtifacts {
    /// The keys of `artifacts`.
    pub const KEYS: &[&str] = &["paths", "when"];
}

/// When artifacts are saved, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[schemars(rename_all = "snake_case")]
pub enum ArtifactWhenText {
    /// Only when the job succeeded.
    OnSuccess,
    /// Only when it failed or timed out.
    OnFailure,
    /// Whatever the outcome.
    Always,
}

impl ArtifactWhenText {
    /// The names, as written.
    pub const NAMES: &[&str] = &["on_success", "on_failure", "always"];
}

/// A matrix: axes (name -> values), plus `include` and `exclude`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawMatrix {
    /// Axes in written order, each with its values.
    pub axes: Entries<Sp<Vec<Sp<String>>>>,
    /// Extra instances, each setting every axis.
    pub include: Vec<Sp<Entries<Sp<String>>>>,
    /// Removes the combinations that match every key given.
    pub exclude: Vec<Sp<Entries<Sp<String>>>>,
}

impl JsonSchema for RawMatrix {
    fn schema_name() -> Cow<'static, str> {
        "Matrix".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let combo = json_schema!({
            "type": "object",
            "additionalProperties": { "type": ["string", "number", "boolean"] }
        });
        json_schema!({
            "type": "object",
            "description": "Axes (name: list of values); every combination runs as its own job \
                            instance, named `id[v1,v2]` in axis order.",
            "properties": {
                "include": {
                    "description": "Extra instances; each sets every axis.",
                    "type": "array",
                    "items": combo.clone()
                },
                "exclude": {
                    "description": "Removes the combinations that match every key given.",
                    "type": "array",
                    "items": combo
                }
            },
            "additionalProperties": {
                "type": "array",
                "minItems": 1,
                "items": { "type": ["string", "number", "boolean"] }
            }
        })
    }
}

/// A sidecar container.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawService {
    /// Host name on the job's network (`[A-Za-z0-9-]+`), unique in the job.
    pub name: Sp<String>,
    /// Image.
    pub image: Sp<String>,
    /// Env.
    #[schemars(with = "Option<EnvMap>")]
    pub env: Option<Entries<Sp<String>>>,
    /// Replaces the image's command.
    #[schemars(with = "Option<TextList>")]
    pub command: Option<Sp<Vec<Sp<String>>>>,
}

impl RawService {
    /// The keys of a service.
    pub const KEYS: &[&str] = &["name", "image", "env", "command"];
}

/// The JSON Schema of workflow files (draft 7, which editors support best).
pub fn json_schema() -> serde_json::Value {
    let mut generator = schemars::generate::SchemaSettings::draft07().into_generator();
    let mut schema = generator.root_schema_for::<RawWorkflow>().to_value();
    // `kind` tells file kinds apart before any is read; it has no field of its own.
    if let Some(props) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) {
        props.insert(
            "kind".into(),
            serde_json::json!({
                "description": "`workflow` (the default when absent); a service file says `service`.",
                "const": "workflow"
            }),
        );
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The properties the schema declares for a definition (or the root).
    fn properties(schema: &serde_json::Value, def: Option<&str>) -> Vec<String> {
        let node = match def {
            None => schema,
            Some(d) => &schema["definitions"][d],
        };
        let mut keys: Vec<String> =
            node["properties"].as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
        keys.sort();
        keys
    }

    fn sorted(keys: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = keys.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn keys_match_schema() {
        let schema = json_schema();
        let mut top = properties(&schema, None);
        top.retain(|k| k != "kind");
        assert_eq!(top, sorted(RawWorkflow::KEYS));
        assert_eq!(properties(&schema, Some("RawParam")), sorted(RawParam::KEYS));
        assert_eq!(properties(&schema, Some("RawStage")), sorted(RawStage::KEYS));
        assert_eq!(properties(&schema, Some("RawJob")), sorted(RawJob::KEYS));
        assert_eq!(properties(&schema, Some("RawOn")), sorted(RawOn::KEYS));
        assert_eq!(properties(&schema, Some("RawImageTrigger")), sorted(RawImageTrigger::KEYS));
        assert_eq!(properties(&schema, Some("RawSchedule")), sorted(RawSchedule::KEYS));
        use crate::git::{RawPullRequestTrigger, RawPushTrigger, RawSource};
        assert_eq!(properties(&schema, Some("RawPushTrigger")), sorted(RawPushTrigger::KEYS));
        assert_eq!(
            properties(&schema, Some("RawPullRequestTrigger")),
            sorted(RawPullRequestTrigger::KEYS)
        );
        assert_eq!(properties(&schema, Some("RawSource")), sorted(RawSource::KEYS));
        assert_eq!(
            properties(&schema, Some("RawConcurrencyGroup")),
            sorted(crate::git::RawConcurrencyGroup::KEYS)
        );
        assert_eq!(properties(&schema, Some("RawRetry")), sorted(RawRetry::KEYS));
        assert_eq!(properties(&schema, Some("RawResources")), sorted(RawResources::KEYS));
        assert_eq!(properties(&schema, Some("RawService")), sorted(RawService::KEYS));
        assert_eq!(properties(&schema, Some("RawCache")), sorted(RawCache::KEYS));
        assert_eq!(properties(&schema, Some("RawArtifacts")), sorted(RawArtifacts::KEYS));
        assert_eq!(properties(&schema, Some("RawPort")), sorted(RawPort::KEYS));
        assert_eq!(properties(&schema, Some("RawPool")), sorted(RawPool::KEYS));
        use crate::server_job::{RawDeploy, RawTriggerTarget};
        assert_eq!(properties(&schema, Some("RawTriggerTarget")), sorted(RawTriggerTarget::KEYS));
        assert_eq!(properties(&schema, Some("RawDeploy")), sorted(RawDeploy::KEYS));
        let build = crate::build::RawBuild::KEYS;
        assert_eq!(properties(&schema, Some("RawBuild")), sorted(build));
        let deploy_service = &schema["definitions"]["RawDeploy"]["properties"]["service"];
        let mut keys: Vec<String> =
            deploy_service["properties"].as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, sorted(crate::server_job::DEPLOY_SERVICE_KEYS));
        let service = &schema["definitions"]["RawPool"]["properties"]["service"];
        let mut keys: Vec<String> =
            service["properties"].as_object().unwrap().keys().cloned().collect();
        keys.sort();
        let mut want = sorted(crate::service_file::RawServiceFile::KEYS);
        want.retain(|k| k != "kind" && k != "name");
        assert_eq!(keys, want);
    }
}
