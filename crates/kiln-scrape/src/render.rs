//! Families back in the text exposition format (0.0.4), merged by name: one `# HELP` and
//! one `# TYPE` per family (the first source that gave one wins), then its samples.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::{Family, MetricType, Sample};

/// The text of `families`, merged by name and sorted by it.
pub fn render<'a>(families: impl IntoIterator<Item = &'a Family>) -> String {
    type Merged<'a> = (Option<&'a str>, Option<MetricType>, Vec<&'a Sample>);
    let mut merged: BTreeMap<&str, Merged<'a>> = BTreeMap::new();
    for f in families {
        let entry = merged.entry(f.name.as_str()).or_insert((None, None, Vec::new()));
        entry.0 = entry.0.or(f.help.as_deref());
        entry.1 = entry.1.or(f.kind);
        entry.2.extend(&f.samples);
    }
    let mut out = String::new();
    for (name, (help, kind, samples)) in merged {
        if samples.is_empty() {
            continue;
        }
        if let Some(help) = help {
            let _ = writeln!(out, "# HELP {name} {}", escape(help, false));
        }
        if let Some(kind) = kind {
            let _ = writeln!(out, "# TYPE {name} {}", kind.as_str());
        }
        for s in samples {
            out.push_str(&s.name);
            if !s.labels.is_empty() {
                out.push('{');
                for (i, (k, v)) in s.labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{k}=\"{}\"", escape(v, true));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", value(s.value));
        }
    }
    out
}

/// `\` and newlines escaped (and `"` in label values).
fn escape(s: &str, quotes: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quotes => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

/// A value as the format writes it: `NaN`, `+Inf`, `-Inf`, or the shortest decimal that
/// reads back to the same number.
fn value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dialect, parse};

    #[test]
    fn families_of_one_name_from_two_pages_are_merged_under_one_type() {
        let a = parse("# HELP r Requests.\n# TYPE r counter\nr{i=\"a\"} 1\n", Dialect::Text, 9);
        let b = parse("# TYPE r counter\nr{i=\"b\"} 2\n# TYPE g gauge\ng NaN\n", Dialect::Text, 9);
        let all: Vec<Family> = [a, b].into_iter().flat_map(|r| r.unwrap_or_default()).collect();
        assert_eq!(
            render(&all),
            "# TYPE g gauge\ng NaN\n# HELP r Requests.\n# TYPE r counter\nr{i=\"a\"} 1\nr{i=\"b\"} 2\n"
        );
    }

    #[test]
    fn escapes_read_back() {
        let text = "# HELP x a \\\\ b\\nc\nx{v=\"q\\\"\\\\\\n\"} -0.5\n";
        let f = parse(text, Dialect::Text, 9).unwrap_or_default();
        assert_eq!(render(&f), text);
    }
}
