//! The validated form of a metric rule file (`kind: metric`): [`MetricRule`], what the
//! server's scraper follows: every `interval`, it reads `path` on the named `port` of every
//! healthy instance of the project's services whose labels match `selector`.
//!
//! Invariants of a rule [`crate::compile_metric`] returned: `name` is a DNS label; `selector`
//! parses with `kiln_service::Selector` and is not empty; `port` is a port name; `path`
//! starts with `/`; `interval` is at least [`MetricRule::MIN_INTERVAL`]; `timeout` is more
//! than zero and at most `interval`; label names follow Prometheus' syntax, do not start with
//! `__` and are none of [`MetricRule::RESERVED_LABELS`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A checked metric rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricRule {
    /// The rule's name: 1 to 63 of `[a-z0-9-]`, starting and ending with a letter or digit.
    pub name: String,
    /// The services whose instances are scraped, as a Kubernetes label selector
    /// (`app=distcc,team=build`).
    pub selector: String,
    /// The instances' named port that serves the page.
    pub port: String,
    /// The page's path (default [`MetricRule::DEFAULT_PATH`]).
    pub path: String,
    /// Time between scrapes (default [`MetricRule::DEFAULT_INTERVAL`]).
    pub interval: Duration,
    /// How long one scrape may take (default the shorter of 10 s and `interval`).
    pub timeout: Duration,
    /// How the page is read.
    pub format: MetricFormat,
    /// Labels added to every sample.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl MetricRule {
    /// `path` when none is written.
    pub const DEFAULT_PATH: &str = "/metrics";
    /// `interval` when none is written (Prometheus' `scrape_interval` example value).
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
    /// The shortest `interval`.
    pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
    /// The longest default `timeout` (Prometheus' default `scrape_timeout`).
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
    /// Labels the scraper sets on every sample itself; a rule cannot set them.
    pub const RESERVED_LABELS: &[&str] =
        &["project", "service", "instance", "node", "slot", "rule"];
}

/// How a scraped page is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MetricFormat {
    /// Prometheus' text exposition format (or OpenMetrics, by the answer's `Content-Type`).
    Prometheus,
    /// Lines of `name value` (distccd's stats page); other lines are skipped.
    Plain,
}

impl MetricFormat {
    /// The formats, as written.
    pub const NAMES: &[&str] = &["prometheus", "plain"];

    /// The format as written.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricFormat::Prometheus => "prometheus",
            MetricFormat::Plain => "plain",
        }
    }
}
