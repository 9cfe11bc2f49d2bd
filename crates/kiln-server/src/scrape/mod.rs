//! Metrics scraping by label selector. A project's metric rules (`kind: metric` files, kept in
//! the store) each run as one task: every `interval` it lists the healthy instances of the
//! project's services whose labels match the rule's selector (`services::targets`, the same
//! list discovery serves), reads the rule's page on each at once (at most [`CONCURRENCY`] at
//! a time, each within the rule's timeout; `fetch.rs`), and keeps what each gave: the latest
//! samples, re-exposed together at `GET /api/v1/metrics/scraped`, and a short history per
//! series (`kiln_scrape::History`) for the UI's plots.
//!
//! Invariants: a rule has at most one task, and runs the spec stored last (`sync` after every
//! apply or delete, and every [`RESYNC`]); nothing here is reached by the service actors (the
//! scraper reads their views like any API call), so a slow target delays only its own rule's
//! next round; no lock is held across an await; memory is bounded per target
//! ([`fetch::MAX_BODY`], [`fetch::MAX_SAMPLES`]) and per rule ([`kiln_scrape::Limits`]).

pub mod fetch;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use kiln_api::metric::{MetricRuleInfo, MetricSeries, ScrapeTarget};
use kiln_scrape::{Family, History, Limits};
use kiln_service::Selector;
use kiln_store::{MetricRuleRecord, RuleChange, Store};
use kiln_workflow::metric::MetricRule;
use tokio_util::sync::CancellationToken;

use crate::error::{ApiErr, ApiResult};
use crate::metrics::Metrics;
use crate::services::Services;

/// Targets of one rule read at the same time.
pub const CONCURRENCY: usize = 32;
/// How often the running rules are compared with the store even when nothing was applied
/// here (another server may share the database).
pub const RESYNC: Duration = Duration::from_secs(30);

/// A rule's key: project and rule name.
type RuleKey = (String, String);

/// What a rule's last round saw, and its history.
#[derive(Debug)]
struct RuleState {
    targets: Vec<TargetState>,
    history: History,
}

/// One target as the last round saw it.
#[derive(Debug)]
struct TargetState {
    scraped: fetch::Scraped,
    at: DateTime<Utc>,
}

#[derive(Debug)]
struct Running {
    rule: MetricRule,
    state: Arc<Mutex<RuleState>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    store: Store,
    services: Services,
    metrics: Arc<Metrics>,
    client: reqwest::Client,
    rules: Mutex<HashMap<RuleKey, Running>>,
    /// Held by one `sync` at a time.
    syncing: tokio::sync::Mutex<()>,
}

