//! [`RawWorkflow`] -> [`Plan`]: names, types and units, the job graph (`needs`, gates),
//! matrix expansion and the references of every `${{ }}` expression.
//!
//! The checker goes on after a problem and always returns its best plan; the caller keeps
//! it only when no error was reported. Invariants of the returned plan (when error-free) are
//! those documented in `plan.rs`: needs point to earlier jobs only (jobs of a stage are
//! ordered after those of the stage they need; a cycle of needs is an error), matrices are
//! expanded, gates are set.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::diag::{Diagnostic, Severity};
use crate::expr::{self, Reference};
use crate::git::{
    ConcurrencyGroup, PullRequestAction, PullRequestTrigger, PushTrigger, RawSource, Source,
};
use crate::params::param_value;
use crate::plan::{
    ArraySpec, ArtifactSpec, ArtifactWhen, CachePolicy, CacheSpec, ConstraintTerm, ImageTrigger,
    Job, JobId, MAX_ARRAY_SIZE, ParamKind, ParamSpec, Plan, PortSpec, Resources, RetryOn,
    RetryPolicy, RunSpec, ScheduleTrigger, Scheduling, Service, Stage, StageKind, Triggers,
    workspace_path_problem,
};
use crate::pool::Pool;
use crate::raw::{
    ArtifactWhenText, CachePolicyText, Entries, MissedText, NetworkText, ParamType, PlacementText,
    RawArtifacts, RawCache, RawJob, RawMatrix, RawOn, RawParam, RawPool, RawPort, RawResources,
    RawRetry, RawSchedule, RawStage, RawTerm, RawWorkflow, RetryOnText, Sp, StageType,
};
use crate::read::suggest;
use crate::service_file::is_service_name;
use crate::units;
use crate::yaml::Pos;

/// Most instances one matrix job may expand to.
pub const MAX_MATRIX_INSTANCES: usize = 256;

/// Most jobs in a workflow, matrix instances counted.
pub const MAX_JOBS: usize = 10_000;

/// Longest workflow name, stage name or job id, in characters.
pub const MAX_NAME_CHARS: usize = 128;

/// Largest script of a job, in bytes (its lines and their line breaks). A script is handed to
/// `sh -c` as one argument, and Linux refuses an argument over 128 KiB ("Argument list too
/// long"); the cap leaves room for what its templates add when the job starts.
pub const MAX_SCRIPT_BYTES: usize = 64 * 1024;

/// Checks one file, adding diagnostics to `diags`.
pub struct Checker<'d> {
    file: &'d str,
    diags: &'d mut Vec<Diagnostic>,
    /// What every job gets besides its own env: the names the workflow's pools export (with
    /// the pool and where), and the global env's names (with where).
    shared_env: SharedEnv,
    /// Params whose values come from outside: those an image push fills, when the workflow
    /// has `on.image` (`PUSH_PARAMS`).
    outside: Vec<String>,
}

/// The params an image push fills, when a workflow declares them (the server's image
/// trigger): their values come from whoever pushed.
pub const PUSH_PARAMS: &[&str] = &["image", "repository", "tag", "digest"];

/// The `KILN_*` variable holding a commit fact a git webhook gave (`source.<field>`).
fn source_variable(field: &str) -> Option<&'static str> {
    Some(match field {
        "branch" => "KILN_BRANCH",
        "tag" => "KILN_TAG",
        "ref" => "KILN_REF",
        "event" => "KILN_EVENT",
        "repository" => "KILN_REPOSITORY",
        "commit" | "sha" => "KILN_COMMIT_SHA",
        "message" => "KILN_COMMIT_MESSAGE",
        "author" => "KILN_COMMIT_AUTHOR",
        "pull_request" | "pull-request" => "KILN_PULL_REQUEST",
        "target_branch" | "target-branch" => "KILN_TARGET_BRANCH",
        _ => return None,
    })
}

/// Env names every job gets, for the checks of name clashes with pools' exports.
#[derive(Debug, Default)]
struct SharedEnv {
    /// Exported by the workflow's pools: name -> (pool, where).
    exports: BTreeMap<String, (String, Pos)>,
    /// Set by the workflow's `env`: name -> where.
    global: BTreeMap<String, Pos>,
    /// Where the workflow's `service-pools` is written, if it has any.
    run_pools: Option<Pos>,
}

/// A declared job before expansion.
struct Base<'r> {
    id: &'r Sp<String>,
    stage: usize,
    raw: &'r RawJob,
    /// Axis names and instance values (one `Vec` per instance, in axis order); `None` for a
    /// plain job.
    matrix: Option<(Vec<String>, Vec<Vec<String>>)>,
    /// Indexes (into the bases) of the jobs this one waits for, in order.
    needs: Vec<usize>,
}

/// What an expression may read where it stands.
pub(crate) struct RefScope<'a> {
    /// Declared params, in file order.
    params: &'a [String],
    job: Option<JobScope<'a>>,
}

struct JobScope<'a> {
    id: &'a str,
    /// This job's index in `graph`.
    at: usize,
    /// Axes of this job's matrix, if any.
    axes: Option<&'a [String]>,
    graph: &'a Graph<'a>,
}

/// The graph of declared (base) jobs.
struct Graph<'a> {
    /// Ids in file order.
    ids: Vec<&'a str>,
    index: HashMap<&'a str, usize>,
    /// Indexes each job needs.
    needs: Vec<Vec<usize>>,
    stage: Vec<usize>,
    matrix: Vec<bool>,
}

impl Graph<'_> {
    /// Whether job `from` needs job `to`, directly or not. Edges point to the same or earlier
    /// stages, so only jobs of `to`'s stage or later ones can lead to it.
    fn reaches(&self, from: usize, to: usize) -> bool {
        let mut seen = vec![false; self.needs.len()];
        let mut stack = vec![from];
        while let Some(n) = stack.pop() {
            for &m in self.needs.get(n).map_or(&[][..], Vec::as_slice) {
                if m == to {
                    return true;
                }
                if !seen[m] && self.stage[m] >= self.stage[to] {
                    seen[m] = true;
                    stack.push(m);
                }
            }
        }
        false
    }
}

