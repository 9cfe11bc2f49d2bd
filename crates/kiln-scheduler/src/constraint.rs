//! The constraint language: an AND of OR-groups of `(attribute, operator, value)`, as BCS's
//! `intersectionItem` of `unionData`, with Marathon's operators.
//!
//! Semantics (also in docs/scheduling.md):
//! - LIKE / UNLIKE take a regular expression (Rust `regex` syntax) anchored to the whole
//!   value, as Marathon does: `shenzhen` matches `shenzhen`, not `shenzhen-2`. A number
//!   attribute is matched in its canonical text (`12`, `12.5`); a set matches when any item
//!   does. A node without the attribute fails LIKE and passes UNLIKE.
//! - GREATER / LESS compare numbers (a text attribute that parses as a number counts); a
//!   missing or non-numeric attribute fails.
//! - EXISTS passes when the node has the attribute.
//! - UNIQUE, CLUSTER (with no value), GROUP_BY and MAX_PER look at the placements already
//!   made for the task's group; a node without the attribute fails them.
//! - `hostname` and `ip` are attributes of every node unless it sets them itself.

use std::fmt;
use std::sync::Arc;

use regex::Regex;

use crate::model::{AttrValue, format_number};

/// One operator with its value.
#[derive(Debug, Clone)]
pub enum Op {
    /// The value matches the anchored regex.
    Like(Pattern),
    /// The value does not match the anchored regex (a missing attribute passes).
    Unlike(Pattern),
    /// No two tasks of the group on nodes with the same value.
    Unique,
    /// With a value: the node's value equals it. Without: every task of the group on nodes
    /// with the same value as the first one placed.
    Cluster(Option<String>),
    /// Spread the group evenly over `n` values: a node is taken only if its value has no
    /// more of the group's tasks than the least used of the `n` values.
    GroupBy(u32),
    /// At most `n` tasks of the group per value.
    MaxPer(u32),
    /// The value is a number greater than this.
    Greater(f64),
    /// The value is a number less than this.
    Less(f64),
    /// The node has the attribute.
    Exists,
}

impl PartialEq for Op {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

/// A compiled LIKE/UNLIKE pattern; compares by its text.
#[derive(Debug, Clone)]
pub struct Pattern {
    text: String,
    regex: Regex,
}

impl Pattern {
    /// Compiles `text` anchored to the whole value.
    pub fn new(text: &str) -> Result<Pattern, regex::Error> {
        let regex =
            regex::RegexBuilder::new(&format!("^(?:{text})$")).size_limit(1 << 20).build()?;
        Ok(Pattern { text: text.to_string(), regex })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the whole of `value` matches.
    pub fn is_match(&self, value: &str) -> bool {
        self.regex.is_match(value)
    }
}

/// One `(attribute, operator, value)` test.
#[derive(Debug, Clone, PartialEq)]
pub struct Predicate {
    /// The node attribute tested.
    pub attribute: String,
    /// The operator and its value.
    pub op: Op,
}

/// The operator names, as written (`GROUPBY` and `MAXPER`, BCS's spelling, are accepted too,
/// and case does not matter).
pub const OPERATORS: [&str; 9] =
    ["LIKE", "UNLIKE", "UNIQUE", "CLUSTER", "GROUP_BY", "MAX_PER", "GREATER", "LESS", "EXISTS"];

impl Predicate {
    /// Parses one test; `value` is the text written (numbers as text), `None` when absent.
    /// Errors name the attribute, the operator, the value and what was expected.
    pub fn new(
        attribute: &str,
        operator: &str,
        value: Option<&str>,
    ) -> Result<Predicate, ConstraintError> {
        let attribute = attribute.trim();
        if attribute.is_empty() {
            return Err(ConstraintError::EmptyAttribute { operator: operator.to_string() });
        }
        let upper = operator.trim().to_ascii_uppercase();
        let name = match upper.as_str() {
            "GROUPBY" => "GROUP_BY",
            "MAXPER" => "MAX_PER",
            other => other,
        };
        let err_ctx = |expected: &'static str| ConstraintError::Value {
            attribute: attribute.to_string(),
            operator: name.to_string(),
            value: value.map(str::to_string),
            expected,
        };
        let no_value = |op: Op| match value {
            None => Ok(op),
            Some(_) => Err(err_ctx("no value")),
        };
        let pattern = |v: Option<&str>| -> Result<Pattern, ConstraintError> {
            let v = v.ok_or_else(|| err_ctx("a regular expression such as 'shenzhen|shanghai'"))?;
            Pattern::new(v).map_err(|e| ConstraintError::Regex {
                attribute: attribute.to_string(),
                operator: name.to_string(),
                value: v.to_string(),
                error: first_line(&e.to_string()),
            })
        };
        let count = || -> Result<u32, ConstraintError> {
            value
                .and_then(|v| v.trim().parse::<u32>().ok())
                .filter(|n| *n >= 1)
                .ok_or_else(|| err_ctx("a whole number of at least 1"))
        };
        let number = || -> Result<f64, ConstraintError> {
            value
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|n| n.is_finite())
                .ok_or_else(|| err_ctx("a number"))
        };
        let op = match name {
            "LIKE" => Op::Like(pattern(value)?),
            "UNLIKE" => Op::Unlike(pattern(value)?),
            "UNIQUE" => no_value(Op::Unique)?,
            "CLUSTER" => Op::Cluster(value.map(str::to_string)),
            "GROUP_BY" => Op::GroupBy(count()?),
            "MAX_PER" => Op::MaxPer(count()?),
            "GREATER" => Op::Greater(number()?),
            "LESS" => Op::Less(number()?),
            "EXISTS" => no_value(Op::Exists)?,
            _ => {
                return Err(ConstraintError::Operator {
                    attribute: attribute.to_string(),
                    operator: operator.to_string(),
                });
            }
        };
        Ok(Predicate { attribute: attribute.to_string(), op })
    }