/// Applies, lists and runs metric rules; serves what they scraped. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Scraper {
    sh: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Scraper {
    /// A scraper of the rules in `store`, over the instances `services` knows. Nothing runs
    /// until [`spawn`].
    pub fn new(store: Store, services: Services, metrics: Arc<Metrics>) -> Scraper {
        // Instances are on the pool's own network: no proxy from the environment.
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Scraper {
            sh: Arc::new(Shared {
                store,
                services,
                metrics,
                client,
                rules: Mutex::new(HashMap::new()),
                syncing: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Applies a metric rule file to `project`: stored (replacing the rule of its name) and
    /// running at once. Bad files are refused with every diagnostic; nothing is stored then.
    pub async fn apply(
        &self,
        project: &str,
        file: &str,
        yaml: &str,
        by: &str,
    ) -> ApiResult<(MetricRuleInfo, RuleChange)> {
        let compiled = kiln_workflow::compile_metric(file, yaml);
        let Some(rule) = compiled.rule else {
            return Err(crate::plans::refused(
                kiln_api::codes::INVALID_METRIC,
                "the metric rule file",
                &compiled.diagnostics,
            ));
        };
        let spec = serde_json::to_value(&rule).map_err(|e| ApiErr::internal(e.to_string()))?;
        let (record, change) =
            self.sh.store.put_metric_rule(project, &rule.name, &spec, yaml, file, by).await?;
        self.sync().await;
        Ok((self.info(&record)?, change))
    }

    /// Rule `name` of `project`, with its targets as its last round saw them.
    pub async fn get(&self, project: &str, name: &str) -> ApiResult<MetricRuleInfo> {
        let record = self.sh.store.metric_rule(project, name).await?;
        self.info(&record)
    }

    /// The rules of `project`.
    pub async fn list(&self, project: &str) -> ApiResult<Vec<MetricRuleInfo>> {
        let records = self.sh.store.metric_rules(Some(project)).await?;
        records.iter().map(|r| self.info(r)).collect()
    }

    /// Deletes rule `name` of `project`: it stops, its samples and history go.
    pub async fn delete(&self, project: &str, name: &str) -> ApiResult<()> {
        self.sh.store.delete_metric_rule(project, name).await?;
        self.sync().await;
        Ok(())
    }

    /// The latest samples of every running rule of the projects `visible` accepts, in
    /// Prometheus' text format (families merged by name, `# TYPE` kept where the page gave
    /// one).
    pub fn exposition(&self, visible: impl Fn(&str) -> bool) -> String {
        let states: Vec<Arc<Mutex<RuleState>>> = lock(&self.sh.rules)
            .iter()
            .filter(|((project, _), _)| visible(project))
            .map(|(_, r)| r.state.clone())
            .collect();
        let mut families: Vec<Family> = Vec::new();
        for state in states {
            let st = lock(&state);
            for t in &st.targets {
                if let Ok(f) = &t.scraped.result {
                    families.extend(f.iter().cloned());
                }
            }
        }
        kiln_scrape::render(&families)
    }

    /// The projects that have running rules.
    pub fn projects(&self) -> Vec<String> {
        let mut out: Vec<String> = lock(&self.sh.rules).keys().map(|(p, _)| p.clone()).collect();
        out.sort();
        out.dedup();
        out
    }

    /// The kept series of `service`'s instances, points at or after `since_ms`, by name then
    /// labels.
    pub fn history(
        &self,
        project: &str,
        service: &str,
        since_ms: Option<i64>,
    ) -> Vec<MetricSeries> {
        let states: Vec<Arc<Mutex<RuleState>>> = lock(&self.sh.rules)
            .iter()
            .filter(|((p, _), _)| p == project)
            .map(|(_, r)| r.state.clone())
            .collect();
        let mut out: Vec<MetricSeries> = Vec::new();
        for state in states {
            let st = lock(&state);
            let keep = |_: &str, labels: &kiln_scrape::Labels| {
                labels.get("service").is_some_and(|s| s == service)
                    && labels.get("project").is_some_and(|p| p == project)
            };
            out.extend(st.history.series(keep, since_ms).into_iter().map(|s| MetricSeries {
                name: s.name,
                labels: s.labels,
                points:
                    s.points.into_iter().map(|(t, v)| (t, v.is_finite().then_some(v))).collect(),
            }));
        }
        out.sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
        out
    }

    /// Brings the running rules in step with the store: new rules start, changed ones restart
    /// (keeping their history), deleted ones stop.
    pub async fn sync(&self) {
        let _one = self.sh.syncing.lock().await;
        let records = match self.sh.store.metric_rules(None).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("metric rules: {e}");
                return;
            }
        };
        let mut want: HashMap<RuleKey, MetricRule> = HashMap::new();
        for r in records {
            match serde_json::from_value::<MetricRule>(r.spec) {
                Ok(rule) => {
                    want.insert((r.project, r.name), rule);
                }
                Err(e) => tracing::warn!("metric rule {}/{}: stored spec: {e}", r.project, r.name),
            }
        }
        let mut rules = lock(&self.sh.rules);
        rules.retain(|key, running| {
            let keep = want.contains_key(key);
            if !keep {
                running.task.abort();
            }
            keep
        });
        for (key, rule) in want {
            let history = match rules.get(&key) {
                Some(running) if running.rule == rule => continue,
                Some(running) => {
                    running.task.abort();
                    let mut st = lock(&running.state);
                    let mut h = std::mem::replace(&mut st.history, History::new(limits(&rule)));
                    h.set_limits(limits(&rule));
                    h
                }
                None => History::new(limits(&rule)),
            };
            let state = Arc::new(Mutex::new(RuleState { targets: Vec::new(), history }));
            let task =
                tokio::spawn(run(self.sh.clone(), key.0.clone(), rule.clone(), state.clone()));
            rules.insert(key, Running { rule, state, task });
        }
    }

    /// Stops every rule's task.
    fn stop(&self) {
        for (_, running) in lock(&self.sh.rules).drain() {
            running.task.abort();
        }
    }

    /// The API form of a stored rule, with its targets as its last round saw them.
    fn info(&self, r: &MetricRuleRecord) -> ApiResult<MetricRuleInfo> {
        let rule: MetricRule = serde_json::from_value(r.spec.clone())
            .map_err(|e| ApiErr::internal(format!("metric rule {}/{}: {e}", r.project, r.name)))?;
        let state =
            lock(&self.sh.rules).get(&(r.project.clone(), r.name.clone())).map(|x| x.state.clone());
        let targets =
            state.map(|s| lock(&s).targets.iter().map(target_info).collect()).unwrap_or_default();
        Ok(MetricRuleInfo {
            project: r.project.clone(),
            name: r.name.clone(),
            selector: rule.selector,
            port: rule.port,
            path: rule.path,
            interval_ms: millis(rule.interval),
            timeout_ms: millis(rule.timeout),
            format: rule.format.as_str().to_string(),
            labels: rule.labels,
            by: r.by.clone(),
            created_at: r.created_at,
            updated_at: r.updated_at,
            targets,
        })
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn limits(rule: &MetricRule) -> Limits {
    Limits::for_interval(millis(rule.interval))
}

fn target_info(t: &TargetState) -> ScrapeTarget {
    let s = &t.scraped;
    ScrapeTarget {
        service: s.target.service.clone(),
        instance: s.target.instance.clone(),
        node: Some(s.target.node.clone()).filter(|n| !n.is_empty()),
        slot: s.target.slot,
        url: s.url.clone(),
        up: s.result.is_ok(),
        samples: s
            .result
            .as_ref()
            .map(|f| f.iter().map(|f| f.samples.len() as u64).sum())
            .unwrap_or(0),
        last_scrape: Some(t.at),
        duration_ms: millis(s.took),
        error: s.result.as_ref().err().cloned(),
    }
}

/// Syncs the rules now and every [`RESYNC`] until `stop`, then stops them all.
pub fn spawn(scraper: Scraper, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            scraper.sync().await;
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(RESYNC) => {}
            }
        }
        scraper.stop();
    })
}

