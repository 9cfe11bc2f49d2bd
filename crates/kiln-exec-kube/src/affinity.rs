//! Pure translation of a job's `constraints:` into a pod's `nodeSelector` and required node
//! affinity, and the refusal (naming the constraint and why) of what does not translate. No
//! I/O here.
//!
//! | constraint | Kubernetes |
//! |---|---|
//! | `[a, LIKE, v]`, `[a, CLUSTER, v]` alone in its group | `nodeSelector: {a: v}` |
//! | `[a, LIKE, "v1\|v2"]` (literal alternatives) | `a In [v1, v2]` |
//! | `[a, UNLIKE, "v1\|v2"]` | `a NotIn [v1, v2]` (a node without `a` passes, as in Kiln) |
//! | `[a, EXISTS]` | `a Exists` |
//! | `[a, GREATER, n]`, `[a, LESS, n]` (whole `n`) | `a Gt n`, `a Lt n` |
//! | an OR-group (`any:`) | one `nodeSelectorTerm` per combination (terms are ORed) |
//!
//! The attribute `hostname` is the node label `kubernetes.io/hostname`. Refused: `ip` (no node
//! label holds it), attributes that are not label keys, regular expressions beyond literal
//! alternatives (`\.` is a literal dot), a fractional `GREATER`/`LESS`, the group operators
//! (`UNIQUE`, `CLUSTER` without a value, `GROUP_BY`, `MAX_PER`: they depend on where the
//! group's other tasks run), and constraints that contradict the agent's `--node-selector`
//! or each other.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
};
use kiln_exec::ConstraintTest;

use crate::pod::{is_label_key, is_label_value};

/// At most this many `nodeSelectorTerms` (combinations of OR-groups) are made.
pub const MAX_TERMS: usize = 16;

/// Where a pod may run: its node selector and required node affinity.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodePlacement {
    /// Labels every node must carry (the agent's `--node-selector` and single equalities).
    pub node_selector: BTreeMap<String, String>,
    /// Required node affinity for the rest; `None` when the selector says it all.
    pub affinity: Option<Affinity>,
}

/// A constraint that does not translate: which, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the constraint {test} ({why})")]
pub struct Untranslatable {
    /// The test as written (`[zone, UNIQUE]`).
    pub test: String,
    /// Why it does not translate.
    pub why: String,
}

/// One test, translated.
#[derive(Debug, Clone, PartialEq)]
enum Req {
    /// The label equals this value.
    Equal(String, String),
    /// Any other requirement.
    Expr(NodeSelectorRequirement),
}

impl Req {
    fn expr(self) -> NodeSelectorRequirement {
        match self {
            Req::Equal(key, value) => requirement(&key, "In", Some(vec![value])),
            Req::Expr(e) => e,
        }
    }
}

fn requirement(key: &str, operator: &str, values: Option<Vec<String>>) -> NodeSelectorRequirement {
    NodeSelectorRequirement { key: key.to_string(), operator: operator.to_string(), values }
}

/// The node label a Kiln attribute names.
fn label_key(test: &ConstraintTest) -> Result<String, Untranslatable> {
    let refuse = |why: &str| Untranslatable { test: test.to_string(), why: why.to_string() };
    match test.attribute.as_str() {
        "hostname" => Ok("kubernetes.io/hostname".to_string()),
        "ip" => Err(refuse("no node label holds a node's IP address")),
        key if is_label_key(key) => Ok(key.to_string()),
        _ => Err(refuse(
            "the attribute is not a Kubernetes label key (letters, digits, `-`, `_`, `.`, an \
             optional `prefix/`)",
        )),
    }
}

/// The literal values a LIKE/UNLIKE pattern is an alternation of (`a|b\.c`), or why not.
fn literal_values(pattern: &str) -> Result<Vec<String>, String> {
    let mut values = Vec::new();
    for alternative in pattern.split('|') {
        let mut value = String::new();
        let mut chars = alternative.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(e @ ('.' | '-')) => value.push(e),
                    _ => return Err(format!("`{pattern}` is a regular expression")),
                },
                c if c.is_ascii_alphanumeric() || c == '-' || c == '_' => value.push(c),
                '.' => {
                    return Err(format!(
                        "`{pattern}` is a regular expression: `.` matches any character; write \
                         `\\.` for a dot"
                    ));
                }
                _ => {
                    return Err(format!(
                        "`{pattern}` is a regular expression, not a list of values `a|b`"
                    ));
                }
            }
        }
        if value.is_empty() || !is_label_value(&value) {
            return Err(format!("`{value}` in `{pattern}` is not a label value"));
        }
        values.push(value);
    }
    Ok(values)
}