    /// Whether the test depends only on the node (not on the group's placements).
    pub fn is_static(&self) -> bool {
        matches!(
            self.op,
            Op::Like(_)
                | Op::Unlike(_)
                | Op::Greater(_)
                | Op::Less(_)
                | Op::Exists
                | Op::Cluster(Some(_))
        )
    }

    /// Evaluates a static test on a node's value of the attribute (`None`: missing).
    /// Group tests (`!is_static()`) answer `true` here; placement checks them.
    pub fn matches_value(&self, value: Option<&AttrValue>) -> bool {
        match (&self.op, value) {
            (Op::Like(p), Some(v)) => like(p, v),
            (Op::Like(_), None) => false,
            (Op::Unlike(p), Some(v)) => !like(p, v),
            (Op::Unlike(_), None) => true,
            (Op::Greater(x), Some(v)) => v.as_number().is_some_and(|n| n > *x),
            (Op::Less(x), Some(v)) => v.as_number().is_some_and(|n| n < *x),
            (Op::Exists, v) => v.is_some(),
            (Op::Cluster(Some(x)), Some(AttrValue::Set(items))) => items.contains(x),
            (Op::Cluster(Some(x)), Some(v)) => v.canonical() == *x,
            (Op::Cluster(Some(_)), None) => false,
            (Op::Greater(_) | Op::Less(_), None) => false,
            (Op::Unique | Op::Cluster(None) | Op::GroupBy(_) | Op::MaxPer(_), _) => true,
        }
    }
}

fn like(p: &Pattern, v: &AttrValue) -> bool {
    match v {
        AttrValue::Text(t) => p.is_match(t),
        AttrValue::Number(n) => p.is_match(&format_number(*n)),
        AttrValue::Set(items) => items.iter().any(|i| p.is_match(i)),
    }
}

fn first_line(s: &str) -> String {
    // regex errors are multi-line with a caret diagram; the last line says what is wrong.
    let last = s.lines().rfind(|l| !l.trim().is_empty()).unwrap_or(s).trim();
    last.strip_prefix("error: ").unwrap_or(last).to_string()
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Like(p) => write!(f, "LIKE {}", p.text),
            Op::Unlike(p) => write!(f, "UNLIKE {}", p.text),
            Op::Unique => f.write_str("UNIQUE"),
            Op::Cluster(None) => f.write_str("CLUSTER"),
            Op::Cluster(Some(v)) => write!(f, "CLUSTER {v}"),
            Op::GroupBy(n) => write!(f, "GROUP_BY {n}"),
            Op::MaxPer(n) => write!(f, "MAX_PER {n}"),
            Op::Greater(n) => write!(f, "GREATER {}", format_number(*n)),
            Op::Less(n) => write!(f, "LESS {}", format_number(*n)),
            Op::Exists => f.write_str("EXISTS"),
        }
    }
}

