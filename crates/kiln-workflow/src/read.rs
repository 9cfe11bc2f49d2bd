//! YAML tree ([`Node`]) -> [`RawWorkflow`]: shapes and scalar types, every problem reported.
//!
//! The reader goes on after a problem (the bad value is left out), so one pass reports all of
//! a file's shape errors. Meaning (names resolve, durations parse, needs point backwards) is
//! checked later, by `check`. A `null` value counts as absent.

use crate::diag::{Diagnostic, Severity};
use crate::git::{RawConcurrencyGroup, RawPullRequestTrigger, RawPushTrigger, RawSource};
use crate::raw::{
    ArtifactWhenText, CachePolicyText, Entries, MissedText, NetworkText, ParamType, PlacementText,
    RawArtifacts, RawCache, RawImageTrigger, RawJob, RawMatrix, RawOn, RawParam, RawPool, RawPort,
    RawResources, RawRetry, RawSchedule, RawService, RawStage, RawTerm, RawWorkflow, RetryOnText,
    Sp, StageType,
};
use crate::yaml::{Kind, Node, Origin, Pos};

/// Reads one file's tree, adding diagnostics to `diags`.
pub struct Reader<'d> {
    file: &'d str,
    diags: &'d mut Vec<Diagnostic>,
}

/// The non-null values of a mapping, by key, after unknown keys were reported.
pub(crate) struct Fields<'n> {
    node: &'n Node,
    entries: Vec<(&'n str, &'n Node, &'n Node)>,
}

