//! Label selectors, read as Kubernetes reads them: a comma-separated AND of requirements
//! `key=value` (or `==`), `key!=value`, `key in (a,b)`, `key notin (a,b)`, `key` (present) and
//! `!key` (absent). Discovery and metrics scraping pick instances with them.

use std::collections::BTreeMap;

/// A parsed selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector(Vec<Requirement>);

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// `key=value`.
    Equals(String, String),
    /// `key!=value` (also true when the key is absent, as in Kubernetes).
    NotEquals(String, String),
    /// `key in (a,b)`.
    In(String, Vec<String>),
    /// `key notin (a,b)` (also true when the key is absent).
    NotIn(String, Vec<String>),
    /// `key`.
    Exists(String),
    /// `!key`.
    Absent(String),
}

impl Selector {
    /// Reads a selector; the error says which part is wrong and what was expected.
    pub fn parse(text: &str) -> Result<Selector, String> {
        let mut out = Vec::new();
        for part in split_top(text) {
            let p = part.trim();
            if p.is_empty() {
                continue;
            }
            out.push(requirement(p)?);
        }
        Ok(Selector(out))
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|x| vs.contains(x)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|x| !vs.contains(x)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::Absent(k) => !labels.contains_key(k),
        })
    }
}

/// Splits at commas outside parentheses.
fn split_top(text: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn key(k: &str, whole: &str) -> Result<String, String> {
    let k = k.trim();
    let ok = !k.is_empty()
        && k.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(k.to_string())
    } else {
        Err(format!("`{whole}`: `{k}` is not a label key (letters, digits, - _ . /)"))
    }
}

fn set(rest: &str, whole: &str) -> Result<Vec<String>, String> {
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("`{whole}`: expected a set of values such as (a,b)"))?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect())
}

fn requirement(p: &str) -> Result<Requirement, String> {
    if let Some(k) = p.strip_prefix('!') {
        return Ok(Requirement::Absent(key(k, p)?));
    }
    if let Some((k, v)) = p.split_once("!=") {
        return Ok(Requirement::NotEquals(key(k, p)?, v.trim().to_string()));
    }
    if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
        return Ok(Requirement::Equals(key(k, p)?, v.trim().to_string()));
    }
    let words: Vec<&str> = p.splitn(2, char::is_whitespace).collect();
    if let [k, rest] = words[..] {
        let rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix("notin") {
            return Ok(Requirement::NotIn(key(k, p)?, set(r, p)?));
        }
        if let Some(r) = rest.strip_prefix("in") {
            return Ok(Requirement::In(key(k, p)?, set(r, p)?));
        }
        return Err(format!(
            "`{p}`: expected key=value, key!=value, key in (a,b), key notin (a,b), key or !key"
        ));
    }
    Ok(Requirement::Exists(key(p, p)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn every_form_matches_as_kubernetes_does() {
        let l = labels(&[("app", "distcc"), ("team", "build"), ("tier", "cache")]);
        for (sel, want) in [
            ("", true),
            ("app=distcc", true),
            ("app==distcc,team=build", true),
            ("app=distcc,team=web", false),
            ("team!=web", true),
            ("zone!=gz", true),
            ("tier in (cache, db)", true),
            ("tier notin (cache)", false),
            ("zone notin (gz)", true),
            ("app", true),
            ("!zone", true),
            ("!app", false),
            ("zone in (gz)", false),
        ] {
            assert_eq!(Selector::parse(sel).unwrap().matches(&l), want, "{sel}");
        }
    }

    #[test]
    fn bad_selectors_say_what_was_expected() {
        assert_eq!(
            Selector::parse("app=web,tier in cache").unwrap_err(),
            "`tier in cache`: expected a set of values such as (a,b)"
        );
        assert_eq!(
            Selector::parse("app web x").unwrap_err(),
            "`app web x`: expected key=value, key!=value, key in (a,b), key notin (a,b), key or !key"
        );
        assert!(Selector::parse("a b=c").unwrap_err().contains("is not a label key"));
    }
}