impl fmt::Display for Predicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.attribute, self.op)
    }
}

/// An AND of OR-groups of predicates: a node is feasible when every group has a predicate
/// that holds on it. Empty: every node. Cheap to clone (shared).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Constraints {
    groups: Arc<[Vec<Predicate>]>,
    key: Arc<str>,
}

impl Constraints {
    /// The AND of `groups`, each an OR of its predicates. An empty group is an error (it
    /// could never hold).
    pub fn new(groups: Vec<Vec<Predicate>>) -> Result<Constraints, ConstraintError> {
        if let Some(i) = groups.iter().position(Vec::is_empty) {
            return Err(ConstraintError::EmptyGroup { index: i });
        }
        let mut c = Constraints { groups: groups.into(), key: Arc::from("") };
        c.key = c.to_string().into();
        Ok(c)
    }

    /// The OR-groups.
    pub fn groups(&self) -> &[Vec<Predicate>] {
        &self.groups
    }

    /// No constraint at all.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Whether any predicate depends on the group's placements.
    pub fn has_group_terms(&self) -> bool {
        self.groups.iter().flatten().any(|p| !p.is_static())
    }

    /// A canonical text (the `Display` form), equal for equal constraints; used as a cache key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Parses Kiln's JSON shape (what the workflow's `constraints:` holds): a list whose
    /// items are all required; each item is one test, written `["city", "LIKE", "sh.*"]`
    /// (Marathon's form) or `{"attribute": "city", "operator": "LIKE", "value": "sh.*"}`, or an
    /// OR of tests, `{"any": [test, ...]}`. Numbers may be written as JSON numbers.
    pub fn from_json(value: &serde_json::Value) -> Result<Constraints, ConstraintError> {
        let items =
            value.as_array().ok_or_else(|| shape("constraints", "a list of constraints"))?;
        let mut groups = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let at = format!("constraints[{i}]");
            if let Some(any) = item.as_object().and_then(|o| o.get("any")) {
                if item.as_object().is_some_and(|o| o.len() > 1) {
                    return Err(shape(&at, "only the key 'any' in an OR-group"));
                }
                let alts =
                    any.as_array().ok_or_else(|| shape(&format!("{at}.any"), "a list of tests"))?;
                let mut group = Vec::new();
                for (j, alt) in alts.iter().enumerate() {
                    group.push(json_predicate(alt, &format!("{at}.any[{j}]"))?);
                }
                groups.push(group);
            } else {
                groups.push(vec![json_predicate(item, &at)?]);
            }
        }
        Constraints::new(groups)
    }

    /// Parses BCS's constraint object (seed 000's `application.json`):
    /// `{"intersectionItem": [{"unionData": [{"name": "city", "operate": "LIKE", "type": 3,
    /// "text": {"value": "shenzhen"}}]}]}`. `type` says which value field is read: 1 scalar
    /// (`{"value": 3}`), 3 text (`{"value": "..."}`), 4 set (`{"item": ["a", "b"]}`: for LIKE
    /// and UNLIKE any item, for CLUSTER each item an alternative, for GROUP_BY the number of
    /// items). `GROUPBY` and `MAXPER` are BCS's spellings; `EXCLUDE` and `TOLERATION` are
    /// refused with a reason. A `nodeSelector` map is read as `key LIKE value` per entry,
    /// with the value escaped.
    pub fn from_bcs(value: &serde_json::Value) -> Result<Constraints, ConstraintError> {
        let obj = value
            .as_object()
            .ok_or_else(|| shape("constraint", "an object with 'intersectionItem'"))?;
        let mut groups = Vec::new();
        if let Some(items) = obj.get("intersectionItem") {
            let items =
                items.as_array().ok_or_else(|| shape("constraint.intersectionItem", "a list"))?;
            for (i, item) in items.iter().enumerate() {
                let at = format!("constraint.intersectionItem[{i}].unionData");
                let union = item
                    .get("unionData")
                    .and_then(|u| u.as_array())
                    .ok_or_else(|| shape(&at, "a list of {name, operate, type, ...}"))?;
                let mut group = Vec::new();
                for (j, data) in union.iter().enumerate() {
                    group.extend(bcs_predicate(data, &format!("{at}[{j}]"))?);
                }
                groups.push(group);
            }
        }
        if let Some(sel) = obj.get("nodeSelector").filter(|v| !v.is_null()) {
            let sel =
                sel.as_object().ok_or_else(|| shape("constraint.nodeSelector", "a map of text"))?;
            for (k, v) in sel {
                let v = v
                    .as_str()
                    .ok_or_else(|| shape(&format!("constraint.nodeSelector.{k}"), "text"))?;
                groups.push(vec![Predicate::new(k, "LIKE", Some(&regex::escape(v)))?]);
            }
        }
        Constraints::new(groups)
    }
}