impl<'n> Fields<'n> {
    /// The value of `key`, unless absent or null.
    pub(crate) fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries.iter().find(|(k, _, v)| *k == key && !v.is_null()).map(|(_, _, v)| *v)
    }

    /// The value of `key` when present, null included (`push:` alone means "every push").
    pub(crate) fn present(&self, key: &str) -> Option<&'n Node> {
        self.entries.iter().find(|(k, _, _)| *k == key).map(|(_, _, v)| *v)
    }

    /// The key node of `key`, when present (for locating "not both" errors).
    pub(crate) fn key(&self, key: &str) -> Option<&'n Node> {
        self.entries.iter().find(|(k, _, v)| *k == key && !v.is_null()).map(|(_, k, _)| *k)
    }

    pub(crate) fn pos(&self) -> Pos {
        self.node.pos()
    }
}

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo.
pub fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (edit_distance(&lower, &c.to_ascii_lowercase()), *c))
        .filter(|(d, _)| *d <= (word.chars().count() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edit distance counting a swap of two neighbours as one edit (optimal string alignment);
/// short strings only: keys and ids.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

impl<'d> Reader<'d> {
    /// A reader for `file` that adds its problems to `diags`.
    pub fn new(file: &'d str, diags: &'d mut Vec<Diagnostic>) -> Self {
        Reader { file, diags }
    }

    pub(crate) fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.diags.push(Diagnostic {
            severity: Severity::Error,
            file: self.file.to_owned(),
            line: pos.line,
            column: pos.column,
            message: message.into(),
        });
    }

    /// Checks that `node` is a mapping, reports keys not in `keys`, and returns its fields.
    pub(crate) fn fields<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
        keys: &[&str],
    ) -> Option<Fields<'n>> {
        let Kind::Map(map) = &node.kind else {
            self.error(
                node.pos(),
                format!("{what}: expected a mapping (key: value), found {}", node.describe()),
            );
            return None;
        };
        let mut entries = Vec::with_capacity(map.len());
        for (k, v) in map {
            let name = k.scalar().unwrap_or_default();
            if keys.contains(&name) {
                entries.push((name, k, v));
            } else {
                let hint = suggest(name, keys)
                    .map(|s| format!(" (did you mean '{s}'?)"))
                    .unwrap_or_default();
                self.error(
                    k.pos(),
                    format!(
                        "unknown key '{name}' in {what}{hint}; expected one of: {}",
                        keys.join(", ")
                    ),
                );
            }
        }
        Some(Fields { node, entries })
    }

    /// A scalar as text.
    pub(crate) fn text(&mut self, node: &Node, what: &str) -> Option<Sp<String>> {
        match &node.kind {
            Kind::Scalar { text, .. } if !node.is_null() => {
                Some(Sp::new(text.clone(), node.origin))
            }
            _ => {
                self.error(node.pos(), format!("{what}: expected text, found {}", node.describe()));
                None
            }
        }
    }

    /// A list of scalars as texts; non-scalar items are reported and left out.
    pub(crate) fn text_list(&mut self, node: &Node, what: &str) -> Option<Sp<Vec<Sp<String>>>> {
        let Kind::Seq(items) = &node.kind else {
            self.error(
                node.pos(),
                format!("{what}: expected a list such as [a, b], found {}", node.describe()),
            );
            return None;
        };
        let values = items.iter().filter_map(|item| self.text(item, what)).collect();
        Some(Sp::new(values, node.origin))
    }

    /// One text or a list of texts. With `split_lines`, one text becomes one item per line.
    pub(crate) fn text_or_list(
        &mut self,
        node: &Node,
        what: &str,
        split_lines: bool,
    ) -> Option<Sp<Vec<Sp<String>>>> {
        match &node.kind {
            Kind::Seq(_) => self.text_list(node, what),
            Kind::Scalar { text, .. } if split_lines => {
                let body = text.strip_suffix('\n').unwrap_or(text);
                if body.trim().is_empty() {
                    return Some(Sp::new(Vec::new(), node.origin));
                }
                let lines = body
                    .split('\n')
                    .enumerate()
                    .map(|(i, line)| Sp::new(line.to_owned(), node.origin.line(i)))
                    .collect();
                Some(Sp::new(lines, node.origin))
            }
            Kind::Scalar { .. } => {
                let one = self.text(node, what)?;
                Some(Sp::new(vec![one], node.origin))
            }
            Kind::Map(_) => {
                self.error(
                    node.pos(),
                    format!("{what}: expected text or a list, found {}", node.describe()),
                );
                None
            }
        }
    }

    /// A mapping of name -> text (env, `with`, matrix combinations). Null values are empty text.
    pub(crate) fn text_map(&mut self, node: &Node, what: &str) -> Option<Entries<Sp<String>>> {
        let Kind::Map(map) = &node.kind else {
            self.error(
                node.pos(),
                format!("{what}: expected a mapping (name: value), found {}", node.describe()),
            );
            return None;
        };
        let mut out = Vec::with_capacity(map.len());
        for (k, v) in map {
            let key = Sp::new(k.scalar().unwrap_or_default().to_owned(), k.origin);
            let value = if v.is_null() {
                Some(Sp::new(String::new(), v.origin))
            } else {
                self.text(v, &format!("{what} '{}'", key.value))
            };
            if let Some(value) = value {
                out.push((key, value));
            }
        }
        Some(Entries(out))
    }

    /// `true` or `false` (also `True`, `TRUE`, `False`, `FALSE`, as YAML 1.2 core).
    pub(crate) fn bool(&mut self, node: &Node, what: &str) -> Option<Sp<bool>> {
        let value = match node.scalar() {
            Some("true" | "True" | "TRUE") => Some(true),
            Some("false" | "False" | "FALSE") => Some(false),
            _ => None,
        };
        if value.is_none() {
            self.error(
                node.pos(),
                format!("{what}: expected true or false, found {}", node.describe()),
            );
        }
        value.map(|v| Sp::new(v, node.origin))
    }

    /// A whole number that fits in `u32`.
    pub(crate) fn count(&mut self, node: &Node, what: &str) -> Option<Sp<u32>> {
        let value = node.scalar().and_then(|s| s.trim().parse::<u32>().ok());
        if value.is_none() {
            self.error(
                node.pos(),
                format!("{what}: expected a whole number such as 2, found {}", node.describe()),
            );
        }
        value.map(|v| Sp::new(v, node.origin))
    }

    /// One of the `names`, mapped to the matching entry of `values`.
    pub(crate) fn one_of<T: Copy>(
        &mut self,
        node: &Node,
        what: &str,
        names: &[&str],
        values: &[T],
    ) -> Option<Sp<T>> {
        let found = node.scalar().and_then(|s| names.iter().position(|n| *n == s));
        match found.and_then(|i| values.get(i)) {
            Some(v) => Some(Sp::new(*v, node.origin)),
            None => {
                let hint = node
                    .scalar()
                    .and_then(|s| suggest(s, names))
                    .map(|s| format!(" (did you mean '{s}'?)"))
                    .unwrap_or_default();
                self.error(
                    node.pos(),
                    format!(
                        "{what}: expected one of {}, found {}{hint}",
                        names.join(", "),
                        node.describe()
                    ),
                );
                None
            }
        }
    }

    /// Reads the whole file. `None` when the top level is not a mapping.
    pub fn workflow(&mut self, root: &Node) -> Option<RawWorkflow> {
        // Another kind of file is said as such, not as a list of unknown keys.
        match crate::service_file::declared_kind(root) {
            None | Some((_, Ok(crate::Kind::Workflow))) => {}
            Some((pos, Ok(crate::Kind::Service))) => {
                self.error(pos, crate::service_file::SERVICE_IN_WORKFLOW);
                return None;
            }
            Some((pos, Ok(crate::Kind::Metric))) => {
                self.error(pos, crate::metric_file::METRIC_ELSEWHERE);
                return None;
            }
            Some((pos, Err(message))) => {
                self.error(pos, message);
                return None;
            }
        }
        // `kind: workflow` was read above; it is not one of the keys listed in messages.
        let without_kind;
        let root = match &root.kind {
            Kind::Map(entries) if entries.iter().any(|(k, _)| k.scalar() == Some("kind")) => {
                let entries =
                    entries.iter().filter(|(k, _)| k.scalar() != Some("kind")).cloned().collect();
                without_kind = Node { origin: root.origin, kind: Kind::Map(entries) };
                &without_kind
            }
            _ => root,
        };
        let f = self.fields(root, "the workflow file", RawWorkflow::KEYS)?;
        let name = match f.get("name") {
            Some(n) => self.text(n, "name").inspect(|name| {
                if name.value.trim().is_empty() {
                    self.error(name.at.pos, "name: must not be empty");
                }
            }),
            None => {
                self.error(f.pos(), "the workflow has no 'name': add name: <text>");
                None
            }
        }
        .unwrap_or_else(|| Sp::new(String::new(), Origin::at(f.pos())));
        let timeout = f.get("timeout").and_then(|n| self.text(n, "timeout"));
        let (concurrency, concurrency_group) = match f.get("concurrency") {
            Some(n) if matches!(n.kind, Kind::Map(_)) => self.concurrency_group(n),
            Some(n) => (self.count(n, "concurrency"), None),
            None => (None, None),
        };
        let params = f.get("params").and_then(|n| self.params(n));
        let env = f.get("env").and_then(|n| self.text_map(n, "env"));
        let stages = f.get("stages").and_then(|n| self.stages(n));
        let uses = f.get("uses").and_then(|n| self.text(n, "uses"));
        let with = f.get("with").and_then(|n| self.text_map(n, "with"));
        let on = f.get("on").and_then(|n| self.on(n));
        let source = f.get("source").and_then(|n| self.source(n));
        let service_pools = f.get("service-pools").and_then(|n| self.pools(n, "service-pools"));
        let prepull = f.get("prepull").and_then(|n| self.text_list(n, "prepull"));
        if stages.is_none() && uses.is_none() && f.get("stages").is_none() {
            self.error(
                f.pos(),
                "the workflow has no 'stages' (or 'uses' to run a template): add stages: [...]",
            );
        }
        Some(RawWorkflow {
            name,
            timeout,
            concurrency,
            concurrency_group,
            params,
            env,
            stages,
            uses,
            with,
            on,
            source,
            service_pools,
            prepull,
        })
    }

    /// `service-pools:`: pool name -> `{ service, ready, timeout, export }`.
    fn pools(&mut self, node: &Node, what: &str) -> Option<Entries<Sp<RawPool>>> {
        let Kind::Map(map) = &node.kind else {
            self.error(
                node.pos(),
                format!(
                    "{what}: expected a mapping of pool name -> {{ service, ready, timeout, \
                     export }}, found {}",
                    node.describe()
                ),
            );
            return None;
        };
        let mut out = Vec::new();
        for (k, v) in map {
            let name = k.scalar().unwrap_or_default().to_owned();
            let label = format!("service pool '{name}'");
            let Some(f) = self.fields(v, &label, RawPool::KEYS) else { continue };
            let service =
                f.get("service").and_then(|n| self.pool_service(n, &format!("{label} service")));
            if f.get("service").is_none() {
                self.error(
                    f.pos(),
                    format!(
                        "{label} has no 'service': add service: {{ command: [...], replicas: N, \
                         ports: [...] }}"
                    ),
                );
            }
            let ready = f.get("ready").and_then(|n| self.count(n, &format!("{label} ready")));
            let timeout = f.get("timeout").and_then(|n| self.text(n, &format!("{label} timeout")));
            let export = f.get("export").and_then(|n| self.text_map(n, &format!("{label} export")));
            out.push((
                Sp::new(name, k.origin),
                Sp::new(RawPool { service, ready, timeout, export }, v.origin),
            ));
        }
        Some(Entries(out))
    }

    fn on(&mut self, node: &Node) -> Option<Sp<RawOn>> {
        let f = self.fields(node, "on", RawOn::KEYS)?;
        let image = f.get("image").map(|n| {
            let items: Vec<&Node> = match &n.kind {
                Kind::Seq(items) => items.iter().collect(),
                _ => vec![n],
            };
            let triggers = items.into_iter().filter_map(|item| self.image_trigger(item)).collect();
            Sp::new(triggers, n.origin)
        });
        let schedule = f.get("schedule").map(|n| {
            let items: Vec<&Node> = match &n.kind {
                Kind::Seq(items) => items.iter().collect(),
                _ => vec![n],
            };
            let schedules = items.into_iter().filter_map(|item| self.schedule(item)).collect();
            Sp::new(schedules, n.origin)
        });
        let api = f.get("api").and_then(|n| self.bool(n, "on.api"));
        let push = f.present("push").and_then(|n| self.push_trigger(n));
        let pull_request =
            f.present("pull_request").and_then(|n| self.pull_request_trigger(n, "pull_request"));
        let merge_request =
            f.present("merge_request").and_then(|n| self.pull_request_trigger(n, "merge_request"));
        if let (Some(_), Some(_)) = (&pull_request, &merge_request) {
            self.error(
                merge_request.as_ref().map_or(f.pos(), |m| m.at.pos),
                "on: merge_request is another name for pull_request: write one of them",
            );
        }
        Some(Sp::new(
            RawOn { image, push, pull_request, merge_request, schedule, api },
            node.origin,
        ))
    }

    fn schedule(&mut self, node: &Node) -> Option<Sp<RawSchedule>> {
        let f = self.fields(node, "schedule", RawSchedule::KEYS)?;
        let cron = f.get("cron").and_then(|n| self.text(n, "schedule cron"));
        if f.get("cron").is_none() {
            self.error(
                f.pos(),
                "schedule has no 'cron': add cron: \"<minute hour day month weekday>\"",
            );
        }
        let timezone = f.get("timezone").and_then(|n| self.text(n, "schedule timezone"));
        let params = f.get("params").and_then(|n| self.text_map(n, "schedule params"));
        let missed = f.get("missed").and_then(|n| {
            self.one_of(
                n,
                "schedule missed",
                crate::schedule::Missed::NAMES,
                &[MissedText::Skip, MissedText::RunOnce],
            )
        });
        Some(Sp::new(RawSchedule { cron, timezone, params, missed }, node.origin))
    }

    // Git triggers, `source` and concurrency groups (see `git.rs`).

    /// `concurrency: { group, limit, cancel-in-progress }`: the limit (default 1) and the group.
    fn concurrency_group(
        &mut self,
        node: &Node,
    ) -> (Option<Sp<u32>>, Option<Sp<RawConcurrencyGroup>>) {
        let Some(f) = self.fields(node, "concurrency", RawConcurrencyGroup::KEYS) else {
            return (None, None);
        };
        let group = f.get("group").and_then(|n| self.text(n, "concurrency group"));
        if f.get("group").is_none() {
            self.error(f.pos(), "concurrency has no 'group': add group: ${{ source.branch }}");
        }
        let limit = f.get("limit").and_then(|n| self.count(n, "concurrency limit"));
        let cancel_in_progress = f
            .get("cancel-in-progress")
            .and_then(|n| self.bool(n, "concurrency cancel-in-progress"));
        let count = limit.clone().unwrap_or_else(|| Sp::new(1, node.origin));
        let raw = RawConcurrencyGroup { group, limit, cancel_in_progress };
        (Some(count), Some(Sp::new(raw, node.origin)))
    }

    fn push_trigger(&mut self, node: &Node) -> Option<Sp<RawPushTrigger>> {
        if node.is_null() {
            let empty =
                RawPushTrigger { branches: None, tags: None, paths: None, paths_ignore: None };
            return Some(Sp::new(empty, node.origin));
        }
        let f = self.fields(node, "on.push", RawPushTrigger::KEYS)?;
        let mut list = |key: &str| {
            f.get(key).and_then(|n| self.text_or_list(n, &format!("on.push {key}"), false))
        };
        let (branches, tags, paths, paths_ignore) =
            (list("branches"), list("tags"), list("paths"), list("paths-ignore"));
        if let (Some(_), Some(k)) = (&paths, f.key("paths-ignore")) {
            self.error(k.pos(), "on.push: use paths or paths-ignore, not both");
        }
        Some(Sp::new(RawPushTrigger { branches, tags, paths, paths_ignore }, node.origin))
    }

    fn pull_request_trigger(
        &mut self,
        node: &Node,
        what: &str,
    ) -> Option<Sp<RawPullRequestTrigger>> {
        if node.is_null() {
            return Some(Sp::new(
                RawPullRequestTrigger { branches: None, types: None },
                node.origin,
            ));
        }
        let f = self.fields(node, &format!("on.{what}"), RawPullRequestTrigger::KEYS)?;
        let branches = f
            .get("branches")
            .and_then(|n| self.text_or_list(n, &format!("on.{what} branches"), false));
        let types =
            f.get("types").and_then(|n| self.text_or_list(n, &format!("on.{what} types"), false));
        Some(Sp::new(RawPullRequestTrigger { branches, types }, node.origin))
    }

    fn source(&mut self, node: &Node) -> Option<Sp<RawSource>> {
        if let Kind::Scalar { .. } = node.kind {
            let repository = self.text(node, "source")?;
            return Some(Sp::new(
                RawSource { repository: Some(repository), credentials: None },
                node.origin,
            ));
        }
        let f = self.fields(node, "source", RawSource::KEYS)?;
        let repository = f.get("repository").and_then(|n| self.text(n, "source repository"));
        if f.get("repository").is_none() {
            self.error(
                f.pos(),
                "source has no 'repository': add repository: <clone URL or owner/name>",
            );
        }
        let credentials = f.get("credentials").and_then(|n| self.text(n, "source credentials"));
        Some(Sp::new(RawSource { repository, credentials }, node.origin))
    }

    fn image_trigger(&mut self, node: &Node) -> Option<Sp<RawImageTrigger>> {
        let f = self.fields(node, "image trigger", RawImageTrigger::KEYS)?;
        let repository = f.get("repository").and_then(|n| self.text(n, "image repository"));
        if f.get("repository").is_none() {
            self.error(
                f.pos(),
                "image trigger has no 'repository': add repository: <name or glob>",
            );
        }
        let tags = f.get("tags").and_then(|n| self.text_or_list(n, "image tags", false));
        Some(Sp::new(RawImageTrigger { repository, tags }, node.origin))
    }

    fn params(&mut self, node: &Node) -> Option<Entries<RawParam>> {
        let Kind::Map(map) = &node.kind else {
            self.error(
                node.pos(),
                format!(
                    "params: expected a mapping of name -> {{ type, default, … }}, found {}",
                    node.describe()
                ),
            );
            return None;
        };
        let mut out = Vec::new();
        for (k, v) in map {
            let name = k.scalar().unwrap_or_default().to_owned();
            let what = format!("param '{name}'");
            let Some(f) = self.fields(v, &what, RawParam::KEYS) else { continue };
            let kind = f.get("type").and_then(|n| {
                self.one_of(
                    n,
                    &format!("{what} type"),
                    ParamType::NAMES,
                    &[ParamType::String, ParamType::Number, ParamType::Bool, ParamType::Choice],
                )
            });
            let default = f.get("default").and_then(|n| self.text(n, &format!("{what} default")));
            let options =
                f.get("options").and_then(|n| self.text_list(n, &format!("{what} options")));
            let required =
                f.get("required").and_then(|n| self.bool(n, &format!("{what} required")));
            let description =
                f.get("description").and_then(|n| self.text(n, &format!("{what} description")));
            out.push((
                Sp::new(name, k.origin),
                RawParam { kind, default, options, required, description },
            ));
        }
        Some(Entries(out))
    }

    fn stages(&mut self, node: &Node) -> Option<Sp<Vec<RawStage>>> {
        let Kind::Seq(items) = &node.kind else {
            self.error(
                node.pos(),
                format!("stages: expected a list of stages (- name: …), found {}", node.describe()),
            );
            return None;
        };
        let stages = items.iter().enumerate().filter_map(|(i, n)| self.stage(n, i)).collect();
        Some(Sp::new(stages, node.origin))
    }

    fn stage(&mut self, node: &Node, index: usize) -> Option<RawStage> {
        // Name the stage in messages about its keys when it has a usable name.
        let label = match &node.kind {
            Kind::Map(m) => m
                .iter()
                .find(|(k, _)| k.scalar() == Some("name"))
                .and_then(|(_, v)| v.scalar().filter(|_| !v.is_null()))
                .map(|n| format!("stage '{n}'")),
            _ => None,
        }
        .unwrap_or_else(|| format!("stage {}", index + 1));
        let f = self.fields(node, &label, RawStage::KEYS)?;
        let name = match f.get("name") {
            Some(n) => self.text(n, "stage name"),
            None => {
                self.error(f.pos(), format!("stage {} has no 'name'", index + 1));
                None
            }
        }
        .unwrap_or_else(|| Sp::new(format!("#{}", index + 1), Origin::at(f.pos())));
        let what = format!("stage '{}'", name.value);
        let kind = f.get("type").and_then(|n| {
            self.one_of(
                n,
                &format!("{what} type"),
                &["jobs", "approval"],
                &[StageType::Jobs, StageType::Approval],
            )
        });
        let description =
            f.get("description").and_then(|n| self.text(n, &format!("{what} description")));
        let jobs = f.get("jobs").and_then(|n| self.jobs(n, &what));
        Some(RawStage { name, kind, description, jobs })
    }

    fn jobs(&mut self, node: &Node, stage: &str) -> Option<Entries<RawJob>> {
        let Kind::Map(map) = &node.kind else {
            self.error(
                node.pos(),
                format!(
                    "jobs of {stage}: expected a mapping of job id -> job, found {}",
                    node.describe()
                ),
            );
            return None;
        };
        let mut out = Vec::new();
        for (k, v) in map {
            let id = k.scalar().unwrap_or_default().to_owned();
            if let Some(job) = self.job(v, &id, k.pos()) {
                out.push((Sp::new(id, k.origin), job));
            }
        }
        Some(Entries(out))
    }

    fn job(&mut self, node: &Node, id: &str, at: Pos) -> Option<RawJob> {
        let what = format!("job '{id}'");
        let f = self.fields(node, &what, RawJob::KEYS)?;
        let image = f.get("image").and_then(|n| self.text(n, "image"));
        let script = f.get("script").and_then(|n| self.text_or_list(n, "script", true));
        let command = f.get("command").and_then(|n| self.text_list(n, "command"));
        let args = f.get("args").and_then(|n| self.text_list(n, "args"));
        if let (Some(_), Some(k)) = (f.get("script"), f.key("command").or(f.key("args"))) {
            self.error(
                k.pos(),
                format!(
                    "{what} has both script and {}: use script (shell lines) or command/args \
                     (component style), not both",
                    k.scalar().unwrap_or_default()
                ),
            );
        }
        let trigger = f.get("trigger").and_then(|n| self.trigger(n));
        let deploy = f.get("deploy").and_then(|n| self.deploy(n));
        let build = f.get("build").and_then(|n| self.build(n));
        if let (Some(_), Some(k)) = (f.key("build"), f.key("trigger").or(f.key("deploy"))) {
            let other = k.scalar().unwrap_or_default();
            self.error(
                k.pos(),
                format!("{what} has both build and {other}: a job does one; split it in two"),
            );
        }
        let server = match (f.key("trigger"), f.key("deploy")) {
            (Some(_), Some(d)) => {
                self.error(
                    d.pos(),
                    format!("{what} has both trigger and deploy: a job does one; split it in two"),
                );
                Some("trigger")
            }
            (Some(_), None) => Some("trigger"),
            (None, Some(_)) => Some("deploy"),
            (None, None) => None,
        };
        if let Some(kind) = server {
            // What an agent would use means nothing to a job the server carries out.
            let does = if kind == "trigger" { "starts pipelines" } else { "deploys a service" };
            for key in crate::server_job::AGENT_KEYS {
                if let Some(k) = f.key(key) {
                    self.error(
                        k.pos(),
                        format!(
                            "{what} {does} on the server ({kind}): '{key}' has no meaning beside \
                             {kind}; remove it (or run it in a job of its own)"
                        ),
                    );
                }
            }
        } else if f.key("build").is_some() {
            // The image builder runs in the job's place: nothing of a container of its own.
            for key in crate::build::NOT_WITH_BUILD {
                if let Some(k) = f.key(key) {
                    self.error(
                        k.pos(),
                        format!(
                            "{what} builds an image (build:): '{key}' has no meaning beside \
                             build, which runs in the image builder; remove it (or run it in a \
                             job of its own)"
                        ),
                    );
                }
            }
        } else if f.get("script").is_none() && f.get("command").is_none() && f.get("args").is_none()
        {
            self.error(
                at,
                format!(
                    "{what} has nothing to run: add script, or command/args (or build, trigger, \
                     or deploy)"
                ),
            );
        }
        let env = f.get("env").and_then(|n| self.text_map(n, "env"));
        let workdir = f.get("workdir").and_then(|n| self.text(n, "workdir"));
        let timeout = f.get("timeout").and_then(|n| self.text(n, "timeout"));
        let retry = f.get("retry").and_then(|n| self.retry(n));
        let resources = f.get("resources").and_then(|n| self.resources(n));
        // `needs: []` is an empty list, not null: it means "wait for nothing".
        let needs = f.get("needs").and_then(|n| self.text_or_list(n, "needs", false));
        let condition = f.get("if").and_then(|n| self.text(n, "if"));
        let matrix = f.get("matrix").and_then(|n| self.matrix(n));
        let array = f.get("array").and_then(|n| self.count(n, "array"));
        let parallelism = f.get("parallelism").and_then(|n| self.count(n, "parallelism"));
        let services = f.get("services").and_then(|n| self.services(n));
        let cache = f.get("cache").and_then(|n| self.cache(n));
        let artifacts = f.get("artifacts").and_then(|n| self.artifacts(n));
        let constraints = f.get("constraints").and_then(|n| self.constraints(n));
        let ports = f.get("ports").and_then(|n| self.ports(n));
        let network = f.get("network").and_then(|n| {
            self.one_of(n, "network", NetworkText::NAMES, &[NetworkText::Bridge, NetworkText::Host])
        });
        let priority = f.get("priority").and_then(|n| self.text(n, "priority"));
        let placement = f.get("placement").and_then(|n| {
            self.one_of(
                n,
                "placement",
                PlacementText::NAMES,
                &[PlacementText::Binpack, PlacementText::Spread],
            )
        });
        Some(RawJob {
            image,
            script,
            command,
            args,
            env,
            workdir,
            timeout,
            retry,
            resources,
            needs,
            condition,
            matrix,
            array,
            parallelism,
            services,
            cache,
            artifacts,
            constraints,
            ports,
            network,
            priority,
            placement,
            checkout: f.get("checkout").and_then(|n| self.bool(n, "checkout")),
            allow_untrusted_inline: f
                .get("allow-untrusted-inline")
                .and_then(|n| self.bool(n, "allow-untrusted-inline")),
            service_pools: f.get("service-pools").and_then(|n| self.pools(n, "service-pools")),
            trigger,
            deploy,
            build,
            environment: f.get("environment").and_then(|n| self.text(n, "environment")),
        })
    }

    /// `constraints:`, a list whose items are tests or `{any: [tests]}`.
    pub(crate) fn constraints(&mut self, node: &Node) -> Option<Sp<Vec<Sp<Vec<RawTerm>>>>> {
        if let Kind::Map(entries) = &node.kind
            && entries
                .iter()
                .any(|(k, _)| matches!(k.scalar(), Some("intersectionItem" | "nodeSelector")))
        {
            return self.bcs_constraints(node);
        }
        let Kind::Seq(items) = &node.kind else {
            self.error(
                node.pos(),
                format!(
                    "constraints: expected a list such as [[city, LIKE, shenzhen]], found {}",
                    node.describe()
                ),
            );
            return None;
        };
        let mut groups = Vec::new();
        for item in items {
            let is_any = matches!(&item.kind, Kind::Map(m) if m.iter().any(|(k, _)| k.scalar() == Some("any")));
            if !is_any {
                if let Some(t) = self.term(item) {
                    groups.push(Sp::new(vec![t], item.origin));
                }
                continue;
            }
            let Some(f) = self.fields(item, "constraint group", &["any"]) else { continue };
            let Some(any) = f.get("any") else { continue };
            let Kind::Seq(alts) = &any.kind else {
                self.error(
                    any.pos(),
                    format!(
                        "constraint group any: expected a list of tests, found {}",
                        any.describe()
                    ),
                );
                continue;
            };
            if alts.is_empty() {
                self.error(any.pos(), "constraint group any: expected at least one test");
                continue;
            }
            let terms: Vec<RawTerm> = alts.iter().filter_map(|a| self.term(a)).collect();
            if terms.len() == alts.len() {
                groups.push(Sp::new(terms, item.origin));
            }
        }
        Some(Sp::new(groups, node.origin))
    }

    /// BCS's constraint object (`{intersectionItem: [{unionData: [...]}], nodeSelector}`),
    /// read by the scheduler's own `Constraints::from_bcs`; its tests become terms located at
    /// the object. A problem is reported where its path (or its attribute) leads.
    fn bcs_constraints(&mut self, node: &Node) -> Option<Sp<Vec<Sp<Vec<RawTerm>>>>> {
        match kiln_scheduler::Constraints::from_bcs(&json_value(node)) {
            Ok(c) => {
                let groups = c
                    .groups()
                    .iter()
                    .map(|g| {
                        let terms = g
                            .iter()
                            .map(|p| {
                                let op = p.op.to_string();
                                let (operator, value) = match op.split_once(' ') {
                                    Some((o, v)) => (o.to_owned(), Some(v.to_owned())),
                                    None => (op, None),
                                };
                                RawTerm {
                                    attribute: Sp::new(p.attribute.clone(), node.origin),
                                    operator: Sp::new(operator, node.origin),
                                    value: value.map(|v| Sp::new(v, node.origin)),
                                }
                            })
                            .collect();
                        Sp::new(terms, node.origin)
                    })
                    .collect();
                Some(Sp::new(groups, node.origin))
            }
            Err(e) => {
                use kiln_scheduler::ConstraintError as E;
                let at = match &e {
                    E::Shape { at, .. } => locate_path(node, at),
                    E::Operator { attribute, .. }
                    | E::Value { attribute, .. }
                    | E::Regex { attribute, .. }
                    | E::Unsupported { attribute, .. } => locate_name(node, attribute),
                    _ => None,
                };
                self.error(at.unwrap_or(node.pos()), e.to_string());
                None
            }
        }
    }

    /// One test: `[attribute, OPERATOR, value?]` or `{attribute, operator, value?}`.
    fn term(&mut self, node: &Node) -> Option<RawTerm> {
        const EXPECTED: &str = "expected [attribute, OPERATOR] or [attribute, OPERATOR, value], \
                                or {attribute: ..., operator: ..., value: ...}";
        match &node.kind {
            Kind::Seq(parts) if (2..=3).contains(&parts.len()) => {
                let attribute = self.text(&parts[0], "constraint attribute")?;
                let operator = self.text(&parts[1], "constraint operator")?;
                let value = match parts.get(2) {
                    Some(v) => Some(self.text(v, "constraint value")?),
                    None => None,
                };
                Some(RawTerm { attribute, operator, value })
            }
            Kind::Map(_) => {
                let f = self.fields(node, "constraint", &["attribute", "operator", "value"])?;
                let attribute =
                    f.get("attribute").and_then(|n| self.text(n, "constraint attribute"));
                let operator = f.get("operator").and_then(|n| self.text(n, "constraint operator"));
                let value = f.get("value").and_then(|n| self.text(n, "constraint value"));
                for key in ["attribute", "operator"] {
                    if f.get(key).is_none() {
                        self.error(f.pos(), format!("constraint has no '{key}'"));
                    }
                }
                Some(RawTerm { attribute: attribute?, operator: operator?, value })
            }
            _ => {
                self.error(
                    node.pos(),
                    format!("constraint: {EXPECTED}, found {}", node.describe()),
                );
                None
            }
        }
    }

    pub(crate) fn ports(&mut self, node: &Node) -> Option<Sp<Vec<RawPort>>> {
        let Kind::Seq(items) = &node.kind else {
            self.error(
                node.pos(),
                format!(
                    "ports: expected a list such as [{{name: http, container: 8080}}], found {}",
                    node.describe()
                ),
            );
            return None;
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let what = format!("port {}", i + 1);
            let Some(f) = self.fields(item, &what, RawPort::KEYS) else { continue };
            let name = f.get("name").and_then(|n| self.text(n, "port name"));
            if f.get("name").is_none() {
                self.error(f.pos(), format!("{what} has no 'name'"));
            }
            let host = f.get("host").and_then(|n| self.text(n, "port host"));
            let container = f.get("container").and_then(|n| self.text(n, "port container"));
            if let Some(name) = name {
                out.push(RawPort { name, host, container });
            }
        }
        Some(Sp::new(out, node.origin))
    }

    fn cache(&mut self, node: &Node) -> Option<Sp<RawCache>> {
        let f = self.fields(node, "cache", RawCache::KEYS)?;
        let key = f.get("key").and_then(|n| self.text(n, "cache key"));
        let files = f.get("files").and_then(|n| self.text_list(n, "cache files"));
        let paths = f.get("paths").and_then(|n| self.text_list(n, "cache paths"));
        if f.get("paths").is_none() {
            self.error(f.pos(), "cache has no 'paths': add paths: [<path or glob to keep>]");
        }
        let policy = f.get("policy").and_then(|n| {
            self.one_of(
                n,
                "cache policy",
                CachePolicyText::NAMES,
                &[CachePolicyText::PullPush, CachePolicyText::Pull, CachePolicyText::Push],
            )
        });
        Some(Sp::new(RawCache { key, files, paths, policy }, node.origin))
    }

    fn artifacts(&mut self, node: &Node) -> Option<Sp<RawArtifacts>> {
        let f = self.fields(node, "artifacts", RawArtifacts::KEYS)?;
        let paths = f.get("paths").and_then(|n| self.text_list(n, "artifacts paths"));
        if f.get("paths").is_none() {
            self.error(f.pos(), "artifacts has no 'paths': add paths: [<path or glob to save>]");
        }
        let when = f.get("when").and_then(|n| {
            self.one_of(
                n,
                "artifacts when",
                ArtifactWhenText::NAMES,
                &[
                    ArtifactWhenText::OnSuccess,
                    ArtifactWhenText::OnFailure,
                    ArtifactWhenText::Always,
                ],
            )
        });
        Some(Sp::new(RawArtifacts { paths, when }, node.origin))
    }

    fn retry(&mut self, node: &Node) -> Option<Sp<RawRetry>> {
        match node.kind {
            Kind::Scalar { .. } => {
                let max = self.count(node, "retry")?;
                return Some(Sp::new(RawRetry { max: Some(max), on: None }, node.origin));
            }
            Kind::Seq(_) => {
                self.error(
                    node.pos(),
                    "retry: expected a count such as 2, or { max: 2, on: [failure, timeout] }, \
                     found a list",
                );
                return None;
            }
            Kind::Map(_) => {}
        }
        let f = self.fields(node, "retry", RawRetry::KEYS)?;
        let max = f.get("max").and_then(|n| self.count(n, "retry max"));
        let on = f.get("on").and_then(|n| {
            let list = self.text_or_list(n, "retry on", false)?;
            let items = list
                .value
                .iter()
                .filter_map(|item| {
                    let names = ["failure", "timeout", "error"];
                    match names.iter().position(|x| *x == item.value) {
                        Some(i) => Some(Sp::new(
                            [RetryOnText::Failure, RetryOnText::Timeout, RetryOnText::Error][i],
                            item.at,
                        )),
                        None => {
                            self.error(
                                item.at.pos,
                                format!(
                                    "retry on: expected failure, timeout or error, found '{}'",
                                    item.value
                                ),
                            );
                            None
                        }
                    }
                })
                .collect();
            Some(Sp::new(items, list.at))
        });
        Some(Sp::new(RawRetry { max, on }, node.origin))
    }

    pub(crate) fn resources(&mut self, node: &Node) -> Option<Sp<RawResources>> {
        let f = self.fields(node, "resources", RawResources::KEYS)?;
        let cpu = f.get("cpu").and_then(|n| self.text(n, "cpu"));
        let memory = f.get("memory").and_then(|n| self.text(n, "memory"));
        let disk = f.get("disk").and_then(|n| self.text(n, "disk"));
        Some(Sp::new(RawResources { cpu, memory, disk }, node.origin))
    }

    fn matrix(&mut self, node: &Node) -> Option<Sp<RawMatrix>> {
        let Kind::Map(map) = &node.kind else {
            self.error(
                node.pos(),
                format!(
                    "matrix: expected a mapping of axis -> list of values, found {}",
                    node.describe()
                ),
            );
            return None;
        };
        let mut matrix = RawMatrix::default();
        for (k, v) in map {
            let key = k.scalar().unwrap_or_default();
            if key == "include" || key == "exclude" {
                let Kind::Seq(items) = &v.kind else {
                    self.error(
                        v.pos(),
                        format!(
                            "matrix {key}: expected a list of mappings such as \
                             [{{os: linux}}], found {}",
                            v.describe()
                        ),
                    );
                    continue;
                };
                let combos = items
                    .iter()
                    .filter_map(|item| {
                        let m = self.text_map(item, &format!("matrix {key} entry"))?;
                        Some(Sp::new(m, item.origin))
                    })
                    .collect();
                if key == "include" {
                    matrix.include = combos;
                } else {
                    matrix.exclude = combos;
                }
            } else if let Some(values) = self.text_list(v, &format!("matrix axis '{key}'")) {
                matrix.axes.0.push((Sp::new(key.to_owned(), k.origin), values));
            }
        }
        Some(Sp::new(matrix, node.origin))
    }

    fn services(&mut self, node: &Node) -> Option<Sp<Vec<RawService>>> {
        let Kind::Seq(items) = &node.kind else {
            self.error(
                node.pos(),
                format!(
                    "services: expected a list of services (- name: …, image: …), found {}",
                    node.describe()
                ),
            );
            return None;
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let what = format!("service {}", i + 1);
            let Some(f) = self.fields(item, &what, RawService::KEYS) else { continue };
            let name = f.get("name").and_then(|n| self.text(n, "service name"));
            let image = f.get("image").and_then(|n| self.text(n, "service image"));
            if f.get("name").is_none() {
                self.error(f.pos(), format!("{what} has no 'name'"));
            }
            if f.get("image").is_none() {
                self.error(f.pos(), format!("{what} has no 'image'"));
            }
            let env = f.get("env").and_then(|n| self.text_map(n, "env"));
            let command = f.get("command").and_then(|n| self.text_list(n, "command"));
            if let (Some(name), Some(image)) = (name, image) {
                out.push(RawService { name, image, env, command });
            }
        }
        Some(Sp::new(out, node.origin))
    }
}

