//! Metrics scraping, pure: what the server's scraper does between an HTTP body and the
//! endpoints it serves, with no I/O and no clock (the caller passes the time).
//!
//! - [`parse`] reads Prometheus' text exposition format (0.0.4) and OpenMetrics 1.0, chosen by
//!   the answer's `Content-Type` ([`Dialect::from_content_type`]), into [`Family`]s shaped as
//!   the text format names them (an OpenMetrics counter `x` becomes the family `x_total`, its
//!   `x_created` samples a family of their own, `info` and `stateset` gauges);
//! - [`parse_plain`] reads pages of `name value` lines, such as distccd's `--stats` page,
//!   skipping every line that is not one;
//! - [`with_target_labels`] adds the labels of the target a page came from (a label the page
//!   already has is kept as `exported_<name>`, as Prometheus does without `honor_labels`);
//! - [`render`] writes families back in the text format, merged by name;
//! - [`History`] keeps the last points of every series, bounded in time, points and series.
//!
//! Why our own parser: see `shared/design/dependencies.md` (W2.5): the Rust crates either do
//! not parse, misread label values with commas or `}`, or are LGPL.

mod history;
mod plain;
mod render;
mod text;

use std::collections::BTreeMap;

pub use history::{History, Limits, Series};
pub use plain::parse_plain;
pub use render::render;
pub use text::{Dialect, ParseError, parse};

/// A series' labels, by name.
pub type Labels = BTreeMap<String, String>;

/// A family's type, as the text format (0.0.4) writes it in `# TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    /// Only goes up (resets on restart).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Buckets (`_bucket{le=…}`), `_sum` and `_count`.
    Histogram,
    /// Quantiles, `_sum` and `_count`.
    Summary,
    /// Said to be of no type (`untyped`; OpenMetrics' `unknown`).
    Untyped,
}

impl MetricType {
    /// The name written after `# TYPE <family>`.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::Summary => "summary",
            MetricType::Untyped => "untyped",
        }
    }
}

/// Samples of one metric family, with what the page said of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// The family's name (for a histogram `x`, its samples are `x_bucket`, `x_sum`, `x_count`).
    pub name: String,
    /// Its `# HELP` text, unescaped.
    pub help: Option<String>,
    /// Its `# TYPE`; `None` when the page gave none.
    pub kind: Option<MetricType>,
    /// Its samples, in page order.
    pub samples: Vec<Sample>,
}

/// One sample: a series (name and labels) and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's name.
    pub name: String,
    /// Its labels.
    pub labels: Labels,
    /// Its value (`NaN` and `±Inf` included).
    pub value: f64,
}

/// Adds `target`'s labels to every sample. A label the sample already has under one of those
/// names is kept as `exported_<name>` (Prometheus' behaviour without `honor_labels`), so no
/// page can pass itself off as another target.
pub fn with_target_labels(families: &mut [Family], target: &Labels) {
    for sample in families.iter_mut().flat_map(|f| f.samples.iter_mut()) {
        for (name, value) in target {
            if let Some(theirs) = sample.labels.remove(name) {
                sample.labels.insert(format!("exported_{name}"), theirs);
            }
            sample.labels.insert(name.clone(), value.clone());
        }
    }
}

/// A metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_metric_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// A label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_label_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_metric_name("node:cpu:ratio") && is_metric_name("_x1"));
        assert!(!is_metric_name("") && !is_metric_name("1x") && !is_metric_name("a-b"));
        assert!(is_label_name("le") && is_label_name("_a9"));
        assert!(!is_label_name("a:b") && !is_label_name("9a") && !is_label_name(""));
    }

    #[test]
    fn target_labels_win_and_the_page_s_own_are_kept_as_exported() {
        let mut f = vec![Family {
            name: "x".into(),
            help: None,
            kind: None,
            samples: vec![Sample {
                name: "x".into(),
                labels: [("instance".to_string(), "mine".to_string())].into(),
                value: 1.0,
            }],
        }];
        let target: Labels = [("instance", "i-1"), ("service", "web")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        with_target_labels(&mut f, &target);
        let labels = &f[0].samples[0].labels;
        assert_eq!(labels["instance"], "i-1");
        assert_eq!(labels["exported_instance"], "mine");
        assert_eq!(labels["service"], "web");
    }
}
