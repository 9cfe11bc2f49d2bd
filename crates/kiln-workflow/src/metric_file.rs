//! Metric rule files (`kind: metric`): the raw form as written (`RawMetricFile`, with `KEYS`
//! and the JSON Schema), reading it with the workflow's [`Reader`], and checking it into a
//! [`MetricRule`]. Like the other compilers, every problem is reported at `file:line:column`
//! in one pass, and a rule is kept only when no error was.

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

use crate::check::Checker;
use crate::diag::{Diagnostic, Severity};
use crate::metric::{MetricFormat, MetricRule};
use crate::raw::{DurationText, Entries, Sp};
use crate::read::Reader;
use crate::service_file::{declared_kind, is_service_name};
use crate::yaml::{self, Kind as NodeKind, Node, Pos};
use crate::{CompiledMetric, Kind};

/// Schema of `kind:` in a metric rule file.
pub struct MetricKindSchema;

impl JsonSchema for MetricKindSchema {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "MetricKind".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "const": "metric", "description": "Marks a metric rule file." })
    }
}

/// Schema of `selector`: Kubernetes' text, or BCS' mapping of labels.
pub struct SelectorSchema;

impl JsonSchema for SelectorSchema {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Selector".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                { "type": "string", "minLength": 1,
                  "description": "A Kubernetes label selector: k=v, k!=v, k in (a,b), k notin (a,b), k, !k, joined by commas (all must hold)." },
                { "type": "object", "minProperties": 1,
                  "additionalProperties": { "type": ["string", "number", "boolean"] },
                  "description": "Labels that must all be equal (BCS' selector)." }
            ]
        })
    }
}

/// Schema of `format`.
pub struct FormatSchema;

impl JsonSchema for FormatSchema {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "MetricFormat".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "enum": MetricFormat::NAMES })
    }
}

/// Schema of a rule's `labels`: Prometheus label names.
pub struct PromLabelsSchema;

impl JsonSchema for PromLabelsSchema {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "PromLabels".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "propertyNames": { "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
                               "not": { "enum": MetricRule::RESERVED_LABELS } },
            "additionalProperties": { "type": ["string", "number", "boolean", "null"] }
        })
    }
}

/// A metric rule file as written.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(title = "Kiln metric rule", deny_unknown_fields)]
pub struct RawMetricFile {
    /// `metric`: this file is a metric scraping rule.
    #[schemars(with = "MetricKindSchema")]
    pub kind: Option<Sp<String>>,
    /// The rule's name: lowercase letters, digits and `-` (at most 63).
    #[schemars(with = "String")]
    pub name: Option<Sp<String>>,
    /// Which services' instances are scraped: a label selector (`app=distcc,team=build`).
    #[schemars(with = "SelectorSchema")]
    pub selector: Option<Sp<String>>,
    /// The instances' port (by name, as in the service's `ports`) that serves the page.
    #[schemars(with = "String")]
    pub port: Option<Sp<String>>,
    /// The page's path (default `/metrics`).
    pub path: Option<Sp<String>>,
    /// Time between scrapes (default 15s, at least 1s).
    #[schemars(with = "Option<DurationText>")]
    pub interval: Option<Sp<String>>,
    /// How long one scrape may take (default 10s, or the interval when shorter).
    #[schemars(with = "Option<DurationText>")]
    pub timeout: Option<Sp<String>>,
    /// `prometheus` (the text exposition format; the default) or `plain` (`name value` lines).
    #[schemars(with = "Option<FormatSchema>")]
    pub format: Option<Sp<MetricFormat>>,
    /// Labels added to every sample (Prometheus label names).
    #[schemars(with = "Option<PromLabelsSchema>")]
    pub labels: Option<Entries<Sp<String>>>,
}

impl RawMetricFile {
    /// The keys of a metric rule file.
    pub const KEYS: &[&str] =
        &["kind", "name", "selector", "port", "path", "interval", "timeout", "format", "labels"];
}

/// The JSON Schema of metric rule files (draft 7).
pub fn json_schema() -> serde_json::Value {
    let mut generator = schemars::generate::SchemaSettings::draft07().into_generator();
    let mut schema = generator.root_schema_for::<RawMetricFile>().to_value();
    if let Some(obj) = schema.as_object_mut() {
        obj.insert("required".into(), serde_json::json!(["kind", "name", "selector", "port"]));
    }
    schema
}

/// What the other compilers say of a `kind: metric` file.
pub(crate) const METRIC_ELSEWHERE: &str = "this is a metric rule file (kind: metric): apply it \
                                           with kiln metric apply";