/// The JSON a YAML tree stands for, for parsers of JSON shapes: plain `true`/`false`,
/// null and numbers are typed; everything else (quoted text included) is text.
fn json_value(node: &Node) -> serde_json::Value {
    use serde_json::Value;
    match &node.kind {
        _ if node.is_null() => Value::Null,
        Kind::Scalar { text, plain: true } => match text.as_str() {
            "true" | "True" | "TRUE" => Value::Bool(true),
            "false" | "False" | "FALSE" => Value::Bool(false),
            t => t
                .parse::<i64>()
                .map(Value::from)
                .ok()
                .or_else(|| {
                    t.parse::<f64>()
                        .ok()
                        .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
                })
                .unwrap_or_else(|| Value::String(t.to_owned())),
        },
        Kind::Scalar { text, .. } => Value::String(text.clone()),
        Kind::Seq(items) => Value::Array(items.iter().map(json_value).collect()),
        Kind::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.scalar().unwrap_or_default().to_owned(), json_value(v)))
                .collect(),
        ),
    }
}

/// The position a JSON path such as `constraint.intersectionItem[0].unionData[1].type` names
/// in `node` (the first segment names `node` itself), or the deepest part of it that exists.
fn locate_path(node: &Node, path: &str) -> Option<Pos> {
    let mut at = node;
    for (i, part) in path.split('.').enumerate() {
        let (key, indexes) = match part.find('[') {
            Some(b) => (&part[..b], &part[b..]),
            None => (part, ""),
        };
        if i > 0 {
            let Kind::Map(entries) = &at.kind else { break };
            let Some((_, v)) = entries.iter().find(|(k, _)| k.scalar() == Some(key)) else {
                break;
            };
            at = v;
        }
        for index in indexes.split(['[', ']']).filter(|s| !s.is_empty()) {
            let (Kind::Seq(items), Ok(n)) = (&at.kind, index.parse::<usize>()) else { break };
            let Some(item) = items.get(n) else { break };
            at = item;
        }
    }
    Some(at.pos())
}