/// Translates one test.
fn translate_test(test: &ConstraintTest) -> Result<Req, Untranslatable> {
    let refuse = |why: String| Untranslatable { test: test.to_string(), why };
    let key = label_key(test)?;
    let value = test.value.as_deref().unwrap_or_default();
    match test.operator.to_ascii_uppercase().as_str() {
        "LIKE" => {
            let mut values = literal_values(value).map_err(refuse)?;
            if values.len() == 1 {
                Ok(Req::Equal(key, values.remove(0)))
            } else {
                Ok(Req::Expr(requirement(&key, "In", Some(values))))
            }
        }
        "UNLIKE" => {
            let values = literal_values(value).map_err(refuse)?;
            Ok(Req::Expr(requirement(&key, "NotIn", Some(values))))
        }
        "CLUSTER" if test.value.is_some() => {
            if !is_label_value(value) {
                return Err(refuse(format!("`{value}` is not a label value")));
            }
            Ok(Req::Equal(key, value.to_string()))
        }
        "EXISTS" => Ok(Req::Expr(requirement(&key, "Exists", None))),
        op @ ("GREATER" | "LESS") => {
            let n = value.trim().parse::<i64>().map_err(|_| {
                refuse(format!(
                    "Kubernetes compares labels with whole numbers only (`{}` takes one \
                     integer)",
                    if op == "GREATER" { "Gt" } else { "Lt" }
                ))
            })?;
            let operator = if op == "GREATER" { "Gt" } else { "Lt" };
            Ok(Req::Expr(requirement(&key, operator, Some(vec![n.to_string()]))))
        }
        "UNIQUE" | "CLUSTER" | "GROUP_BY" | "GROUPBY" | "MAX_PER" | "MAXPER" => Err(refuse(
            "it depends on where the group's other attempts run; the executor makes no pod \
             anti-affinity or topology spread: run such jobs on a Docker or process agent"
                .to_string(),
        )),
        other => Err(refuse(format!("unknown operator `{other}`"))),
    }
}

/// The node selector and affinity of a pod: the agent's `base` selector plus the job's
/// `constraints` (an AND of OR-groups); an error naming the first constraint that does not
/// translate, or contradicts the selector.
pub fn translate(
    base: &BTreeMap<String, String>,
    constraints: &[Vec<ConstraintTest>],
) -> Result<NodePlacement, Untranslatable> {
    let mut node_selector = base.clone();
    let mut groups: Vec<(&[ConstraintTest], Vec<NodeSelectorRequirement>)> = Vec::new();
    for group in constraints {
        let reqs = group.iter().map(translate_test).collect::<Result<Vec<_>, _>>()?;
        match reqs.as_slice() {
            [Req::Equal(key, value)] => match node_selector.get(key) {
                Some(have) if have != value => {
                    let why = if base.get(key) == Some(have) {
                        format!("the agent's --node-selector sets {key}={have}")
                    } else {
                        format!("another constraint asks {key}={have}")
                    };
                    return Err(Untranslatable {
                        test: group[0].to_string(),
                        why: format!("{why}: no node can match both"),
                    });
                }
                _ => {
                    node_selector.insert(key.clone(), value.clone());
                }
            },
            [] => {}
            _ => groups.push((group, reqs.into_iter().map(Req::expr).collect())),
        }
    }
    if groups.is_empty() {
        return Ok(NodePlacement { node_selector, affinity: None });
    }
    // AND of ORs into an OR of ANDs: one term per combination.
    let mut terms: Vec<Vec<NodeSelectorRequirement>> = vec![Vec::new()];
    for (group, reqs) in &groups {
        if terms.len() * reqs.len() > MAX_TERMS {
            let written: Vec<String> = group.iter().map(ToString::to_string).collect();
            return Err(Untranslatable {
                test: format!("any: [{}]", written.join(", ")),
                why: format!(
                    "the OR-groups combine into more than {MAX_TERMS} node selector terms"
                ),
            });
        }
        terms = terms
            .iter()
            .flat_map(|term| {
                reqs.iter().map(move |r| {
                    let mut t = term.clone();
                    t.push(r.clone());
                    t
                })
            })
            .collect();
    }
    let terms = terms
        .into_iter()
        .map(|t| NodeSelectorTerm { match_expressions: Some(t), match_fields: None })
        .collect();
    let affinity = Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: terms,
            }),
            preferred_during_scheduling_ignored_during_execution: None,
        }),
        ..Default::default()
    };
    Ok(NodePlacement { node_selector, affinity: Some(affinity) })
}