/// Compiles one metric rule file.
pub(crate) fn compile(file: &str, text: &str) -> CompiledMetric {
    let mut diags = Vec::new();
    let rule = rule(file, text, &mut diags);
    diags.sort_by_key(|d| (d.line, d.column));
    let failed = diags.iter().any(|d| d.severity == Severity::Error);
    CompiledMetric { rule: if failed { None } else { rule }, diagnostics: diags }
}

fn rule(file: &str, text: &str, diags: &mut Vec<Diagnostic>) -> Option<MetricRule> {
    let (root, problems) = yaml::parse(text);
    let had_problems = !problems.is_empty();
    let mut error = |pos: Pos, message: String| {
        diags.push(Diagnostic {
            severity: Severity::Error,
            file: file.to_owned(),
            line: pos.line,
            column: pos.column,
            message,
        });
    };
    for p in problems {
        error(p.pos, p.message);
    }
    let Some(root) = root else {
        if !had_problems {
            error(
                Pos { line: 1, column: 1 },
                "the file is empty: expected a metric rule with kind: metric, name, selector and \
                 port"
                    .into(),
            );
        }
        return None;
    };
    if matches!(root.kind, NodeKind::Map(_)) {
        match declared_kind(&root) {
            Some((_, Ok(Kind::Metric))) => {}
            Some((pos, Ok(other))) => {
                let what = match other {
                    Kind::Service => {
                        "a service file (kind: service): apply it with kiln service apply"
                    }
                    _ => "a workflow file: run it with kiln run or store it as a pipeline",
                };
                error(pos, format!("this is {what}; a metric rule file has kind: metric"));
                return None;
            }
            Some((pos, Err(message))) => {
                error(pos, message);
                return None;
            }
            None => {
                error(
                    root.pos(),
                    "this is not a metric rule file: it has no 'kind: metric' (a file without \
                     kind is a workflow)"
                        .into(),
                );
                return None;
            }
        }
    }
    let raw = Reader::new(file, diags).metric(&root)?;
    Checker::new(file, diags).metric(&raw)
}

impl Reader<'_> {
    /// Reads a metric rule file's tree. `None` when the top level is not a mapping.
    fn metric(&mut self, root: &Node) -> Option<RawMetricFile> {
        let f = self.fields(root, "the metric rule", RawMetricFile::KEYS)?;
        let required = |r: &mut Self, key: &str, hint: &str| match f.get(key) {
            Some(n) => Some(n),
            None => {
                r.error(f.pos(), format!("the metric rule has no '{key}': {hint}"));
                None
            }
        };
        let name =
            required(self, "name", "add name: <lowercase-name>").and_then(|n| self.text(n, "name"));
        let selector = required(
            self,
            "selector",
            "add selector: <labels> such as app=distcc,team=build to pick the services to scrape",
        )
        .and_then(|n| self.selector(n));
        let port = required(
            self,
            "port",
            "add port: <name> naming the instances' port that serves the metrics",
        )
        .and_then(|n| self.text(n, "port"));
        let format = f.get("format").and_then(|n| {
            self.one_of(
                n,
                "format",
                MetricFormat::NAMES,
                &[MetricFormat::Prometheus, MetricFormat::Plain],
            )
        });
        Some(RawMetricFile {
            kind: f.get("kind").and_then(|n| self.text(n, "kind")),
            name,
            selector,
            port,
            path: f.get("path").and_then(|n| self.text(n, "path")),
            interval: f.get("interval").and_then(|n| self.text(n, "interval")),
            timeout: f.get("timeout").and_then(|n| self.text(n, "timeout")),
            format,
            labels: f.get("labels").and_then(|n| self.text_map(n, "labels")),
        })
    }

    /// A selector as text, or BCS' mapping of labels (`{ metric_key: distcc }`) as the same
    /// selector in Kubernetes' text (`metric_key=distcc`).
    fn selector(&mut self, node: &Node) -> Option<Sp<String>> {
        if !matches!(node.kind, NodeKind::Map(_)) {
            return self.text(node, "selector");
        }
        let entries = self.text_map(node, "selector")?;
        let text: Vec<String> =
            entries.0.iter().map(|(k, v)| format!("{}={}", k.value, v.value)).collect();
        Some(Sp::new(text.join(","), node.origin))
    }
}

