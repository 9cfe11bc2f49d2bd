//! Metrics scraping in the REST API: applying a metric rule file (`kind: metric`), a rule
//! with what its last scrape of each target saw, and the short history of a service's
//! scraped series that the UI plots.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Body of `PUT /api/v1/projects/{project}/metrics/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApplyMetricRule {
    /// The metric rule file (`kind: metric`).
    pub yaml: String,
    /// Its file name, for diagnostics.
    #[serde(default)]
    pub file: Option<String>,
}

/// A metric rule and its targets as the scraper last saw them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MetricRuleInfo {
    /// Project name.
    pub project: String,
    /// Rule name.
    pub name: String,
    /// The label selector that picks the services scraped.
    pub selector: String,
    /// The instances' named port that serves the page.
    pub port: String,
    /// The page's path.
    pub path: String,
    /// Time between scrapes, in milliseconds.
    pub interval_ms: u64,
    /// How long one scrape may take, in milliseconds.
    pub timeout_ms: u64,
    /// `prometheus` or `plain`.
    pub format: String,
    /// Labels added to every sample.
    pub labels: BTreeMap<String, String>,
    /// Who applied it last.
    pub by: String,
    /// When it was first applied.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// The healthy instances its last scrape reached or tried, by service and slot.
    pub targets: Vec<ScrapeTarget>,
}

/// One instance a rule scrapes, as its last scrape saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScrapeTarget {
    /// Service name.
    pub service: String,
    /// Instance id.
    pub instance: String,
    /// The node it runs on.
    pub node: Option<String>,
    /// Its slot.
    pub slot: u32,
    /// What is read: `http://<host ip>:<host port><path>`.
    pub url: String,
    /// Whether the last scrape succeeded.
    pub up: bool,
    /// Samples the last successful scrape read.
    pub samples: u64,
    /// When the round that last scraped it started.
    pub last_scrape: Option<DateTime<Utc>>,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// Why the last scrape failed.
    pub error: Option<String>,
}

/// `GET /api/v1/projects/{project}/services/{service}/metrics`: the scraped series of a
/// service's instances, kept in the server's memory (an hour at most).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServiceMetrics {
    /// Every series, by name then labels.
    pub series: Vec<MetricSeries>,
}

/// One scraped series and its points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MetricSeries {
    /// The sample name (`dcc_compile_ok`).
    pub name: String,
    /// Its labels: `project`, `service`, `instance`, `node`, `slot`, `rule`, the rule's labels
    /// and the page's own.
    pub labels: BTreeMap<String, String>,
    /// `[unix ms, value]` pairs, oldest first; a value that is not a finite number (`NaN`,
    /// `±Inf`) is `null`.
    #[schema(value_type = Vec<Vec<Option<f64>>>)]
    pub points: Vec<(i64, Option<f64>)>,
}