/// The order of the jobs in the plan: stage by stage, and within a stage every job after
/// the jobs of its stage it needs, otherwise in file order. `bases` must be acyclic.
fn stage_topological_order(bases: &[Base<'_>], stages: usize) -> Vec<usize> {
    let mut order = Vec::with_capacity(bases.len());
    let mut placed = vec![false; bases.len()];
    for stage in 0..stages {
        let mine: Vec<usize> = (0..bases.len()).filter(|&i| bases[i].stage == stage).collect();
        // The first job in file order whose needs of this stage are all placed, each time.
        while let Some(&i) = mine.iter().find(|&&i| {
            !placed[i] && bases[i].needs.iter().all(|&m| placed[m] || bases[m].stage != stage)
        }) {
            placed[i] = true;
            order.push(i);
        }
    }
    order
}

/// `[A-Za-z_][A-Za-z0-9_]*`: env variable and param names.
pub(crate) fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `[A-Za-z0-9_-]+`: job ids and matrix axes.
fn is_job_id(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A DNS label: service names.
fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// `text` with every `${{ … }}` replaced by as many `x` bytes: checks of the literal text
/// (paths) neither look into templates nor lose their offsets.
pub(crate) fn mask_templates(text: &str) -> String {
    let mut out = text.as_bytes().to_vec();
    let mut from = 0;
    while let Some(start) = text[from..].find("${{").map(|i| i + from) {
        let end = text[start..].find("}}").map_or(text.len(), |i| start + i + 2);
        out[start..end].fill(b'x');
        from = end;
    }
    // Only whole ASCII-delimited spans were replaced, so this is still UTF-8.
    String::from_utf8(out).unwrap_or_else(|_| text.to_owned())
}

fn listing(items: &[&str]) -> String {
    if items.is_empty() { "none".into() } else { items.join(", ") }
}

impl<'d> Checker<'d> {
    /// A checker for `file` that adds its problems to `diags`.
    pub fn new(file: &'d str, diags: &'d mut Vec<Diagnostic>) -> Self {
        Checker { file, diags, shared_env: SharedEnv::default(), outside: Vec::new() }
    }

    fn report(&mut self, severity: Severity, pos: Pos, message: impl Into<String>) {
        self.diags.push(Diagnostic {
            severity,
            file: self.file.to_owned(),
            line: pos.line,
            column: pos.column,
            message: message.into(),
        });
    }

    pub(crate) fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.report(Severity::Error, pos, message);
    }

    pub(crate) fn warning(&mut self, pos: Pos, message: impl Into<String>) {
        self.report(Severity::Warning, pos, message);
    }

    /// An error if `name` is longer than [`MAX_NAME_CHARS`].
    fn name_length(&mut self, name: &str, pos: Pos, what: &str) {
        let chars = name.chars().count();
        if chars > MAX_NAME_CHARS {
            self.error(
                pos,
                format!("{what} is {chars} characters; at most {MAX_NAME_CHARS} are allowed"),
            );
        }
    }

    /// A warning, unless the same one was given (a matrix job's instances share lines).
    fn warning_once(&mut self, pos: Pos, message: String) {
        let (line, column) = (pos.line, pos.column);
        let same = |d: &Diagnostic| d.line == line && d.column == column && d.message == message;
        if !self.diags.iter().any(same) {
            self.warning(pos, message);
        }
    }

    /// A duration, or an error at its position.
    pub fn duration(&mut self, text: &Sp<String>, what: &str) -> Option<std::time::Duration> {
        units::duration(&text.value)
            .map_err(|e| self.error(text.at.pos, format!("{what}: {e}")))
            .ok()
    }

    /// `concurrency`, or an error at its position when it is 0.
    pub fn concurrency(&mut self, count: &Sp<u32>) -> Option<u32> {
        if count.value == 0 {
            self.error(
                count.at.pos,
                "concurrency: must be at least 1 (how many runs of this workflow may run at once)",
            );
            return None;
        }
        Some(count.value)
    }

    /// Checks a whole workflow (a file without `uses`).
    pub fn plan(&mut self, raw: &RawWorkflow) -> Plan {
        let timeout = raw.timeout.as_ref().and_then(|t| self.duration(t, "timeout"));
        let concurrency = raw.concurrency.as_ref().and_then(|c| self.concurrency(c));
        let params = raw.params.as_ref().map(|p| self.params(p)).unwrap_or_default();
        let env = raw.env.as_ref().map(|e| self.global_env(e, &params)).unwrap_or_default();
        let pools = match &raw.service_pools {
            Some(p) => {
                let mut exports = BTreeMap::new();
                let pools = self.pools(p, &mut exports);
                self.shared_env.exports = exports;
                self.shared_env.run_pools =
                    Some(p.0.first().map_or(Pos::default(), |(k, _)| k.at.pos));
                pools
            }
            None => Vec::new(),
        };
        for (key, _) in raw.env.iter().flat_map(|e| &e.0) {
            self.shared_env.global.insert(key.value.clone(), key.at.pos);
            self.exported_clash(&key.value, key.at.pos, "env");
        }
        if let Some((key, _)) = raw.with.as_ref().and_then(|w| w.0.first()) {
            self.error(key.at.pos, "'with' gives values to a template: it needs 'uses'");
        }
        let pushed = raw.on.as_ref().and_then(|on| on.value.image.as_ref());
        if pushed.is_some_and(|list| !list.value.is_empty()) {
            self.outside = params
                .iter()
                .filter(|p| PUSH_PARAMS.contains(&p.name.as_str()))
                .map(|p| p.name.clone())
                .collect();
        }
        let (stages, jobs) = match &raw.stages {
            Some(stages) => self.stages(stages, &params),
            None => (Vec::new(), Vec::new()),
        };
        if jobs.len() > MAX_JOBS {
            let at = raw.stages.as_ref().map_or(raw.name.at.pos, |s| s.at.pos);
            self.error(
                at,
                format!(
                    "the workflow has {} jobs (matrix instances counted); at most {MAX_JOBS} are \
                     allowed",
                    jobs.len()
                ),
            );
        }
        self.name_length(&raw.name.value, raw.name.at.pos, "workflow name");
        let triggers = raw.on.as_ref().map(|on| self.triggers(on, &params)).unwrap_or_default();
        let source = raw.source.as_ref().and_then(|s| self.source(s));
        let concurrency_group =
            raw.concurrency_group.as_ref().and_then(|g| self.concurrency_group(g, &params));
        self.git_triggers_need_source(&triggers, source.as_ref(), raw.on.as_ref());
        let prepull = raw.prepull.as_ref().map(|p| self.prepull(p)).unwrap_or_default();
        Plan {
            name: raw.name.value.clone(),
            params,
            env,
            stages,
            jobs,
            timeout,
            concurrency,
            triggers,
            source,
            concurrency_group,
            pools,
            prepull,
        }
    }

    /// `prepull:`: image references, non-empty, without blanks, each once.
    fn prepull(&mut self, images: &Sp<Vec<Sp<String>>>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for image in &images.value {
            let v = image.value.trim();
            if v.is_empty() || v.contains(char::is_whitespace) {
                self.error(
                    image.at.pos,
                    format!(
                        "prepull: '{}' is not an image reference (such as busybox:latest)",
                        image.value
                    ),
                );
            } else if out.iter().any(|o| o == v) {
                self.error(image.at.pos, format!("prepull: '{v}' is listed twice"));
            } else {
                out.push(v.to_string());
            }
        }
        out
    }

    /// Checks `service-pools` (of the workflow or of a job); the names they export go into
    /// `exports` (name -> pool and where), a name exported twice is an error.
    fn pools(
        &mut self,
        raw: &Entries<Sp<RawPool>>,
        exports: &mut BTreeMap<String, (String, Pos)>,
    ) -> Vec<Pool> {
        let mut out = Vec::new();
        for (name, p) in &raw.0 {
            let label = format!("service pool '{}'", name.value);
            if !is_service_name(&name.value) {
                self.error(
                    name.at.pos,
                    format!(
                        "{label}: expected a name of 1 to 63 lowercase letters, digits and -, not \
                         at either end (it names the pool's service)"
                    ),
                );
            }
            // A missing `service` was reported by the reader.
            let Some(service) = &p.value.service else { continue };
            let mut spec = self.service(&service.value);
            spec.name = name.value.clone();
            let ready = match &p.value.ready {
                Some(r) if r.value == 0 || r.value > spec.replicas => {
                    self.error(
                        r.at.pos,
                        format!(
                            "{label} ready: expected 1 to {} (the pool's replicas), found {}",
                            spec.replicas, r.value
                        ),
                    );
                    spec.replicas
                }
                Some(r) => r.value,
                None => spec.replicas,
            };
            let timeout = match &p.value.timeout {
                Some(t) => self.duration(t, &format!("{label} timeout")),
                None => Some(crate::pool::DEFAULT_TIMEOUT),
            };
            let mut export = BTreeMap::new();
            for (key, value) in p.value.export.iter().flat_map(|e| &e.0) {
                if !is_env_name(&key.value) {
                    self.error(
                        key.at.pos,
                        format!(
                            "{label} export '{}': expected an env name (letters, digits and _, \
                             not starting with a digit)",
                            key.value
                        ),
                    );
                } else if key.value.starts_with("KILN_") {
                    self.error(
                        key.at.pos,
                        format!(
                            "{label} export '{}': names starting with KILN_ are Kiln's own; pick \
                             another name",
                            key.value
                        ),
                    );
                } else if let Some((other, at)) = exports.get(&key.value) {
                    self.error(
                        key.at.pos,
                        format!(
                            "{label} export '{}' is also exported by service pool '{other}' \
                             (line {}): a job gets one value per name",
                            key.value, at.line
                        ),
                    );
                } else {
                    exports.insert(key.value.clone(), (name.value.clone(), key.at.pos));
                }
                if let Some(at) = value.value.find("${{") {
                    self.error(
                        value.at.locate(&value.value, at),
                        format!(
                            "{label} export '{}': ${{{{ }}}} expressions are not evaluated in \
                             exports; they are templates over the pool's instances, such as \
                             {{{{ instances[0].ip }}}}",
                            key.value
                        ),
                    );
                } else if let Err(e) =
                    crate::pool::check_export(&key.value, &value.value, &spec, ready)
                {
                    let at = e.offset.map_or(value.at.pos, |o| value.at.locate(&value.value, o));
                    self.error(
                        at,
                        format!("{label} export '{}': {} (templates over `instances` and `service`; see docs/services.md)", key.value, e.message),
                    );
                }
                export.insert(key.value.clone(), value.value.clone());
            }
            out.push(Pool {
                name: name.value.clone(),
                service: spec,
                ready,
                timeout: timeout.unwrap_or(crate::pool::DEFAULT_TIMEOUT),
                export,
            });
        }
        out
    }

    /// An error when `name`, set by `what` at `pos`, is also exported by a workflow pool.
    fn exported_clash(&mut self, name: &str, pos: Pos, what: &str) {
        if let Some((pool, at)) = self.shared_env.exports.get(name) {
            self.error(
                pos,
                format!(
                    "{what} '{name}' is also exported by service pool '{pool}' (line {}): set it \
                     in one place",
                    at.line
                ),
            );
        }
    }

    /// `on:`: every glob, cron expression, time zone and param value is checked against
    /// the workflow's `params`.
    pub fn triggers(&mut self, on: &Sp<RawOn>, params: &[ParamSpec]) -> Triggers {
        let mut out = Triggers {
            schedule: schedules(self, on.value.schedule.iter().flat_map(|l| &l.value), params),
            api: on.value.api.as_ref().is_none_or(|a| a.value),
            ..Triggers::default()
        };
        for t in on.value.image.iter().flat_map(|list| &list.value) {
            let Some(repo) = &t.value.repository else { continue };
            let mut ok = self.glob(repo, "image repository");
            if repo.value.trim().is_empty() {
                self.error(repo.at.pos, "image repository: must not be empty");
                ok = false;
            }
            let tags: Vec<String> = t
                .value
                .tags
                .iter()
                .flat_map(|l| &l.value)
                .filter(|tag| self.glob(tag, "image tag"))
                .map(|tag| tag.value.clone())
                .collect();
            if ok {
                out.image.push(ImageTrigger { repository: repo.value.clone(), tags });
            }
        }
        self.git_triggers(on, &mut out);
        out
    }

    // Git triggers and `source` (see `git.rs`).

    /// Checks a list of globs, keeping the valid ones.
    fn globs(&mut self, list: Option<&Sp<Vec<Sp<String>>>>, what: &str) -> Option<Vec<String>> {
        let list = list?;
        Some(list.value.iter().filter(|g| self.glob(g, what)).map(|g| g.value.clone()).collect())
    }

    fn git_triggers(&mut self, on: &Sp<RawOn>, out: &mut Triggers) {
        if let Some(push) = &on.value.push {
            let p = &push.value;
            out.push = Some(PushTrigger {
                branches: self.globs(p.branches.as_ref(), "on.push branch"),
                tags: self.globs(p.tags.as_ref(), "on.push tag"),
                paths: self.globs(p.paths.as_ref(), "on.push path").unwrap_or_default(),
                paths_ignore: self
                    .globs(p.paths_ignore.as_ref(), "on.push paths-ignore")
                    .unwrap_or_default(),
            });
        }
        let pr = on.value.pull_request.as_ref().or(on.value.merge_request.as_ref());
        if let Some(pr) = pr {
            let branches = self
                .globs(pr.value.branches.as_ref(), "on.pull_request branch")
                .unwrap_or_default();
            let mut types = Vec::new();
            for t in pr.value.types.iter().flat_map(|l| &l.value) {
                match PullRequestAction::from_name(&t.value) {
                    Some(a) if !types.contains(&a) => types.push(a),
                    Some(_) => {}
                    None => {
                        let hint = suggest(&t.value, PullRequestAction::NAMES)
                            .map(|s| format!(" (did you mean '{s}'?)"))
                            .unwrap_or_default();
                        self.error(
                            t.at.pos,
                            format!(
                                "on.pull_request types: expected one of {}, found '{}'{hint}",
                                PullRequestAction::NAMES.join(", "),
                                t.value
                            ),
                        );
                    }
                }
            }
            if pr.value.types.is_none() {
                types = PullRequestAction::DEFAULT.to_vec();
            }
            out.pull_request = Some(PullRequestTrigger { branches, types });
        }
    }

    /// `concurrency: { group, … }`: the group template reads only `source.*` and declared
    /// params.
    pub fn concurrency_group(
        &mut self,
        raw: &Sp<crate::git::RawConcurrencyGroup>,
        params: &[ParamSpec],
    ) -> Option<ConcurrencyGroup> {
        use crate::git::GROUP_SOURCE_FIELDS;
        let group = raw.value.group.as_ref()?;
        let refs = match ConcurrencyGroup::references(&group.value) {
            Ok(r) => r,
            Err(e) => {
                self.error(group.at.pos, format!("concurrency group: {e}"));
                return None;
            }
        };
        let mut ok = !group.value.trim().is_empty();
        if !ok {
            self.error(group.at.pos, "concurrency group: must not be empty");
        }
        for r in refs {
            let known = match r.split_once('.') {
                Some(("source", f)) => GROUP_SOURCE_FIELDS.contains(&f),
                Some(("params", p)) => params.iter().any(|x| x.name == p),
                _ => false,
            };
            if !known {
                ok = false;
                self.error(
                    group.at.pos,
                    format!(
                        "concurrency group: '${{{{ {r} }}}}' is not known here; use source.{} or \
                         params.NAME",
                        GROUP_SOURCE_FIELDS.join(", source.")
                    ),
                );
            }
        }
        // `limit` is checked as `concurrency` (the reader put it there).
        ok.then(|| ConcurrencyGroup {
            group: group.value.clone(),
            cancel_in_progress: raw.value.cancel_in_progress.as_ref().is_some_and(|c| c.value),
        })
    }

    /// `source:`: a non-empty repository and, if named, a credentials secret name.
    pub fn source(&mut self, raw: &Sp<RawSource>) -> Option<Source> {
        let repo = raw.value.repository.as_ref()?;
        if repo.value.trim().is_empty() {
            self.error(repo.at.pos, "source repository: must not be empty");
            return None;
        }
        if repo.value.chars().any(char::is_whitespace) {
            self.error(repo.at.pos, "source repository: a clone URL or owner/name has no spaces");
            return None;
        }
        let credentials = raw.value.credentials.as_ref().map(|c| c.value.clone());
        if let Some(c) = &raw.value.credentials
            && !is_env_name(&c.value)
        {
            self.error(
                c.at.pos,
                format!(
                    "source credentials: expected the name of a project secret (letters, digits and _), found '{}'",
                    c.value
                ),
            );
            return None;
        }
        Some(Source { repository: repo.value.clone(), credentials })
    }

    /// `on.push`/`on.pull_request` start runs of the `source` repository: without one they
    /// could never fire.
    pub fn git_triggers_need_source(
        &mut self,
        triggers: &Triggers,
        source: Option<&Source>,
        on: Option<&Sp<RawOn>>,
    ) {
        if source.is_some() || (triggers.push.is_none() && triggers.pull_request.is_none()) {
            return;
        }
        let Some(on) = on else { return };
        let v = &on.value;
        let at = match (&v.push, v.pull_request.as_ref().or(v.merge_request.as_ref())) {
            (Some(p), _) => p.at.pos,
            (None, Some(p)) => p.at.pos,
            (None, None) => on.at.pos,
        };
        self.error(
            at,
            "on.push and on.pull_request start runs for the workflow's repository: add \
             source: { repository: <clone URL or owner/name> }",
        );
    }

    /// Whether `text` is a valid glob; an error at its position when not.
    fn glob(&mut self, text: &Sp<String>, what: &str) -> bool {
        match globset::Glob::new(&text.value) {
            Ok(_) => true,
            Err(e) => {
                self.error(
                    text.at.pos,
                    format!("{what} '{}' is not a valid glob: {}", text.value, e.kind()),
                );
                false
            }
        }
    }

    fn params(&mut self, raw: &Entries<RawParam>) -> Vec<ParamSpec> {
        let mut out = Vec::new();
        for (name, p) in &raw.0 {
            let what = format!("param '{}'", name.value);
            if !is_env_name(&name.value) {
                self.error(
                    name.at.pos,
                    format!(
                        "{what}: a param name has letters, digits and _ and does not start with \
                         a digit (it is also an env variable)"
                    ),
                );
            }
            let kind = match p.kind.as_ref().map(|k| k.value) {
                None | Some(ParamType::String) => ParamKind::String,
                Some(ParamType::Number) => ParamKind::Number,
                Some(ParamType::Bool) => ParamKind::Bool,
                Some(ParamType::Choice) => ParamKind::Choice(self.choice_options(p, &what)),
            };
            if let (Some(options), false) = (&p.options, matches!(kind, ParamKind::Choice(_))) {
                self.error(options.at.pos, format!("{what}: options apply only to type: choice"));
            }
            let default = p.default.as_ref().and_then(|d| {
                if let ParamKind::Choice(o) = &kind
                    && o.is_empty()
                {
                    return None; // the missing options were reported
                }
                param_value(&kind, &d.value)
                    .map_err(|e| self.error(d.at.pos, format!("{what} default: {e}")))
                    .ok()
            });
            out.push(ParamSpec {
                name: name.value.clone(),
                kind,
                default,
                required: p.required.as_ref().is_some_and(|r| r.value),
                description: p.description.as_ref().map(|d| d.value.clone()),
            });
        }
        out
    }

    fn choice_options(&mut self, p: &RawParam, what: &str) -> Vec<String> {
        let Some(options) = &p.options else {
            let pos = p.kind.as_ref().map(|k| k.at.pos).unwrap_or_default();
            self.error(pos, format!("{what}: type choice needs options: [a, b, …]"));
            return Vec::new();
        };
        if options.value.is_empty() {
            self.error(options.at.pos, format!("{what}: options is empty"));
        }
        let mut seen = BTreeSet::new();
        for o in &options.value {
            if !seen.insert(o.value.as_str()) {
                self.error(o.at.pos, format!("{what}: option '{}' is listed twice", o.value));
            }
        }
        options.value.iter().map(|o| o.value.clone()).collect()
    }

    /// The global env (also the env a `uses` file adds): valid names, params-only templates.
    pub fn global_env(
        &mut self,
        raw: &Entries<Sp<String>>,
        params: &[ParamSpec],
    ) -> BTreeMap<String, String> {
        let names: Vec<String> = params.iter().map(|p| p.name.clone()).collect();
        let scope = RefScope { params: &names, job: None };
        self.env(raw, &scope)
    }

    fn env(&mut self, raw: &Entries<Sp<String>>, scope: &RefScope<'_>) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (key, value) in &raw.0 {
            if !is_env_name(&key.value) {
                self.error(
                    key.at.pos,
                    format!(
                        "env name '{}': expected letters, digits and _, not starting with a digit",
                        key.value
                    ),
                );
            }
            self.template(value, scope, false);
            out.insert(key.value.clone(), value.value.clone());
        }
        out
    }

    /// Checks the syntax and references of a template (or of a condition).
    pub(crate) fn template(&mut self, text: &Sp<String>, scope: &RefScope<'_>, condition: bool) {
        let found = if condition {
            expr::condition_references(&text.value)
        } else {
            expr::references(&text.value)
        };
        let refs = match found {
            Ok(refs) => refs,
            Err(e) => {
                let pos = text.at.locate(&text.value, e.offset);
                self.error(pos, format!("invalid expression: {}", e.message));
                return;
            }
        };
        for r in refs {
            let pos = text.at.locate(&text.value, r.offset);
            if let Err(message) = check_reference(&r.reference, scope) {
                self.error(pos, message);
            }
        }
    }

    /// A script line's template: checked as any template, then each value written inline
    /// that is not the file's own is a warning naming the variable to use instead (`${{ }}`
    /// is spliced into the shell script as text, so a value holding `"` or `;` runs as
    /// commands); a value from outside (`self.outside`) is an error unless `allow`, and the
    /// commit's facts (`source.*`) are no expression: their `KILN_*` variable is named.
    fn script_line(&mut self, line: &Sp<String>, scope: &RefScope<'_>, allow: bool) {
        let refs = match expr::references(&line.value) {
            Ok(refs) => refs,
            Err(e) => {
                let field = line.value[e.offset..]
                    .strip_prefix("source.")
                    .map(|rest| {
                        rest.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
                    })
                    .and_then(|mut parts| parts.next());
                match field.and_then(|f| source_variable(f).map(|v| (f, v))) {
                    Some((field, var)) => {
                        let pos = line.at.locate(&line.value, e.offset);
                        self.error(
                            pos,
                            format!(
                                "`source.{field}` is not spliced into scripts: it comes from \
                                 outside (a git webhook) and could run commands; use the \
                                 variable \"${var}\""
                            ),
                        );
                    }
                    None => self.template(line, scope, false),
                }
                return;
            }
        };
        self.template(line, scope, false);
        for r in refs {
            if check_reference(&r.reference, scope).is_err() {
                continue; // reported as an error above
            }
            let pos = line.at.locate(&line.value, r.offset);
            let (text, use_instead) = match &r.reference {
                Reference::Param(name) => {
                    (format!("params.{name}"), format!("use the variable \"${name}\" instead"))
                }
                Reference::Output { job, key } => {
                    let direct = scope.job.as_ref().is_some_and(|j| {
                        j.graph
                            .index
                            .get(job.as_str())
                            .is_some_and(|t| j.graph.needs[j.at].contains(t))
                    });
                    let text = format!("jobs.{job}.outputs.{key}");
                    let hint = if direct && is_env_name(key) {
                        format!("use the variable \"${key}\" instead")
                    } else {
                        format!(
                            "set it in the job's env (`OUT: ${{{{ {text} }}}}`) and use \"$OUT\" \
                             instead"
                        )
                    };
                    (text, hint)
                }
                // The file's own values and fixed words.
                Reference::Matrix(_) | Reference::Result(_) => continue,
            };
            let outside = matches!(&r.reference, Reference::Param(p) if self.outside.contains(p));
            if outside {
                let message = format!(
                    "`${{{{ {text} }}}}` comes from outside (an image push fills it) and is \
                     spliced into the script as text, where it can run commands; {use_instead}, \
                     or set allow-untrusted-inline: true on the job"
                );
                if allow {
                    self.warning_once(pos, message);
                } else {
                    self.error(pos, message);
                }
            } else {
                self.warning_once(
                    pos,
                    format!(
                        "`${{{{ {text} }}}}` is spliced into the script as text: a value holding \
                         `\"` or `;` runs as commands; {use_instead}"
                    ),
                );
            }
        }
    }

    fn stages(&mut self, raw: &Sp<Vec<RawStage>>, params: &[ParamSpec]) -> (Vec<Stage>, Vec<Job>) {
        if raw.value.is_empty() {
            self.error(raw.at.pos, "stages is empty: a workflow needs at least one stage");
        }
        // Stages and the jobs they declare.
        let mut stage_names: HashMap<&str, Pos> = HashMap::new();
        let mut job_ids: HashMap<&str, (Pos, &str)> = HashMap::new();
        let mut bases: Vec<Base<'_>> = Vec::new();
        let mut kinds: Vec<StageType> = Vec::new();
        for (si, stage) in raw.value.iter().enumerate() {
            let name = stage.name.value.as_str();
            self.name_length(name, stage.name.at.pos, "stage name");
            if name.trim().is_empty() {
                self.error(stage.name.at.pos, "a stage name must not be empty");
            } else if let Some(first) = stage_names.get(name) {
                self.error(
                    stage.name.at.pos,
                    format!("duplicate stage name '{name}' (first at line {})", first.line),
                );
            } else {
                stage_names.insert(name, stage.name.at.pos);
            }
            let kind = stage.kind.as_ref().map_or(StageType::Jobs, |k| k.value);
            kinds.push(kind);
            match kind {
                StageType::Approval => {
                    if let Some(jobs) = &stage.jobs {
                        let pos = jobs.0.first().map_or(stage.name.at.pos, |(k, _)| k.at.pos);
                        self.error(
                            pos,
                            format!(
                                "approval stage '{name}' can not have jobs: put them in a stage \
                                 of their own"
                            ),
                        );
                    }
                }
                StageType::Jobs => {
                    if let Some(d) = &stage.description {
                        self.error(
                            d.at.pos,
                            format!(
                                "stage '{name}': description is for approval stages (add \
                                 type: approval, or remove it)"
                            ),
                        );
                    }
                    match &stage.jobs {
                        Some(jobs) if !jobs.0.is_empty() => {
                            for (id, job) in &jobs.0 {
                                self.name_length(&id.value, id.at.pos, "job id");
                                if !is_job_id(&id.value) {
                                    self.error(
                                        id.at.pos,
                                        format!(
                                            "job id '{}': expected letters, digits, _ and -",
                                            id.value
                                        ),
                                    );
                                }
                                if let Some((first, other)) = job_ids.get(id.value.as_str()) {
                                    self.error(
                                        id.at.pos,
                                        format!(
                                            "duplicate job id '{}' (first in stage '{other}', \
                                             line {}): job ids are unique in the workflow",
                                            id.value, first.line
                                        ),
                                    );
                                    continue;
                                }
                                job_ids.insert(&id.value, (id.at.pos, name));
                                bases.push(Base {
                                    id,
                                    stage: si,
                                    raw: job,
                                    matrix: None,
                                    needs: Vec::new(),
                                });
                            }
                        }
                        _ => self.error(
                            stage.name.at.pos,
                            format!(
                                "stage '{name}' has no jobs: add jobs, or type: approval for an \
                                 approval stage"
                            ),
                        ),
                    }
                }
            }
        }
        for (si, stage) in raw.value.iter().enumerate() {
            if kinds[si] == StageType::Approval && !bases.iter().any(|b| b.stage > si) {
                self.warning(
                    stage.name.at.pos,
                    format!(
                        "approval stage '{}' gates nothing: no jobs come after it",
                        stage.name.value
                    ),
                );
            }
        }

        let ids: Vec<&str> = bases.iter().map(|b| b.id.value.as_str()).collect();
        let index: HashMap<&str, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let stage_of: Vec<usize> = bases.iter().map(|b| b.stage).collect();
        // Jobs per stage, and the implicit needs of each stage: every job of the nearest
        // earlier stage that has jobs.
        let mut by_stage: Vec<Vec<usize>> = vec![Vec::new(); raw.value.len()];
        for (i, b) in bases.iter().enumerate() {
            if let Some(list) = by_stage.get_mut(b.stage) {
                list.push(i);
            }
        }
        let implicit: Vec<&[usize]> = (0..by_stage.len())
            .map(|si| {
                (0..si)
                    .rev()
                    .find(|&s| !by_stage[s].is_empty())
                    .map_or(&[][..], |s| by_stage[s].as_slice())
            })
            .collect();
        for b in &mut bases {
            b.needs = match &b.raw.needs {
                None => implicit.get(b.stage).map_or_else(Vec::new, |n| n.to_vec()),
                Some(needs) => self.needs(b, needs, &index, &stage_of, &ids, raw),
            };
            b.matrix = b.raw.matrix.as_ref().and_then(|m| self.matrix(m, b.id));
        }
        self.break_cycles(&mut bases);
        let order = stage_topological_order(&bases, raw.value.len());

        let graph = Graph {
            ids: ids.clone(),
            needs: bases.iter().map(|b| b.needs.clone()).collect(),
            stage: stage_of.clone(),
            matrix: bases.iter().map(|b| b.raw.matrix.is_some()).collect(),
            index: index.clone(),
        };

        let param_names: Vec<String> = params.iter().map(|p| p.name.clone()).collect();
        let gates: Vec<Option<usize>> = (0..kinds.len())
            .map(|si| (0..si).rev().find(|&s| kinds[s] == StageType::Approval))
            .collect();

        // Instance ids per base, for expanding needs.
        let instance_ids: Vec<Vec<String>> = bases
            .iter()
            .map(|b| match &b.matrix {
                None => vec![b.id.value.clone()],
                Some((_, instances)) => {
                    instances.iter().map(|v| format!("{}[{}]", b.id.value, v.join(","))).collect()
                }
            })
            .collect();

        let mut jobs = Vec::new();
        for bi in order {
            let b = &bases[bi];
            let scope = RefScope {
                params: &param_names,
                job: Some(JobScope {
                    id: &b.id.value,
                    at: bi,
                    axes: b.matrix.as_ref().map(|(axes, _)| axes.as_slice()),
                    graph: &graph,
                }),
            };
            let Some(template) = self.job(b, &scope) else { continue };
            let needs: Vec<JobId> = b
                .needs
                .iter()
                .flat_map(|&j| instance_ids[j].iter().map(|id| JobId(id.clone())))
                .collect();
            let gate = gates.get(b.stage).copied().flatten();
            match &b.matrix {
                None => jobs.push(Job { needs, gate, ..template }),
                Some((axes, instances)) => {
                    for (values, id) in instances.iter().zip(&instance_ids[bi]) {
                        jobs.push(Job {
                            id: JobId(id.clone()),
                            needs: needs.clone(),
                            gate,
                            matrix: axes.iter().cloned().zip(values.iter().cloned()).collect(),
                            ..template.clone()
                        });
                    }
                }
            }
        }

        let stages = raw
            .value
            .iter()
            .enumerate()
            .map(|(si, s)| Stage {
                name: s.name.value.clone(),
                kind: match kinds[si] {
                    StageType::Approval => StageKind::Approval {
                        description: s.description.as_ref().map(|d| d.value.clone()),
                    },
                    StageType::Jobs => StageKind::Jobs(
                        jobs.iter().filter(|j| j.stage == si).map(|j| j.id.clone()).collect(),
                    ),
                },
            })
            .collect();
        (stages, jobs)
    }

    /// Reports every cycle of `needs` (only jobs of one stage can form one: other edges point
    /// to earlier stages) at the need that closes it, and drops that need, so the graph
    /// left is acyclic.
    fn break_cycles(&mut self, bases: &mut [Base<'_>]) {
        // Depth-first in file order; 0: unvisited, 1: on the path, 2: done.
        let mut mark = vec![0u8; bases.len()];
        for root in 0..bases.len() {
            if mark[root] != 0 {
                continue;
            }
            // (job, index of the next need to follow)
            let mut path: Vec<(usize, usize)> = vec![(root, 0)];
            mark[root] = 1;
            while let Some(&(n, next)) = path.last() {
                let Some(&m) = bases[n].needs.get(next) else {
                    mark[n] = 2;
                    path.pop();
                    continue;
                };
                let top = path.len() - 1;
                match mark[m] {
                    0 => {
                        path[top].1 += 1;
                        mark[m] = 1;
                        path.push((m, 0));
                    }
                    1 => {
                        let from = path.iter().position(|&(j, _)| j == m).unwrap_or(0);
                        let cycle: Vec<&str> = path[from..]
                            .iter()
                            .map(|&(j, _)| bases[j].id.value.as_str())
                            .chain([bases[m].id.value.as_str()])
                            .collect();
                        let (id, name) = (&bases[n].id.value, &bases[m].id.value);
                        let message = format!(
                            "job '{id}' needs '{name}', which itself waits for '{id}': needs \
                             form a cycle ({}); jobs of a stage may need each other, but not in \
                             a circle",
                            cycle.join(" needs ")
                        );
                        let pos = bases[n]
                            .raw
                            .needs
                            .as_ref()
                            .and_then(|ns| ns.value.iter().find(|x| &x.value == name))
                            .map_or(bases[n].id.at.pos, |x| x.at.pos);
                        self.error(pos, message);
                        // The next need now sits at `next`.
                        bases[n].needs.remove(next);
                    }
                    _ => path[top].1 += 1,
                }
            }
        }
    }

    /// The jobs (indexes) an explicit `needs` names, after checking each.
    fn needs(
        &mut self,
        b: &Base<'_>,
        needs: &Sp<Vec<Sp<String>>>,
        index: &HashMap<&str, usize>,
        stage_of: &[usize],
        ids: &[&str],
        stages: &Sp<Vec<RawStage>>,
    ) -> Vec<usize> {
        let id = &b.id.value;
        let stage_name = |s: usize| stages.value.get(s).map_or("", |st| st.name.value.as_str());
        let mut out: Vec<usize> = Vec::new();
        for n in &needs.value {
            let name = n.value.as_str();
            let found = index.get(name).map(|&i| (i, stage_of[i]));
            match found.as_ref().map(|(_, s)| s) {
                None => {
                    let hint = suggest(name, ids)
                        .map(|s| format!(" (did you mean '{s}'?)"))
                        .unwrap_or_default();
                    self.error(
                        n.at.pos,
                        format!("job '{id}' needs '{name}', which does not exist{hint}"),
                    );
                }
                Some(_) if name == id => {
                    self.error(n.at.pos, format!("job '{id}' can not need itself"));
                }
                Some(&s) if s > b.stage => self.error(
                    n.at.pos,
                    format!(
                        "job '{id}' needs '{name}' of the later stage '{}': needs may name only \
                         jobs of the same or earlier stages",
                        stage_name(s)
                    ),
                ),
                Some(_) => {
                    if let Some((i, _)) = found
                        && !out.contains(&i)
                    {
                        out.push(i);
                    }
                }
            }
        }
        out
    }

    /// Expands a matrix: axes in written order, the cross product (first axis outermost)
    /// minus `exclude`, plus `include`.
    fn matrix(
        &mut self,
        m: &Sp<RawMatrix>,
        job: &Sp<String>,
    ) -> Option<(Vec<String>, Vec<Vec<String>>)> {
        let id = &job.value;
        let raw = &m.value;
        let mut ok = true;
        let mut axes: Vec<String> = Vec::new();
        for (name, values) in &raw.axes.0 {
            if !is_job_id(&name.value) {
                self.error(
                    name.at.pos,
                    format!("matrix axis '{}': expected letters, digits, _ and -", name.value),
                );
                ok = false;
            }
            if values.value.is_empty() {
                self.error(values.at.pos, format!("matrix axis '{}' has no values", name.value));
                ok = false;
            }
            let mut seen = BTreeSet::new();
            for v in &values.value {
                if !seen.insert(v.value.as_str()) {
                    self.error(
                        v.at.pos,
                        format!("matrix axis '{}' lists '{}' twice", name.value, v.value),
                    );
                    ok = false;
                }
            }
            axes.push(name.value.clone());
        }
        let from_include = axes.is_empty();
        if from_include {
            match raw.include.first() {
                Some(first) => axes = first.value.0.iter().map(|(k, _)| k.value.clone()).collect(),
                None => {
                    self.error(
                        m.at.pos,
                        format!(
                            "matrix of job '{id}' has no axes: add name: [values], or include \
                             entries"
                        ),
                    );
                    return None;
                }
            }
        }
        let axis_list = axes.join(", ");
        // Cross product, bounded before it is built.
        let mut instances: Vec<Vec<String>> = Vec::new();
        if !from_include {
            let count = raw
                .axes
                .0
                .iter()
                .try_fold(1usize, |acc, (_, v)| acc.checked_mul(v.value.len()))
                .unwrap_or(usize::MAX);
            if count > MAX_MATRIX_INSTANCES {
                self.error(
                    m.at.pos,
                    format!(
                        "matrix of job '{id}' has {} combinations; at most \
                         {MAX_MATRIX_INSTANCES} are allowed",
                        if count == usize::MAX {
                            "too many".to_string()
                        } else {
                            count.to_string()
                        }
                    ),
                );
                return None;
            }
            instances.push(Vec::new());
            for (_, values) in &raw.axes.0 {
                instances = instances
                    .iter()
                    .flat_map(|prefix| {
                        values.value.iter().map(move |v| {
                            let mut next = prefix.clone();
                            next.push(v.value.clone());
                            next
                        })
                    })
                    .collect();
            }
        }
        for entry in &raw.exclude {
            let mut valid = true;
            for (k, _) in &entry.value.0 {
                if !axes.contains(&k.value) {
                    self.error(
                        k.at.pos,
                        format!(
                            "matrix exclude names '{}', which is not an axis (axes: {axis_list})",
                            k.value
                        ),
                    );
                    valid = false;
                    ok = false;
                }
            }
            if !valid {
                continue;
            }
            let matches = |inst: &Vec<String>| {
                entry.value.0.iter().all(|(k, v)| {
                    axes.iter().position(|a| *a == k.value).is_some_and(|i| inst[i] == v.value)
                })
            };
            let before = instances.len();
            instances.retain(|inst| !matches(inst));
            if before == instances.len() {
                self.warning(entry.at.pos, "this matrix exclude entry matches no combination");
            }
        }
        for entry in &raw.include {
            let keys: Vec<&str> = entry.value.0.iter().map(|(k, _)| k.value.as_str()).collect();
            let mut valid = true;
            for (k, _) in &entry.value.0 {
                if !axes.contains(&k.value) {
                    self.error(
                        k.at.pos,
                        format!(
                            "matrix include sets '{}', which is not an axis (axes: {axis_list}); \
                             an include entry sets exactly the axes",
                            k.value
                        ),
                    );
                    valid = false;
                }
            }
            let missing: Vec<&str> =
                axes.iter().map(String::as_str).filter(|a| !keys.contains(a)).collect();
            if !missing.is_empty() {
                self.error(
                    entry.at.pos,
                    format!(
                        "matrix include entry must set every axis: missing {}",
                        missing.join(", ")
                    ),
                );
                valid = false;
            }
            if !valid {
                ok = false;
                continue;
            }
            let values: Vec<String> = axes
                .iter()
                .map(|a| {
                    entry
                        .value
                        .0
                        .iter()
                        .find(|(k, _)| k.value == *a)
                        .map(|(_, v)| v.value.clone())
                        .unwrap_or_default()
                })
                .collect();
            if !instances.contains(&values) {
                instances.push(values);
            }
        }
        if !ok {
            return None;
        }
        if instances.is_empty() {
            self.error(m.at.pos, format!("matrix of job '{id}' has no combinations left"));
            return None;
        }
        if instances.len() > MAX_MATRIX_INSTANCES {
            self.error(
                m.at.pos,
                format!(
                    "matrix of job '{id}' has {} instances; at most {MAX_MATRIX_INSTANCES} are \
                     allowed",
                    instances.len()
                ),
            );
            return None;
        }
        Some((axes, instances))
    }

    /// Checks a job's fields and builds its plan entry (without needs, gate or matrix).
    fn job(&mut self, b: &Base<'_>, scope: &RefScope<'_>) -> Option<Job> {
        let raw = b.raw;
        let id = &b.id.value;
        let check_all = |this: &mut Self, items: &[Sp<String>]| {
            for item in items {
                this.template(item, scope, false);
            }
        };
        if let Some(image) = &raw.image {
            check_all(self, std::slice::from_ref(image));
        }
        let run = if let Some(b) = &raw.build {
            // A build with a problem was reported; the job is dropped from the plan.
            RunSpec::Build(Box::new(self.build(b, scope)?))
        } else if let Some(t) = &raw.trigger {
            RunSpec::Trigger(self.trigger(t, scope))
        } else if let Some(d) = &raw.deploy {
            // A deploy with a problem was reported; the job is dropped from the plan.
            RunSpec::Deploy(Box::new(self.deploy(d, scope)?))
        } else if let Some(script) = &raw.script {
            if script.value.is_empty() {
                self.error(script.at.pos, "script is empty");
            }
            let bytes: usize = script.value.iter().map(|l| l.value.len() + 1).sum();
            if bytes > MAX_SCRIPT_BYTES {
                self.error(
                    script.at.pos,
                    format!(
                        "script of job '{id}' is {bytes} bytes; at most {MAX_SCRIPT_BYTES} are \
                         allowed (a script is one argument of `sh -c`): put it in a file of the \
                         repository and run that"
                    ),
                );
            }
            let allow = raw.allow_untrusted_inline.as_ref().is_some_and(|a| a.value);
            for line in &script.value {
                self.script_line(line, scope, allow);
            }
            RunSpec::Script(script.value.iter().map(|l| l.value.clone()).collect())
        } else {
            if let Some(command) = &raw.command {
                if command.value.is_empty() {
                    self.error(command.at.pos, "command is empty: remove it to use the image's");
                }
                check_all(self, &command.value);
            }
            if let Some(args) = &raw.args {
                check_all(self, &args.value);
            }
            RunSpec::Command {
                command: raw
                    .command
                    .as_ref()
                    .map(|c| c.value.iter().map(|s| s.value.clone()).collect()),
                args: raw
                    .args
                    .as_ref()
                    .map(|a| a.value.iter().map(|s| s.value.clone()).collect())
                    .unwrap_or_default(),
            }
        };
        let env = raw.env.as_ref().map(|e| self.env(e, scope)).unwrap_or_default();
        if let Some(w) = &raw.workdir {
            check_all(self, std::slice::from_ref(w));
        }
        let timeout = raw.timeout.as_ref().and_then(|t| self.duration(t, "timeout"));
        let retry = raw.retry.as_ref().map(|r| self.retry(r)).unwrap_or_default();
        let resources = raw.resources.as_ref().map(|r| self.resources(r)).unwrap_or_default();
        let condition = match &raw.condition {
            Some(c) => {
                self.template(c, scope, true);
                expr::condition_body(&c.value).to_owned()
            }
            None => "success()".to_owned(),
        };
        let mut services = Vec::new();
        let mut service_names: BTreeMap<&str, Pos> = BTreeMap::new();
        for s in raw.services.iter().flat_map(|s| s.value.iter()) {
            let name = s.name.value.as_str();
            if !is_host_name(name) {
                self.error(
                    s.name.at.pos,
                    format!(
                        "service name '{name}': expected a host name (letters, digits and -, \
                         not at either end)"
                    ),
                );
            } else if let Some(first) = service_names.get(name) {
                self.error(
                    s.name.at.pos,
                    format!("duplicate service name '{name}' (first at line {})", first.line),
                );
            } else {
                service_names.insert(name, s.name.at.pos);
            }
            check_all(self, std::slice::from_ref(&s.image));
            if let Some(c) = &s.command {
                check_all(self, &c.value);
            }
            services.push(Service {
                name: name.to_owned(),
                image: s.image.value.clone(),
                env: s.env.as_ref().map(|e| self.env(e, scope)).unwrap_or_default(),
                command: s
                    .command
                    .as_ref()
                    .map(|c| c.value.iter().map(|x| x.value.clone()).collect()),
            });
        }
        let cache = raw.cache.as_ref().map(|c| self.cache(c, scope));
        let artifacts = raw.artifacts.as_ref().map(|a| self.artifacts(a, scope));
        let pools = self.job_pools(raw);
        let environment = self.job_environment(raw, id, scope);
        let array = self.array(raw, id);
        Some(Job {
            id: JobId(id.clone()),
            base: id.clone(),
            stage: b.stage,
            needs: Vec::new(),
            gate: None,
            condition,
            image: raw.image.as_ref().map(|i| i.value.clone()),
            run,
            env,
            workdir: raw.workdir.as_ref().map(|w| w.value.clone()),
            timeout,
            retry,
            matrix: BTreeMap::new(),
            services,
            resources,
            cache,
            artifacts,
            scheduling: self.scheduling(raw),
            checkout: raw.checkout.as_ref().is_none_or(|c| c.value),
            pools,
            environment,
            array,
        })
    }

    /// `array:` and `parallelism:` of a job: the size within 1..=[`MAX_ARRAY_SIZE`], and
    /// nothing beside them that an array cannot mean (see docs/workflow.md#job-arrays).
    fn array(&mut self, raw: &RawJob, id: &str) -> Option<ArraySpec> {
        let Some(size) = &raw.array else {
            if let Some(p) = &raw.parallelism {
                self.error(
                    p.at.pos,
                    format!(
                        "job '{id}': parallelism limits how many indexes of an array run at \
                         once; it needs array: N"
                    ),
                );
            }
            return None;
        };
        let pos = size.at.pos;
        if size.value == 0 || size.value > MAX_ARRAY_SIZE {
            self.error(
                pos,
                format!(
                    "array of job '{id}' is {}; expected 1 to {MAX_ARRAY_SIZE} indexes",
                    size.value
                ),
            );
            return None;
        }
        let parallelism = match &raw.parallelism {
            Some(p) if p.value == 0 => {
                self.error(
                    p.at.pos,
                    "parallelism: must be at least 1 (how many indexes may run at once)",
                );
                None
            }
            Some(p) => Some(p.value),
            None => None,
        };
        let refuse = |this: &mut Self, key: &str, why: &str| {
            this.error(pos, format!("array of job '{id}' cannot go with {key}: {why}"));
        };
        if raw.matrix.is_some() {
            refuse(
                self,
                "matrix",
                "an array is already one job run N times; use the index (KILN_ARRAY_INDEX) to \
                 pick what a matrix would, or split the job",
            );
        }
        if raw.artifacts.is_some() {
            refuse(
                self,
                "artifacts",
                "every index would save over the others'; write results somewhere of your own, \
                 keyed by KILN_ARRAY_INDEX",
            );
        }
        if raw.service_pools.is_some() {
            refuse(self, "service-pools", "pools are not supported for arrays yet");
        }
        if let Some(at) = self.shared_env.run_pools {
            self.error(
                pos,
                format!(
                    "array of job '{id}' cannot run in a workflow with service-pools (line {}): \
                     pools are not supported for arrays yet",
                    at.line
                ),
            );
        }
        if raw.environment.is_some() {
            refuse(self, "environment", "environments are not supported for arrays yet");
        }
        if raw.ports.is_some() {
            refuse(self, "ports", "indexes would ask for the same named ports");
        }
        Some(ArraySpec { size: size.value, parallelism })
    }

    /// The environment a job runs in: its `environment:`, or the one its deploy goes to
    /// (both written: the same one). A trigger job runs nothing that could use one.
    fn job_environment(&mut self, raw: &RawJob, id: &str, scope: &RefScope<'_>) -> Option<String> {
        let deploy_env = raw.deploy.as_ref().and_then(|d| d.value.environment.as_ref());
        let Some(env) = &raw.environment else { return deploy_env.map(|e| e.value.clone()) };
        if raw.trigger.is_some() {
            self.error(
                env.at.pos,
                format!(
                    "job '{id}' starts pipelines (trigger): it runs nothing that could use an \
                     environment; set environment: in the jobs of the pipelines it starts"
                ),
            );
            return None;
        }
        if let Some(d) = deploy_env
            && d.value != env.value
        {
            self.error(
                env.at.pos,
                format!(
                    "job '{id}' deploys to '{}' (deploy.environment), so that is its \
                     environment: remove environment: '{}' or make it the same",
                    d.value, env.value
                ),
            );
            return Some(d.value.clone());
        }
        self.environment_name(env, scope, "environment");
        Some(env.value.clone())
    }

    /// A job's own pools, and the clashes of the names the job gets: its env against every
    /// export, its pools' exports against the workflow's env and exports.
    fn job_pools(&mut self, raw: &RawJob) -> Vec<Pool> {
        let mut exports = BTreeMap::new();
        let pools = match &raw.service_pools {
            Some(p) => self.pools(p, &mut exports),
            None => Vec::new(),
        };
        for (name, (_, pos)) in &exports {
            if let Some(at) = self.shared_env.global.get(name) {
                let line = at.line;
                self.error(
                    *pos,
                    format!(
                        "export '{name}' is also set by the workflow's env (line {line}): set it in \
                         one place"
                    ),
                );
            }
            self.exported_clash(name, *pos, "export");
        }
        for (key, _) in raw.env.iter().flat_map(|e| &e.0) {
            match exports.get(&key.value) {
                Some((pool, at)) => {
                    let line = at.line;
                    self.error(
                        key.at.pos,
                        format!(
                            "env '{}' is also exported by service pool '{pool}' (line {line}): set \
                             it in one place",
                            key.value
                        ),
                    );
                }
                None => self.exported_clash(&key.value, key.at.pos, "env"),
            }
        }
        pools
    }

    /// `constraints`, `ports`, `network`, `priority`, `placement`, checked with the
    /// scheduler's own parser so that a compiled plan always converts.
    fn scheduling(&mut self, raw: &RawJob) -> Scheduling {
        let mut out = Scheduling {
            constraints: raw.constraints.as_ref().map(|c| self.constraints(c)).unwrap_or_default(),
            host_network: raw.network.as_ref().is_some_and(|n| n.value == NetworkText::Host),
            spread: raw.placement.as_ref().is_some_and(|p| p.value == PlacementText::Spread),
            ..Scheduling::default()
        };
        if let Some(p) = &raw.priority {
            match p.value.trim().parse::<i32>() {
                Ok(n) => out.priority = n,
                Err(_) => self.error(
                    p.at.pos,
                    format!(
                        "priority: expected a whole number such as 10 or -5, found '{}'",
                        p.value
                    ),
                ),
            }
        }
        if let Some(ports) = &raw.ports {
            out.ports = self.ports(ports, out.network());
        }
        out
    }

    /// `resources`: CPU, memory and disk amounts.
    pub(crate) fn resources(&mut self, r: &Sp<RawResources>) -> Resources {
        Resources {
            cpu_millis: r.value.cpu.as_ref().and_then(|c| {
                units::cpu_millis(&c.value)
                    .map_err(|e| self.error(c.at.pos, format!("cpu: {e}")))
                    .ok()
            }),
            memory_bytes: r.value.memory.as_ref().and_then(|m| {
                units::memory_bytes(&m.value)
                    .map_err(|e| self.error(m.at.pos, format!("memory: {e}")))
                    .ok()
            }),
            disk_bytes: r.value.disk.as_ref().and_then(|d| {
                units::memory_bytes(&d.value)
                    .map_err(|e| {
                        self.error(d.at.pos, format!("disk: {}", e.replace("memory", "disk")))
                    })
                    .ok()
            }),
        }
    }

    /// `constraints`, each test parsed with the scheduler's parser; a group with a bad test
    /// is left out (the test is reported at its place).
    pub(crate) fn constraints(
        &mut self,
        raw: &Sp<Vec<Sp<Vec<RawTerm>>>>,
    ) -> Vec<Vec<ConstraintTerm>> {
        let mut out = Vec::new();
        for group in &raw.value {
            let mut terms = Vec::new();
            for t in &group.value {
                let value = t.value.as_ref().map(|v| v.value.as_str());
                match kiln_scheduler::Predicate::new(&t.attribute.value, &t.operator.value, value) {
                    Ok(p) => terms.push(ConstraintTerm {
                        attribute: p.attribute.clone(),
                        operator: p.op.to_string().split(' ').next().unwrap_or_default().to_owned(),
                        value: t.value.as_ref().map(|v| v.value.clone()),
                    }),
                    Err(e) => {
                        use kiln_scheduler::ConstraintError as E;
                        let at = match &e {
                            E::Operator { .. } => t.operator.at.pos,
                            E::EmptyAttribute { .. } => t.attribute.at.pos,
                            _ => t.value.as_ref().map_or(t.operator.at.pos, |v| v.at.pos),
                        };
                        self.error(at, e.to_string());
                    }
                }
            }
            if terms.len() == group.value.len() {
                out.push(terms);
            }
        }
        out
    }

    /// `ports`: numbers in range, then the scheduler's own checks of the list (names,
    /// duplicates once turned into env names, container ports for `network`).
    pub(crate) fn ports(
        &mut self,
        ports: &Sp<Vec<RawPort>>,
        network: kiln_scheduler::Network,
    ) -> Vec<PortSpec> {
        let port = |c: &mut Self, v: &Option<Sp<String>>, what: &str, min: u16| -> Option<u16> {
            let v = v.as_ref()?;
            match v.value.trim().parse::<u16>() {
                Ok(n) if n >= min => Some(n),
                _ => {
                    c.error(
                        v.at.pos,
                        format!(
                            "{what}: expected a port number from {min} to 65535, found '{}'",
                            v.value
                        ),
                    );
                    None
                }
            }
        };
        let mut out = Vec::new();
        for p in &ports.value {
            let host =
                port(self, &p.host, &format!("port '{}' host", p.name.value), 0).unwrap_or(0);
            let container =
                port(self, &p.container, &format!("port '{}' container", p.name.value), 1);
            out.push(PortSpec { name: p.name.value.clone(), host, container });
        }
        let mut probe = kiln_scheduler::Ask::new(
            "check",
            "check",
            "check",
            kiln_scheduler::Resources::default(),
        );
        probe.network = network;
        probe.ports = out
            .iter()
            .map(|p| kiln_scheduler::PortAsk {
                name: p.name.clone(),
                host: p.host,
                container: p.container,
            })
            .collect();
        if let Err(e) = probe.validate() {
            use kiln_scheduler::AskError as E;
            let name = match &e {
                E::PortName(n)
                | E::DuplicatePort(_, n)
                | E::ContainerPortNeeded(n)
                | E::HostModePort(n, _) => Some(n.as_str()),
                E::DuplicateHostPort(_) => None,
            };
            let at = name
                .and_then(|n| ports.value.iter().rev().find(|p| p.name.value == n))
                .map_or(ports.at.pos, |p| p.name.at.pos);
            self.error(at, format!("ports: {e}"));
        }
        out
    }

    /// Checks `cache`: its key and paths may hold templates; paths stay in the workspace.
    fn cache(&mut self, c: &Sp<RawCache>, scope: &RefScope<'_>) -> CacheSpec {
        let raw = &c.value;
        let key = match &raw.key {
            Some(key) => {
                if key.value.trim().is_empty() {
                    self.error(
                        key.at.pos,
                        "cache key: must not be empty (leave it out to use 'default')",
                    );
                }
                self.template(key, scope, false);
                key.value.clone()
            }
            None => "default".to_owned(),
        };
        let files = match &raw.files {
            Some(files) => {
                if files.value.is_empty() {
                    self.error(
                        files.at.pos,
                        "cache files is empty: name the files whose contents make the key, or \
                         remove it",
                    );
                }
                self.paths(&files.value, "cache files", scope)
            }
            None => Vec::new(),
        };
        let paths = match &raw.paths {
            Some(paths) => {
                if paths.value.is_empty() {
                    self.error(
                        paths.at.pos,
                        "cache paths is empty: name at least one path to keep",
                    );
                }
                self.paths(&paths.value, "cache paths", scope)
            }
            None => Vec::new(), // reported by the reader
        };
        let policy = match raw.policy.as_ref().map(|p| p.value) {
            None | Some(CachePolicyText::PullPush) => CachePolicy::PullPush,
            Some(CachePolicyText::Pull) => CachePolicy::Pull,
            Some(CachePolicyText::Push) => CachePolicy::Push,
        };
        CacheSpec { key, files, paths, policy }
    }

    /// Checks `artifacts`: paths may hold templates and stay in the workspace.
    fn artifacts(&mut self, a: &Sp<RawArtifacts>, scope: &RefScope<'_>) -> ArtifactSpec {
        let raw = &a.value;
        let paths = match &raw.paths {
            Some(paths) => {
                if paths.value.is_empty() {
                    self.error(
                        paths.at.pos,
                        "artifacts paths is empty: name at least one path to save",
                    );
                }
                self.paths(&paths.value, "artifacts paths", scope)
            }
            None => Vec::new(), // reported by the reader
        };
        let when = match raw.when.as_ref().map(|w| w.value) {
            None | Some(ArtifactWhenText::OnSuccess) => ArtifactWhen::OnSuccess,
            Some(ArtifactWhenText::OnFailure) => ArtifactWhen::OnFailure,
            Some(ArtifactWhenText::Always) => ArtifactWhen::Always,
        };
        ArtifactSpec { paths, when }
    }

    /// Paths of `cache` or `artifacts`: templates checked, then the literal text must be a
    /// relative path that stays in the workspace (templates are checked again once rendered).
    fn paths(&mut self, items: &[Sp<String>], what: &str, scope: &RefScope<'_>) -> Vec<String> {
        for item in items {
            self.template(item, scope, false);
            if let Some(problem) = workspace_path_problem(&mask_templates(&item.value)) {
                let pos = item.at.locate(&item.value, problem.offset());
                let shown = item.value.replace('\n', "\\n").replace('\r', "\\r");
                self.error(pos, format!("{what}: '{shown}' {problem}"));
            }
        }
        items.iter().map(|i| i.value.clone()).collect()
    }

    fn retry(&mut self, r: &Sp<RawRetry>) -> RetryPolicy {
        let max = match &r.value.max {
            Some(m) => m.value,
            None => {
                self.error(r.at.pos, "retry: add max: <extra attempts>");
                0
            }
        };
        let on = match &r.value.on {
            None => RetryPolicy::default().on,
            Some(list) => {
                if list.value.is_empty() {
                    self.error(
                        list.at.pos,
                        "retry on: name at least one of failure, timeout, error",
                    );
                }
                let mut on = Vec::new();
                for item in &list.value {
                    let v = match item.value {
                        RetryOnText::Failure => RetryOn::Failure,
                        RetryOnText::Timeout => RetryOn::Timeout,
                        RetryOnText::Error => RetryOn::Error,
                    };
                    if !on.contains(&v) {
                        on.push(v);
                    }
                }
                on
            }
        };
        RetryPolicy { max, on }
    }
}

/// Whether an expression may read `reference` where it stands; if not, why.
fn check_reference(reference: &Reference, scope: &RefScope<'_>) -> Result<(), String> {
    let unknown_job = |job: &str, graph: &Graph<'_>| {
        let hint =
            suggest(job, &graph.ids).map(|s| format!(" (did you mean '{s}'?)")).unwrap_or_default();
        format!("unknown job '{job}'{hint}")
    };
    match reference {
        Reference::Param(name) => {
            if scope.params.iter().any(|p| p == name) {
                return Ok(());
            }
            let names: Vec<&str> = scope.params.iter().map(String::as_str).collect();
            let hint = suggest(name, &names)
                .map(|s| format!(" (did you mean '{s}'?)"))
                .unwrap_or_default();
            Err(format!("unknown param '{name}'{hint}; declared params: {}", listing(&names)))
        }
        Reference::Output { job, key } => {
            let Some(j) = &scope.job else {
                return Err(format!(
                    "the global env can only read params; jobs.{job}.outputs.{key} belongs in the \
                     env of a job that needs '{job}'"
                ));
            };
            let Some(&target) = j.graph.index.get(job.as_str()) else {
                return Err(unknown_job(job, j.graph));
            };
            if j.graph.matrix[target] {
                Err(format!(
                    "job '{}' reads outputs of matrix job '{job}': each instance has its own \
                     outputs, so there is no way to say which one",
                    j.id
                ))
            } else if !j.graph.reaches(j.at, target) {
                Err(format!(
                    "job '{}' reads outputs of '{job}', which it does not need: add needs: [{job}]",
                    j.id
                ))
            } else {
                Ok(())
            }
        }
        Reference::Result(job) => {
            let Some(j) = &scope.job else {
                return Err(format!(
                    "the global env can only read params; jobs.{job}.result belongs in the env \
                     or if: of a job that needs '{job}'"
                ));
            };
            match j.graph.index.get(job.as_str()) {
                None => Err(unknown_job(job, j.graph)),
                Some(&target) if !j.graph.reaches(j.at, target) => Err(format!(
                    "job '{}' reads the result of '{job}', which it does not need: add needs: \
                     [{job}]",
                    j.id
                )),
                Some(_) => Ok(()),
            }
        }
        Reference::Matrix(key) => {
            let Some(j) = &scope.job else {
                return Err(format!(
                    "the global env can only read params; matrix.{key} belongs in the env of a \
                     matrix job"
                ));
            };
            match j.axes {
                None => Err(format!("matrix.{key}: job '{}' has no matrix", j.id)),
                Some(axes) if axes.iter().any(|a| a == key) => Ok(()),
                Some(axes) => {
                    let names: Vec<&str> = axes.iter().map(String::as_str).collect();
                    Err(format!(
                        "matrix.{key}: the matrix of job '{}' has no axis '{key}' (axes: {})",
                        j.id,
                        listing(&names)
                    ))
                }
            }
        }
    }
}