fn shape(at: &str, expected: &str) -> ConstraintError {
    ConstraintError::Shape { at: at.to_string(), expected: expected.to_string() }
}

fn json_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn json_predicate(v: &serde_json::Value, at: &str) -> Result<Predicate, ConstraintError> {
    let expected =
        "[attribute, OPERATOR] or [attribute, OPERATOR, value], or {attribute, operator, value}";
    let (attr, op, value) = match v {
        serde_json::Value::Array(a) if (2..=3).contains(&a.len()) => {
            let attr = a[0].as_str().ok_or_else(|| shape(at, expected))?;
            let op = a[1].as_str().ok_or_else(|| shape(at, expected))?;
            let value = match a.get(2) {
                Some(v) => Some(json_text(v).ok_or_else(|| shape(at, expected))?),
                None => None,
            };
            (attr.to_string(), op.to_string(), value)
        }
        serde_json::Value::Object(o) => {
            if let Some(k) =
                o.keys().find(|k| !["attribute", "operator", "value"].contains(&k.as_str()))
            {
                return Err(shape(&format!("{at}.{k}"), "only attribute, operator and value"));
            }
            let attr = o
                .get("attribute")
                .and_then(|v| v.as_str())
                .ok_or_else(|| shape(&format!("{at}.attribute"), "text"))?;
            let op = o
                .get("operator")
                .and_then(|v| v.as_str())
                .ok_or_else(|| shape(&format!("{at}.operator"), "text"))?;
            let value = match o.get("value") {
                None | Some(serde_json::Value::Null) => None,
                Some(v) => Some(
                    json_text(v)
                        .ok_or_else(|| shape(&format!("{at}.value"), "text or a number"))?,
                ),
            };
            (attr.to_string(), op.to_string(), value)
        }
        _ => return Err(shape(at, expected)),
    };
    Predicate::new(&attr, &op, value.as_deref())
}

/// One BCS `unionData` entry; a set value under CLUSTER gives one predicate per item.
fn bcs_predicate(v: &serde_json::Value, at: &str) -> Result<Vec<Predicate>, ConstraintError> {
    let name = v
        .get("name")
        .and_then(|n| n.as_str())
        .ok_or_else(|| shape(&format!("{at}.name"), "text"))?;
    let operate = v
        .get("operate")
        .and_then(|n| n.as_str())
        .ok_or_else(|| shape(&format!("{at}.operate"), "text"))?;
    let upper = operate.to_ascii_uppercase();
    if upper == "EXCLUDE" || upper == "TOLERATION" {
        return Err(ConstraintError::Unsupported {
            attribute: name.to_string(),
            operator: upper,
            why: "it refers to other applications or to taints, which Kiln does not model; use UNLIKE or MAX_PER",
        });
    }
    let ty = v.get("type").and_then(|t| t.as_u64());
    let field =
        |key: &str, inner: &str| v.get(key).and_then(|o| o.get(inner)).filter(|x| !x.is_null());
    let needs_value = !matches!(upper.as_str(), "UNIQUE" | "EXISTS");
    let value: Option<BcsValue> = match ty {
        Some(1) => field("scalar", "value")
            .map(|s| {
                s.as_f64()
                    .map(|n| BcsValue::One(format_number(n)))
                    .ok_or_else(|| shape(&format!("{at}.scalar.value"), "a number"))
            })
            .transpose()?,
        Some(3) => field("text", "value")
            .map(|s| {
                s.as_str()
                    .map(|t| BcsValue::One(t.to_string()))
                    .ok_or_else(|| shape(&format!("{at}.text.value"), "text"))
            })
            .transpose()?,
        Some(4) => field("set", "item")
            .map(|s| {
                s.as_array()
                    .and_then(|a| {
                        a.iter().map(|i| i.as_str().map(str::to_string)).collect::<Option<Vec<_>>>()
                    })
                    .map(BcsValue::Set)
                    .ok_or_else(|| shape(&format!("{at}.set.item"), "a list of text"))
            })
            .transpose()?,
        Some(0) | None if !needs_value => None,
        Some(2) => {
            return Err(shape(
                &format!("{at}.type"),
                "1 (scalar), 3 (text) or 4 (set); 2 (ranges) is not supported in constraints",
            ));
        }
        _ => return Err(shape(&format!("{at}.type"), "1 (scalar), 3 (text) or 4 (set)")),
    };
    match (upper.as_str(), value) {
        ("CLUSTER", Some(BcsValue::Set(items))) => {
            items.iter().map(|i| Predicate::new(name, "CLUSTER", Some(i))).collect()
        }
        ("LIKE" | "UNLIKE", Some(BcsValue::Set(items))) => {
            let alt = items.iter().map(|i| format!("(?:{i})")).collect::<Vec<_>>().join("|");
            Ok(vec![Predicate::new(name, operate, Some(&alt))?])
        }
        ("GROUPBY" | "GROUP_BY", Some(BcsValue::Set(items))) => {
            Ok(vec![Predicate::new(name, operate, Some(&items.len().to_string()))?])
        }
        (_, Some(BcsValue::Set(_))) => {
            Err(shape(&format!("{at}.type"), "a scalar or text value for this operator"))
        }
        (_, Some(BcsValue::One(t))) => Ok(vec![Predicate::new(name, operate, Some(&t))?]),
        (_, None) => Ok(vec![Predicate::new(name, operate, None)?]),
    }
}

