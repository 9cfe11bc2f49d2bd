//! The constraint language: parsing Kiln's and BCS's shapes, errors, and what each operator
//! means on a node's value.

use std::collections::BTreeSet;

use kiln_scheduler::{AttrValue, Constraints, Predicate};
use serde_json::json;

fn text(s: &str) -> AttrValue {
    AttrValue::Text(s.to_string())
}

fn holds(attr: &str, op: &str, value: Option<&str>, on: Option<AttrValue>) -> bool {
    Predicate::new(attr, op, value).unwrap().matches_value(on.as_ref())
}

#[test]
fn like_is_anchored_to_the_whole_value() {
    assert!(holds("city", "LIKE", Some("shenzhen"), Some(text("shenzhen"))));
    assert!(!holds("city", "LIKE", Some("shenzhen"), Some(text("shenzhen-2"))));
    assert!(!holds("city", "LIKE", Some("shen"), Some(text("shenzhen"))));
    assert!(holds("city", "LIKE", Some("shenzhen|shanghai"), Some(text("shanghai"))));
    assert!(holds("city", "LIKE", Some("shen.*"), Some(text("shenzhen"))));
}

#[test]
fn missing_attribute_fails_like_and_passes_unlike() {
    assert!(!holds("city", "LIKE", Some(".*"), None));
    assert!(holds("city", "UNLIKE", Some("shenzhen"), None));
    assert!(!holds("city", "UNLIKE", Some("shenzhen"), Some(text("shenzhen"))));
    assert!(holds("city", "UNLIKE", Some("shenzhen"), Some(text("chengdu"))));
    assert!(!holds("city", "EXISTS", None, None));
    assert!(holds("city", "EXISTS", None, Some(text(""))));
    assert!(!holds("cores", "GREATER", Some("8"), None));
}

#[test]
fn numbers_and_sets() {
    assert!(holds("cores", "GREATER", Some("8"), Some(AttrValue::Number(16.0))));
    assert!(!holds("cores", "GREATER", Some("16"), Some(AttrValue::Number(16.0))));
    assert!(holds("cores", "LESS", Some("16.5"), Some(AttrValue::Number(16.0))));
    // A text attribute that reads as a number compares as one.
    assert!(holds("cores", "GREATER", Some("8"), Some(text("12"))));
    assert!(!holds("cores", "GREATER", Some("8"), Some(text("many"))));
    // A number matches LIKE in its canonical text.
    assert!(holds("gcc", "LIKE", Some("12"), Some(AttrValue::Number(12.0))));
    let set = AttrValue::Set(BTreeSet::from(["9".to_string(), "12".to_string()]));
    assert!(holds("gcc", "LIKE", Some("12"), Some(set.clone())));
    assert!(!holds("gcc", "UNLIKE", Some("12"), Some(set.clone())));
    assert!(holds("gcc", "CLUSTER", Some("9"), Some(set)));
}

#[test]
fn operator_spellings() {
    for (written, shown) in
        [("group_by", "GROUP_BY 3"), ("GROUPBY", "GROUP_BY 3"), ("maxper", "MAX_PER 3")]
    {
        assert_eq!(Predicate::new("rack", written, Some("3")).unwrap().op.to_string(), shown);
    }
}

#[test]
fn errors_name_attribute_operator_value_and_what_was_expected() {
    let err = |a: &str, o: &str, v: Option<&str>| Predicate::new(a, o, v).unwrap_err().to_string();
    assert_eq!(
        err("city", "LIKES", Some("x")),
        "constraint on 'city': unknown operator 'LIKES', expected one of LIKE, UNLIKE, UNIQUE, CLUSTER, GROUP_BY, MAX_PER, GREATER, LESS, EXISTS"
    );
    assert_eq!(
        err("rack", "GROUP_BY", None),
        "constraint 'rack GROUP_BY': no value, expected a whole number of at least 1"
    );
    assert_eq!(
        err("rack", "MAX_PER", Some("0")),
        "constraint 'rack MAX_PER': value '0', expected a whole number of at least 1"
    );
    assert_eq!(
        err("cores", "GREATER", Some("lots")),
        "constraint 'cores GREATER': value 'lots', expected a number"
    );
    assert_eq!(
        err("hostname", "UNIQUE", Some("x")),
        "constraint 'hostname UNIQUE': value 'x', expected no value"
    );
    let regex = err("city", "LIKE", Some("shen(zhen"));
    assert!(
        regex
            .starts_with("constraint 'city LIKE': 'shen(zhen' is not a valid regular expression: "),
        "{regex}"
    );
    assert!(regex.contains("unclosed group"), "{regex}");
    assert_eq!(
        err(" ", "LIKE", Some("x")),
        "constraint with operator 'LIKE' has no attribute name"
    );
}

