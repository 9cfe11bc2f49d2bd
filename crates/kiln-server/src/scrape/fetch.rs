//! Reading one target: an HTTP GET with a size cap, then the page read by the rule's format
//! (`kiln_scrape`'s parsers) and labelled with where it came from.

use std::time::{Duration, Instant};

use kiln_scrape::{Dialect, Family, Labels};
use kiln_workflow::metric::{MetricFormat, MetricRule};

use crate::services::targets::Target;

/// The largest page read (more fails the scrape).
pub const MAX_BODY: usize = 8 << 20;
/// The most samples one page may have (more fails the scrape: Prometheus' `sample_limit`).
pub const MAX_SAMPLES: usize = 10_000;

/// What one target's scrape gave.
#[derive(Debug, Clone)]
pub struct Scraped {
    /// The target.
    pub target: Target,
    /// The URL read.
    pub url: String,
    /// Its labelled families, or why there are none.
    pub result: Result<Vec<Family>, String>,
    /// How long it took.
    pub took: Duration,
}

/// `Accept` of a scrape: the text format first, OpenMetrics understood too.
const ACCEPT: &str =
    "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1";

/// Scrapes `target` for `rule` of `project`, within the rule's timeout; never fails, the
/// error is in [`Scraped::result`].
pub async fn scrape(
    client: &reqwest::Client,
    project: &str,
    rule: &MetricRule,
    target: Target,
) -> Scraped {
    let url = format!("http://{}{}", target.address(), rule.path);
    let started = Instant::now();
    let page = match tokio::time::timeout(rule.timeout, get(client, &url)).await {
        Ok(page) => page,
        Err(_) => Err(format!("no answer within {}", humantime::format_duration(rule.timeout))),
    };
    let result = page.and_then(|(body, content_type)| {
        let parsed = match rule.format {
            MetricFormat::Prometheus => kiln_scrape::parse(
                &body,
                Dialect::from_content_type(content_type.as_deref()),
                MAX_SAMPLES,
            ),
            MetricFormat::Plain => kiln_scrape::parse_plain(&body, MAX_SAMPLES),
        };
        parsed.map_err(|e| format!("the page does not parse: {e}"))
    });
    let result = result.map(|mut families| {
        kiln_scrape::with_target_labels(&mut families, &labels(project, rule, &target));
        families
    });
    Scraped { target, url, result, took: started.elapsed() }
}

/// The labels every sample of `target` gets: the rule's own, then where it came from.
pub fn labels(project: &str, rule: &MetricRule, target: &Target) -> Labels {
    let mut labels: Labels = rule.labels.clone();
    for (k, v) in [
        ("project", project),
        ("service", &target.service),
        ("instance", &target.instance),
        ("node", &target.node),
        ("rule", &rule.name),
    ] {
        labels.insert(k.to_string(), v.to_string());
    }
    labels.insert("slot".into(), target.slot.to_string());
    labels
}

/// The body and `Content-Type` of a 2xx answer to `GET url`, at most [`MAX_BODY`] bytes.
async fn get(client: &reqwest::Client, url: &str) -> Result<(String, Option<String>), String> {
    let mut resp = client
        .get(url)
        .header(reqwest::header::ACCEPT, ACCEPT)
        .send()
        .await
        .map_err(|e| cause(&e))?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| cause(&e))? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(format!("the page is larger than {} MiB", MAX_BODY >> 20));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((String::from_utf8_lossy(&body).into_owned(), content_type))
}

/// The innermost cause of a request error ("Connection refused (os error 111)"), which says
/// more than reqwest's own "error sending request".
fn cause(e: &reqwest::Error) -> String {
    let mut inner: &dyn std::error::Error = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    inner.to_string()
}