enum BcsValue {
    One(String),
    Set(Vec<String>),
}

impl fmt::Display for Constraints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, g) in self.groups.iter().enumerate() {
            if i > 0 {
                f.write_str(" AND ")?;
            }
            f.write_str(&group_text(g))?;
        }
        Ok(())
    }
}

/// `city LIKE sz` for a group of one, `(a LIKE x OR b LIKE y)` otherwise.
pub(crate) fn group_text(g: &[Predicate]) -> String {
    if g.len() == 1 {
        g[0].to_string()
    } else {
        let parts: Vec<String> = g.iter().map(Predicate::to_string).collect();
        format!("({})", parts.join(" OR "))
    }
}

/// A constraint that can not be parsed; each names what was written and what was expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConstraintError {
    /// No attribute name.
    #[error("constraint with operator '{operator}' has no attribute name")]
    EmptyAttribute {
        /// The operator written.
        operator: String,
    },
    /// An operator not in [`OPERATORS`].
    #[error(
        "constraint on '{attribute}': unknown operator '{operator}', expected one of LIKE, UNLIKE, UNIQUE, CLUSTER, GROUP_BY, MAX_PER, GREATER, LESS, EXISTS"
    )]
    Operator {
        /// The attribute.
        attribute: String,
        /// The operator written.
        operator: String,
    },
    /// A missing, extra or malformed value.
    #[error("constraint '{attribute} {operator}': {}, expected {expected}", match value { Some(v) => format!("value '{v}'"), None => "no value".to_string() })]
    Value {
        /// The attribute.
        attribute: String,
        /// The operator.
        operator: String,
        /// The value written, if any.
        value: Option<String>,
        /// What the operator takes.
        expected: &'static str,
    },
    /// A LIKE/UNLIKE value that is not a valid regular expression.
    #[error(
        "constraint '{attribute} {operator}': '{value}' is not a valid regular expression: {error}"
    )]
    Regex {
        /// The attribute.
        attribute: String,
        /// The operator.
        operator: String,
        /// The pattern written.
        value: String,
        /// The regex compiler's complaint.
        error: String,
    },
    /// A BCS operator Kiln does not implement.
    #[error("constraint '{attribute} {operator}' is not supported: {why}")]
    Unsupported {
        /// The attribute.
        attribute: String,
        /// The operator.
        operator: String,
        /// Why, and what to use instead.
        why: &'static str,
    },
    /// An OR-group with no test.
    #[error("constraint group {index} is empty: an OR of nothing never holds")]
    EmptyGroup {
        /// Its position.
        index: usize,
    },
    /// JSON of the wrong shape.
    #[error("{at}: expected {expected}")]
    Shape {
        /// Where, as a path (`constraints[2].any[0]`).
        at: String,
        /// What was expected there.
        expected: String,
    },
}