#[test]
fn kiln_json_shape() {
    let c = Constraints::from_json(&json!([
        ["city", "LIKE", "shenzhen|shanghai"],
        ["hostname", "UNIQUE"],
        {"any": [["storageType", "LIKE", "SSD"], {"attribute": "cores", "operator": "GREATER", "value": 32}]},
        {"attribute": "rack", "operator": "MAX_PER", "value": 2}
    ]))
    .unwrap();
    assert_eq!(
        c.to_string(),
        "city LIKE shenzhen|shanghai AND hostname UNIQUE AND (storageType LIKE SSD OR cores GREATER 32) AND rack MAX_PER 2"
    );
    assert!(c.has_group_terms());
    let bad = |v| Constraints::from_json(&v).unwrap_err().to_string();
    assert_eq!(bad(json!({"city": "x"})), "constraints: expected a list of constraints");
    assert_eq!(
        bad(json!([["city"]])),
        "constraints[0]: expected [attribute, OPERATOR] or [attribute, OPERATOR, value], or {attribute, operator, value}"
    );
    assert_eq!(
        bad(json!([{"any": []}])),
        "constraint group 0 is empty: an OR of nothing never holds"
    );
    assert_eq!(
        bad(json!([{"attribute": "a", "operator": "LIKE", "valeu": "x"}])),
        "constraints[0].valeu: expected only attribute, operator and value"
    );
}

/// The constraint of seed 000's application.json, verbatim.
#[test]
fn bcs_seed_000_shape() {
    let c = Constraints::from_bcs(&json!({
        "intersectionItem": [
            {"unionData": [{"name": "city", "operate": "LIKE", "type": 3, "text": {"value": "shenzhen"}}]}
        ]
    }))
    .unwrap();
    assert_eq!(c.to_string(), "city LIKE shenzhen");
}

#[test]
fn bcs_scalar_set_and_operators() {
    let c = Constraints::from_bcs(&json!({
        "intersectionItem": [
            {"unionData": [
                {"name": "city", "operate": "LIKE", "type": 4, "set": {"item": ["shenzhen", "shanghai"]}},
                {"name": "storageType", "operate": "CLUSTER", "type": 3, "text": {"value": "SSD"}}
            ]},
            {"unionData": [{"name": "hostname", "operate": "UNIQUE", "type": 0}]},
            {"unionData": [{"name": "rack", "operate": "MAXPER", "type": 1, "scalar": {"value": 2}}]},
            {"unionData": [{"name": "zone", "operate": "GROUPBY", "type": 4, "set": {"item": ["a", "b", "c"]}}]}
        ],
        "nodeSelector": {"os": "linux.x86"}
    }))
    .unwrap();
    assert_eq!(
        c.to_string(),
        r"(city LIKE (?:shenzhen)|(?:shanghai) OR storageType CLUSTER SSD) AND hostname UNIQUE AND rack MAX_PER 2 AND zone GROUP_BY 3 AND os LIKE linux\.x86"
    );
    let bad = |v| Constraints::from_bcs(&v).unwrap_err().to_string();
    assert_eq!(
        bad(
            json!({"intersectionItem": [{"unionData": [{"name": "app", "operate": "EXCLUDE", "type": 3, "text": {"value": "x"}}]}]})
        ),
        "constraint 'app EXCLUDE' is not supported: it refers to other applications or to taints, which Kiln does not model; use UNLIKE or MAX_PER"
    );
    assert_eq!(
        bad(
            json!({"intersectionItem": [{"unionData": [{"name": "city", "operate": "LIKE", "type": 3, "scalar": {"value": 3}}]}]})
        ),
        "constraint 'city LIKE': no value, expected a regular expression such as 'shenzhen|shanghai'"
    );
    assert_eq!(
        bad(
            json!({"intersectionItem": [{"unionData": [{"name": "city", "operate": "LIKE", "type": 7}]}]})
        ),
        "constraint.intersectionItem[0].unionData[0].type: expected 1 (scalar), 3 (text) or 4 (set)"
    );
    assert_eq!(
        bad(
            json!({"intersectionItem": [{"unionData": [{"name": "n", "operate": "MAXPER", "type": 1, "scalar": {"value": "two"}}]}]})
        ),
        "constraint.intersectionItem[0].unionData[0].scalar.value: expected a number"
    );
}

#[test]
fn attributes_as_agents_write_them() {
    assert_eq!(AttrValue::parse("city", "string", "shenzhen"), Ok(text("shenzhen")));
    assert_eq!(AttrValue::parse("cores", "scalar", " 96 "), Ok(AttrValue::Number(96.0)));
    assert_eq!(
        AttrValue::parse("gcc", "set", "9, 12,,"),
        Ok(AttrValue::Set(BTreeSet::from(["9".to_string(), "12".to_string()])))
    );
    let err = |n: &str, k: &str, v: &str| AttrValue::parse(n, k, v).unwrap_err().to_string();
    assert_eq!(err("cores", "number", "many"), "attribute 'cores': value 'many' is not a number");
    assert_eq!(
        err("city", "txt", "x"),
        "attribute 'city': unknown kind 'txt', expected string, number or set"
    );
    assert_eq!(
        err("my city", "string", "x"),
        "attribute name 'my city': expected a non-empty name without spaces or '='"
    );
    let map =
        AttrValue::map_from_json(&json!({"city": "shenzhen", "cores": 96, "gcc": ["9", "12"]}))
            .unwrap();
    assert_eq!(map["cores"], AttrValue::Number(96.0));
    assert_eq!(
        AttrValue::map_from_json(&json!({"gcc": [9]})).unwrap_err().to_string(),
        "attribute 'gcc': value '[9]' is not text, a number or a list of texts"
    );
}