/// The position of the `operate` (or the entry) of the first `unionData` entry named
/// `attribute`, searched depth-first.
fn locate_name(node: &Node, attribute: &str) -> Option<Pos> {
    match &node.kind {
        Kind::Map(entries) => {
            let named = entries
                .iter()
                .any(|(k, v)| k.scalar() == Some("name") && v.scalar() == Some(attribute));
            if named {
                let operate = entries.iter().find(|(k, _)| k.scalar() == Some("operate"));
                return Some(operate.map_or(node.pos(), |(_, v)| v.pos()));
            }
            entries.iter().find_map(|(_, v)| locate_name(v, attribute))
        }
        Kind::Seq(items) => items.iter().find_map(|i| locate_name(i, attribute)),
        Kind::Scalar { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(suggest("scrpit", RawJob::KEYS), Some("script"));
        assert_eq!(suggest("stepz", RawJob::KEYS), None);
        assert_eq!(suggest("Image", RawJob::KEYS), Some("image"));
        assert_eq!(suggest("x", RawJob::KEYS), None);
        assert_eq!(suggest("imgae", RawJob::KEYS), Some("image"));
        assert_eq!(suggest("on", RawJob::KEYS), None);
        assert_eq!(suggest("jobz", RawStage::KEYS), Some("jobs"));
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("scrpit", "script"), 1);
    }
}