/// Typed `with:` values become the defaults of a template's params.
pub fn bind_with(
    checker: &mut Checker<'_>,
    with: &Entries<Sp<String>>,
    params: &mut [ParamSpec],
    template: &str,
) {
    let names: Vec<String> = params.iter().map(|p| p.name.clone()).collect();
    for (key, value) in &with.0 {
        let Some(spec) = params.iter_mut().find(|p| p.name == key.value) else {
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let hint = suggest(&key.value, &refs)
                .map(|s| format!(" (did you mean '{s}'?)"))
                .unwrap_or_default();
            checker.error(
                key.at.pos,
                format!(
                    "template '{template}' has no param '{}'{hint}; its params: {}",
                    key.value,
                    listing(&refs)
                ),
            );
            continue;
        };
        if value.value.contains("${{") {
            checker.error(
                value.at.pos,
                "with: values are literal; expressions are not evaluated here",
            );
            continue;
        }
        match param_value(&spec.kind, &value.value) {
            Ok(v) => spec.default = Some(v),
            Err(e) => checker.error(value.at.pos, format!("with '{}': {e}", key.value)),
        }
    }
}

/// `on.schedule`: each entry's cron expression, time zone and params (declared names, typed
/// values, every required param given); an entry that repeats an earlier one is an error.
fn schedules<'r>(
    checker: &mut Checker<'_>,
    raw: impl Iterator<Item = &'r Sp<RawSchedule>>,
    params: &[ParamSpec],
) -> Vec<ScheduleTrigger> {
    use crate::schedule::{DEFAULT_TIMEZONE, Missed, parse_cron, parse_timezone};
    let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
    let mut out: Vec<ScheduleTrigger> = Vec::new();
    for entry in raw {
        let s = &entry.value;
        let mut ok = true;
        let Some(cron) = &s.cron else { continue };
        if let Err(e) = parse_cron(&cron.value) {
            checker.error(cron.at.pos, format!("schedule cron '{}': {e}", cron.value));
            ok = false;
        }
        let timezone = match &s.timezone {
            Some(tz) => {
                if let Err(e) = parse_timezone(&tz.value) {
                    checker.error(tz.at.pos, format!("schedule timezone: {e}"));
                    ok = false;
                }
                tz.value.clone()
            }
            None => DEFAULT_TIMEZONE.to_string(),
        };
        let mut given = BTreeMap::new();
        for (key, value) in s.params.iter().flat_map(|p| &p.0) {
            let Some(spec) = params.iter().find(|p| p.name == key.value) else {
                let hint = suggest(&key.value, &names)
                    .map(|s| format!(" (did you mean '{s}'?)"))
                    .unwrap_or_default();
                checker.error(
                    key.at.pos,
                    format!(
                        "schedule params: the workflow has no param '{}'{hint}; its params: {}",
                        key.value,
                        listing(&names)
                    ),
                );
                ok = false;
                continue;
            };
            if value.value.contains("${{") {
                checker.error(
                    value.at.pos,
                    "schedule params are literal values; expressions are not evaluated here",
                );
                ok = false;
                continue;
            }
            if let Err(e) = param_value(&spec.kind, &value.value) {
                checker.error(value.at.pos, format!("schedule param '{}': {e}", key.value));
                ok = false;
                continue;
            }
            given.insert(key.value.clone(), value.value.clone());
        }
        for spec in params.iter().filter(|p| p.required && p.default.is_none()) {
            if s.params.iter().flat_map(|p| &p.0).all(|(k, _)| k.value != spec.name) {
                checker.error(
                    entry.at.pos,
                    format!(
                        "schedule: param '{}' is required and has no default; give it in the \
                         schedule's params: {{ {}: ... }}",
                        spec.name, spec.name
                    ),
                );
                ok = false;
            }
        }
        let missed = match s.missed.as_ref().map(|m| m.value) {
            None | Some(MissedText::Skip) => Missed::Skip,
            Some(MissedText::RunOnce) => Missed::RunOnce,
        };
        let trigger = ScheduleTrigger { cron: cron.value.clone(), timezone, params: given, missed };
        if ok && out.iter().any(|t| t.key() == trigger.key()) {
            checker.error(
                entry.at.pos,
                "this schedule repeats an earlier one (same cron, timezone and params): remove one",
            );
            continue;
        }
        if ok {
            out.push(trigger);
        }
    }
    out
}