/// One rule's task: a round every `interval` (a round that overran delays the next).
async fn run(sh: Arc<Shared>, project: String, rule: MetricRule, state: Arc<Mutex<RuleState>>) {
    let selector = match Selector::parse(&rule.selector) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("metric rule {project}/{}: selector: {e}", rule.name);
            return;
        }
    };
    let mut tick = tokio::time::interval(rule.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        round(&sh, &project, &rule, &selector, &state).await;
    }
}

/// Scrapes every target of `rule` once and keeps what each gave.
async fn round(
    sh: &Shared,
    project: &str,
    rule: &MetricRule,
    selector: &Selector,
    state: &Mutex<RuleState>,
) {
    let services = match sh.services.list(Some(project)).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("metric rule {project}/{}: list services: {}", rule.name, e.message);
            return;
        }
    };
    let targets = crate::services::targets::targets(&services, selector, Some(&rule.port));
    let at = Utc::now();
    let mut scraped: Vec<fetch::Scraped> = futures::stream::iter(targets)
        .map(|t| fetch::scrape(&sh.client, project, rule, t))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    scraped.sort_by(|a, b| {
        (&a.target.service, a.target.slot, &a.target.instance).cmp(&(
            &b.target.service,
            b.target.slot,
            &b.target.instance,
        ))
    });
    for s in &scraped {
        let samples =
            s.result.as_ref().ok().map(|f| f.iter().map(|f| f.samples.len() as u64).sum());
        sh.metrics.scraped(project, &rule.name, samples, s.took);
        if let Err(e) = &s.result {
            tracing::debug!("metric rule {project}/{}: {}: {e}", rule.name, s.url);
        }
    }
    let mut st = lock(state);
    let at_ms = at.timestamp_millis();
    for s in &scraped {
        if let Ok(families) = &s.result {
            st.history.record(at_ms, families);
        }
    }
    st.history.prune(at_ms);
    st.targets = scraped.into_iter().map(|scraped| TargetState { scraped, at }).collect();
}