/// A Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn is_prom_label(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl Checker<'_> {
    /// Checks a read metric rule file; `None` when a required key is missing.
    fn metric(&mut self, raw: &RawMetricFile) -> Option<MetricRule> {
        if let Some(n) = &raw.name
            && !is_service_name(&n.value)
        {
            self.error(
                n.at.pos,
                format!(
                    "name: expected 1 to 63 lowercase letters, digits and -, not at either end, \
                     found '{}'",
                    n.value
                ),
            );
        }
        if let Some(s) = &raw.selector {
            if s.value.trim().is_empty() {
                self.error(
                    s.at.pos,
                    "selector is empty: pick the services to scrape by their labels, such as \
                     app=distcc (every service would be scraped otherwise)",
                );
            } else if let Err(e) = kiln_service::Selector::parse(&s.value) {
                self.error(s.at.pos, format!("selector: {e}"));
            }
        }
        if let Some(p) = &raw.port {
            let ok = !p.value.is_empty()
                && p.value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !ok {
                self.error(
                    p.at.pos,
                    format!(
                        "port: expected the name of the instances' port that serves the metrics \
                         (letters, digits, '_' or '-'), found '{}'",
                        p.value
                    ),
                );
            }
        }
        let path = match &raw.path {
            Some(p) if !p.value.starts_with('/') || p.value.chars().any(char::is_whitespace) => {
                self.error(
                    p.at.pos,
                    format!(
                        "path: expected a path starting with / and without spaces, found '{}'",
                        p.value
                    ),
                );
                None
            }
            Some(p) => Some(p.value.clone()),
            None => Some(MetricRule::DEFAULT_PATH.to_owned()),
        };
        let interval = match &raw.interval {
            Some(i) => self.duration(i, "interval").and_then(|d| {
                if d < MetricRule::MIN_INTERVAL {
                    self.error(
                        i.at.pos,
                        format!(
                            "interval: expected at least {}, found '{}'",
                            humantime::format_duration(MetricRule::MIN_INTERVAL),
                            i.value
                        ),
                    );
                    return None;
                }
                Some(d)
            }),
            None => Some(MetricRule::DEFAULT_INTERVAL),
        };
        let timeout = match &raw.timeout {
            Some(t) => self.duration(t, "timeout"),
            None => interval.map(|i| i.min(MetricRule::DEFAULT_TIMEOUT)),
        };
        if let (Some(i), Some(t), Some(at)) = (interval, timeout, raw.timeout.as_ref())
            && t > i
        {
            self.error(
                at.at.pos,
                format!(
                    "timeout ({}) is longer than interval ({}): a scrape would still run when the \
                     next is due (Prometheus refuses this too)",
                    humantime::format_duration(t),
                    humantime::format_duration(i)
                ),
            );
        }
        let labels = raw.labels.as_ref().map(|l| self.metric_labels(l)).unwrap_or_default();
        Some(MetricRule {
            name: raw.name.as_ref()?.value.clone(),
            selector: raw.selector.as_ref()?.value.trim().to_owned(),
            port: raw.port.as_ref()?.value.clone(),
            path: path?,
            interval: interval?,
            timeout: timeout.filter(|t| interval.is_some_and(|i| *t <= i))?,
            format: raw.format.as_ref().map_or(MetricFormat::Prometheus, |f| f.value),
            labels,
        })
    }

    fn metric_labels(&mut self, raw: &Entries<Sp<String>>) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (key, value) in &raw.0 {
            let k = key.value.as_str();
            if !is_prom_label(k) {
                self.error(
                    key.at.pos,
                    format!(
                        "label '{k}': expected a Prometheus label name (letters, digits and _, \
                         not starting with a digit)"
                    ),
                );
            } else if k.starts_with("__") {
                self.error(
                    key.at.pos,
                    format!("label '{k}': names starting with __ are Prometheus' own"),
                );
            } else if MetricRule::RESERVED_LABELS.contains(&k) {
                self.error(
                    key.at.pos,
                    format!(
                        "label '{k}' is set by the scraper on every sample; the reserved names are \
                         {}",
                        MetricRule::RESERVED_LABELS.join(", ")
                    ),
                );
            }
            out.insert(k.to_owned(), value.value.clone());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> std::time::Duration {
        std::time::Duration::from_secs(n)
    }

    #[test]
    fn keys_match_schema() {
        let schema = json_schema();
        let mut keys: Vec<&str> = schema["properties"]
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        keys.sort_unstable();
        let mut want = RawMetricFile::KEYS.to_vec();
        want.sort_unstable();
        assert_eq!(keys, want);
    }

    #[test]
    fn defaults() {
        let c = compile("m.yml", "kind: metric\nname: m\nselector: app=x\nport: stats\n");
        let Some(rule) = c.rule else { panic!("{:?}", c.diagnostics) };
        assert_eq!(rule.path, "/metrics");
        assert_eq!((rule.interval, rule.timeout), (secs(15), secs(10)));
        assert_eq!(rule.format, MetricFormat::Prometheus);
        let c = compile("m.yml", "kind: metric\nname: m\nselector: app=x\nport: p\ninterval: 2s\n");
        assert_eq!(c.rule.map(|r| r.timeout), Some(secs(2)), "the timeout is at most the interval");
    }
}