/// Whether a node with `labels` satisfies `selector` and the required node affinity of
/// `affinity` (Kubernetes' rules: the selector's labels all equal; any one term whose
/// expressions all hold). Used by the fake API server's scheduler.
pub fn node_matches(
    labels: &BTreeMap<String, String>,
    selector: Option<&BTreeMap<String, String>>,
    affinity: Option<&Affinity>,
) -> bool {
    let selected = selector.into_iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    let required = affinity
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref());
    let affine = required.is_none_or(|r| {
        r.node_selector_terms.iter().any(|term| {
            term.match_expressions.iter().flatten().all(|e| expression_holds(labels, e))
        })
    });
    selected && affine
}

fn expression_holds(labels: &BTreeMap<String, String>, e: &NodeSelectorRequirement) -> bool {
    let value = labels.get(&e.key);
    let values = e.values.as_deref().unwrap_or_default();
    let number = |v: &String| v.parse::<i64>().ok();
    match e.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => match (value.and_then(number), values.first().and_then(number)) {
            (Some(v), Some(n)) => v > n,
            _ => false,
        },
        "Lt" => match (value.and_then(number), values.first().and_then(number)) {
            (Some(v), Some(n)) => v < n,
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(attribute: &str, operator: &str, value: Option<&str>) -> ConstraintTest {
        ConstraintTest {
            attribute: attribute.to_string(),
            operator: operator.to_string(),
            value: value.map(str::to_string),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn terms(p: &NodePlacement) -> Vec<Vec<(String, String, Vec<String>)>> {
        let Some(a) = &p.affinity else { return Vec::new() };
        let req = a.node_affinity.as_ref().unwrap();
        let sel = req.required_during_scheduling_ignored_during_execution.as_ref().unwrap();
        sel.node_selector_terms
            .iter()
            .map(|term| {
                term.match_expressions
                    .iter()
                    .flatten()
                    .map(|e| {
                        (e.key.clone(), e.operator.clone(), e.values.clone().unwrap_or_default())
                    })
                    .collect()
            })
            .collect()
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn single_equalities_become_the_node_selector() {
        let base = labels(&[("pool", "ci")]);
        let p = translate(
            &base,
            &[vec![t("disktype", "LIKE", Some("ssd"))], vec![t("zone", "CLUSTER", Some("a"))]],
        )
        .unwrap();
        assert_eq!(p.node_selector, labels(&[("pool", "ci"), ("disktype", "ssd"), ("zone", "a")]));
        assert_eq!(p.affinity, None);
        assert_eq!(
            translate(&base, &[vec![t("hostname", "LIKE", Some("node-1"))]]).unwrap().node_selector
                ["kubernetes.io/hostname"],
            "node-1"
        );
    }

    #[test]
    fn alternatives_negations_existence_and_numbers_become_affinity() {
        let p = translate(
            &BTreeMap::new(),
            &[
                vec![t("zone", "LIKE", Some("a|b"))],
                vec![t("arch", "UNLIKE", Some("arm64"))],
                vec![t("gpu", "EXISTS", None)],
                vec![t("cores", "GREATER", Some("8"))],
                vec![t("kiln.dev/gen", "LESS", Some("3"))],
            ],
        )
        .unwrap();
        assert!(p.node_selector.is_empty());
        assert_eq!(
            terms(&p),
            vec![vec![
                ("zone".into(), "In".into(), s(&["a", "b"])),
                ("arch".into(), "NotIn".into(), s(&["arm64"])),
                ("gpu".into(), "Exists".into(), vec![]),
                ("cores".into(), "Gt".into(), s(&["8"])),
                ("kiln.dev/gen".into(), "Lt".into(), s(&["3"])),
            ]]
        );
    }

    #[test]
    fn or_groups_multiply_into_terms() {
        let p = translate(
            &BTreeMap::new(),
            &[
                vec![t("storage", "LIKE", Some("ssd")), t("cores", "GREATER", Some("32"))],
                vec![t("zone", "LIKE", Some("a")), t("zone", "LIKE", Some("b"))],
                vec![t("pool", "LIKE", Some("ci"))],
            ],
        )
        .unwrap();
        assert_eq!(p.node_selector, labels(&[("pool", "ci")]));
        let got = terms(&p);
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(
            got[0],
            vec![
                ("storage".to_string(), "In".to_string(), s(&["ssd"])),
                ("zone".to_string(), "In".to_string(), s(&["a"]))
            ]
        );
        assert_eq!(got[3][0].1, "Gt");
        assert_eq!(got[3][1].2, s(&["b"]));
    }

    #[test]
    fn what_does_not_translate_is_refused_naming_the_constraint() {
        let refused = |groups: Vec<Vec<ConstraintTest>>, test: &str, needle: &str| {
            let e = translate(&labels(&[("pool", "ci")]), &groups).unwrap_err();
            assert_eq!(e.test, test);
            assert!(e.why.contains(needle), "{e}");
            assert!(e.to_string().starts_with(&format!("the constraint {test} (")), "{e}");
        };
        refused(vec![vec![t("hostname", "UNIQUE", None)]], "[hostname, UNIQUE]", "anti-affinity");
        refused(
            vec![vec![t("rack", "GROUP_BY", Some("3"))]],
            "[rack, GROUP_BY, 3]",
            "other attempts",
        );
        refused(vec![vec![t("zone", "CLUSTER", None)]], "[zone, CLUSTER]", "other attempts");
        refused(vec![vec![t("city", "LIKE", Some("shen.*"))]], "[city, LIKE, shen.*]", "`.`");
        refused(
            vec![vec![t("city", "LIKE", Some("sh[a-z]+"))]],
            "[city, LIKE, sh[a-z]+]",
            "regular expression",
        );
        refused(
            vec![vec![t("ip", "LIKE", Some("10\\.0\\.0\\.1"))]],
            "[ip, LIKE, 10\\.0\\.0\\.1]",
            "IP",
        );
        refused(vec![vec![t("Bad Key", "EXISTS", None)]], "[Bad Key, EXISTS]", "label key");
        refused(
            vec![vec![t("cores", "GREATER", Some("2.5"))]],
            "[cores, GREATER, 2.5]",
            "whole numbers",
        );
        refused(
            vec![vec![t("pool", "LIKE", Some("gpu"))]],
            "[pool, LIKE, gpu]",
            "--node-selector sets pool=ci",
        );
        refused(
            vec![vec![t("zone", "LIKE", Some("a"))], vec![t("zone", "LIKE", Some("b"))]],
            "[zone, LIKE, b]",
            "another constraint asks zone=a",
        );
        let wide: Vec<Vec<ConstraintTest>> = (0..5)
            .map(|i| vec![t(&format!("k{i}"), "EXISTS", None), t(&format!("j{i}"), "EXISTS", None)])
            .collect();
        let e = translate(&BTreeMap::new(), &wide).unwrap_err();
        assert!(e.why.contains("more than 16"), "{e}");
        // A dot written as `\.` is a literal dot.
        let p =
            translate(&BTreeMap::new(), &[vec![t("type", "LIKE", Some("m5\\.large"))]]).unwrap();
        assert_eq!(p.node_selector["type"], "m5.large");
    }

    #[test]
    fn nodes_match_as_kubernetes_matches_them() {
        let p = translate(
            &labels(&[("pool", "ci")]),
            &[
                vec![t("zone", "LIKE", Some("a|b"))],
                vec![t("arch", "UNLIKE", Some("arm64"))],
                vec![t("cores", "GREATER", Some("8")), t("gpu", "EXISTS", None)],
            ],
        )
        .unwrap();
        let fits = |pairs: &[(&str, &str)]| {
            node_matches(&labels(pairs), Some(&p.node_selector), p.affinity.as_ref())
        };
        assert!(fits(&[("pool", "ci"), ("zone", "a"), ("cores", "16")]));
        assert!(fits(&[("pool", "ci"), ("zone", "b"), ("gpu", "1"), ("arch", "amd64")]));
        assert!(!fits(&[("pool", "ci"), ("zone", "c"), ("cores", "16")]), "zone");
        assert!(!fits(&[("pool", "ci"), ("zone", "a"), ("cores", "16"), ("arch", "arm64")]));
        assert!(!fits(&[("pool", "ci"), ("zone", "a"), ("cores", "4")]), "neither cores nor gpu");
        assert!(!fits(&[("zone", "a"), ("cores", "16")]), "the selector");
    }
}
