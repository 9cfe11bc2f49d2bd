//! Prometheus metrics (OpenMetrics text at `/metrics`): runs by state, queue depths, job
//! durations, log bytes, agents and leases, API latency, cache bytes and what the garbage
//! collector removed, service instances by state, their restarts and health failures, and
//! the metrics scraper's scrapes, errors, samples and durations, and the elastic pool's events
//! and nodes.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a state gauge or counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// Run or job state.
    pub state: String,
}

/// Labels of the queue gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabel {
    /// `runs` (waiting for a concurrency slot) or `jobs` (waiting for an agent).
    pub queue: String,
}

/// Labels of the garbage collector's counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GcLabel {
    /// `cache` (evicted), `artifact` (expired) or `orphan` (a file no record named).
    pub kind: String,
}

/// Labels of a service's metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabel {
    /// Project name.
    pub project: String,
    /// Service name.
    pub service: String,
}

/// Labels of the service instances gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceStateLabel {
    /// Project name.
    pub project: String,
    /// Service name.
    pub service: String,
    /// Instance state.
    pub state: String,
}

/// Labels of a metric rule's counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabel {
    /// Project name.
    pub project: String,
    /// Metric rule name.
    pub rule: String,
}

/// Labels of the usage counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UsageLabel {
    /// Project name.
    pub project: String,
    /// Pipeline name.
    pub pipeline: String,
}

/// Labels of the elastic pool's event counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolEventLabel {
    /// Node group (empty for a task no group takes).
    pub group: String,
    /// Event kind (`scale-out`, `scale-in`, `provider-failed`...).
    pub kind: String,
}

/// Labels of the elastic pool's nodes gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolNodeLabel {
    /// Node group.
    pub group: String,
    /// `coming`, `ready`, `draining` or `removing`.
    pub state: String,
}

/// A counter of fractional amounts (core-seconds, GiB-seconds).
type FloatCounter = Counter<f64, std::sync::atomic::AtomicU64>;

/// Labels of the API latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabel {
    /// HTTP method.
    pub method: String,
    /// Route pattern (`/api/v1/runs/{run}`), never the raw path.
    pub route: String,
    /// Status code.
    pub status: String,
}

/// Every metric the server keeps.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Runs per state (set from the store at each scrape).
    pub runs: Family<StateLabel, Gauge>,
    /// Runs that ended since start, per final state.
    pub runs_finished: Family<StateLabel, Counter>,
    /// Queue depths.
    pub queue: Family<QueueLabel, Gauge>,
    /// Job attempt durations per final state.
    pub job_duration: Family<StateLabel, Histogram>,
    /// Bytes of log text stored.
    pub log_bytes: Counter,
    /// Log lines stored.
    pub log_lines: Counter,
    /// Connected agents.
    pub agents: Gauge,
    /// Leases held by agents.
    pub leases: Gauge,
    /// API request durations.
    pub http: Family<HttpLabel, Histogram>,
    /// Bytes of all projects' caches (set at each scrape and garbage collection).
    pub cache_bytes: Gauge,
    /// What the garbage collector removed since start, by kind.
    pub gc_removed: Family<GcLabel, Counter>,
    /// Bytes of blob files the garbage collector deleted since start.
    pub gc_freed_bytes: Counter,
    /// Live instances of each service, by state.
    pub service_instances: Family<InstanceStateLabel, Gauge>,
    /// Instances that ended on their own (exited, failed their check, lost with their
    /// agent): each is replaced unless its restart policy says not.
    pub service_restarts: Family<ServiceLabel, Counter>,
    /// Health checks that turned an instance unhealthy.
    pub service_health_failures: Family<ServiceLabel, Counter>,
    /// Scrapes of instances by metric rules (one per target and interval).
    pub scrapes: Family<RuleLabel, Counter>,
    /// Scrapes that failed (no answer, not 2xx, timed out, a page that does not parse).
    pub scrape_errors: Family<RuleLabel, Counter>,
    /// Samples read by successful scrapes.
    pub scrape_samples: Family<RuleLabel, Counter>,
    /// How long each scrape took.
    pub scrape_duration: Histogram,
    /// Reserved CPU × seconds of finished attempts (recorded usage), since start.
    pub usage_cpu: Family<UsageLabel, FloatCounter>,
    /// Reserved memory GiB × seconds of finished attempts, since start.
    pub usage_memory: Family<UsageLabel, FloatCounter>,
    /// Reserved disk GiB × seconds of finished attempts, since start.
    pub usage_disk: Family<UsageLabel, FloatCounter>,
    /// Seconds of finished attempts, since start.
    pub usage_seconds: Family<UsageLabel, Counter>,
    /// Finished attempts with a usage record, since start.
    pub usage_attempts: Family<UsageLabel, Counter>,
    /// The elastic pool's events (decisions and what became of them), since start.
    pub pool_events: Family<PoolEventLabel, Counter>,
    /// Nodes of each node group, by state.
    pub pool_nodes: Family<PoolNodeLabel, Gauge>,
    /// Nodes asked for from providers, since start.
    pub pool_nodes_requested: Family<GroupLabel, Counter>,
}

/// Labels of a node group's counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabel {
    /// Node group.
    pub group: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric under the `kiln` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("kiln");
        let runs = Family::<StateLabel, Gauge>::default();
        let runs_finished = Family::<StateLabel, Counter>::default();
        let queue = Family::<QueueLabel, Gauge>::default();
        let job_duration = Family::<StateLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.05, 2.0, 16))
        });
        let log_bytes = Counter::default();
        let log_lines = Counter::default();
        let agents = Gauge::default();
        let leases = Gauge::default();
        let http = Family::<HttpLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        let cache_bytes = Gauge::default();
        let gc_removed = Family::<GcLabel, Counter>::default();
        let gc_freed_bytes = Counter::default();
        let service_instances = Family::<InstanceStateLabel, Gauge>::default();
        let service_restarts = Family::<ServiceLabel, Counter>::default();
        let service_health_failures = Family::<ServiceLabel, Counter>::default();
        let scrapes = Family::<RuleLabel, Counter>::default();
        let scrape_errors = Family::<RuleLabel, Counter>::default();
        let scrape_samples = Family::<RuleLabel, Counter>::default();
        let scrape_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let usage_cpu = Family::<UsageLabel, FloatCounter>::default();
        let usage_memory = Family::<UsageLabel, FloatCounter>::default();
        let usage_disk = Family::<UsageLabel, FloatCounter>::default();
        let usage_seconds = Family::<UsageLabel, Counter>::default();
        let usage_attempts = Family::<UsageLabel, Counter>::default();
        let pool_events = Family::<PoolEventLabel, Counter>::default();
        let pool_nodes = Family::<PoolNodeLabel, Gauge>::default();
        let pool_nodes_requested = Family::<GroupLabel, Counter>::default();
        registry.register(
            "pool_events",
            "The elastic pool's events by node group and kind (scale-out, scale-in, provider-failed...)",
            pool_events.clone(),
        );
        registry.register("pool_nodes", "Nodes of each node group, by state", pool_nodes.clone());
        registry.register(
            "pool_nodes_requested",
            "Nodes asked for from node groups' providers",
            pool_nodes_requested.clone(),
        );
        registry.register(
            "usage_cpu_core_seconds",
            "Reserved CPU cores times seconds of finished job attempts",
            usage_cpu.clone(),
        );
        registry.register(
            "usage_memory_gib_seconds",
            "Reserved memory GiB times seconds of finished job attempts",
            usage_memory.clone(),
        );
        registry.register(
            "usage_disk_gib_seconds",
            "Reserved disk GiB times seconds of finished job attempts",
            usage_disk.clone(),
        );
        registry.register(
            "usage_attempt_seconds",
            "Seconds (rounded up per attempt) of finished job attempts",
            usage_seconds.clone(),
        );
        registry.register(
            "usage_attempts",
            "Finished job attempts with a usage record",
            usage_attempts.clone(),
        );
        registry.register(
            "scrapes",
            "Scrapes of instances by metric rules (one per target and interval)",
            scrapes.clone(),
        );
        registry.register(
            "scrape_errors",
            "Scrapes that failed: no answer, not 2xx, timed out, or a page that does not parse",
            scrape_errors.clone(),
        );
        registry.register(
            "scrape_samples",
            "Samples read by successful scrapes",
            scrape_samples.clone(),
        );
        registry.register(
            "scrape_duration_seconds",
            "How long each scrape of an instance took",
            scrape_duration.clone(),
        );
        registry.register(
            "service_instances",
            "Live instances of each service, by state",
            service_instances.clone(),
        );
        registry.register(
            "service_restarts",
            "Instances that exited, failed their check or were lost (each is replaced unless its restart policy says not)",
            service_restarts.clone(),
        );
        registry.register(
            "service_health_failures",
            "Health checks that turned an instance unhealthy",
            service_health_failures.clone(),
        );
        registry.register("cache_bytes", "Bytes of all projects' caches", cache_bytes.clone());
        registry.register(
            "gc_removed",
            "Caches evicted, artifacts expired and orphan blob files deleted since start",
            gc_removed.clone(),
        );
        registry.register(
            "gc_freed_bytes",
            "Bytes of blob files deleted by the garbage collector since start",
            gc_freed_bytes.clone(),
        );
        registry.register("runs", "Runs by state", runs.clone());
        registry.register(
            "runs_finished",
            "Runs ended since the server started",
            runs_finished.clone(),
        );
        registry.register(
            "queue_depth",
            "Runs waiting for a concurrency slot, jobs waiting for an agent",
            queue.clone(),
        );
        registry.register("job_duration_seconds", "Job attempt durations", job_duration.clone());
        registry.register("log_bytes", "Bytes of job log text stored", log_bytes.clone());
        registry.register("log_lines", "Job log lines stored", log_lines.clone());
        registry.register("agents", "Connected agents", agents.clone());
        registry.register("leases", "Job attempts leased to agents", leases.clone());
        registry.register("http_request_duration_seconds", "API request durations", http.clone());
        Metrics {
            registry: Mutex::new(registry),
            runs,
            runs_finished,
            queue,
            job_duration,
            log_bytes,
            log_lines,
            agents,
            leases,
            http,
            cache_bytes,
            gc_removed,
            gc_freed_bytes,
            service_instances,
            service_restarts,
            service_health_failures,
            scrapes,
            scrape_errors,
            scrape_samples,
            scrape_duration,
            usage_cpu,
            usage_memory,
            usage_disk,
            usage_seconds,
            usage_attempts,
            pool_events,
            pool_nodes,
            pool_nodes_requested,
        }
    }

    /// A finished attempt's usage record of `project` was stored (once per attempt).
    pub fn usage_recorded(&self, project: &str, u: &kiln_store::UsageRecord) {
        let label = UsageLabel { project: project.to_string(), pipeline: u.pipeline.clone() };
        let t = crate::usage::Amounts::of(u);
        self.usage_cpu.get_or_create(&label).inc_by(t.cpu_core_seconds);
        self.usage_memory.get_or_create(&label).inc_by(t.memory_gib_seconds);
        self.usage_disk.get_or_create(&label).inc_by(t.disk_gib_seconds);
        self.usage_seconds.get_or_create(&label).inc_by(u.seconds);
        self.usage_attempts.get_or_create(&label).inc();
    }

    /// Rule `rule` of `project` scraped one target in `took`: `Some(samples)` read, or `None`
    /// when the scrape failed.
    pub fn scraped(&self, project: &str, rule: &str, samples: Option<u64>, took: Duration) {
        let label = RuleLabel { project: project.to_string(), rule: rule.to_string() };
        self.scrapes.get_or_create(&label).inc();
        match samples {
            Some(n) => {
                self.scrape_samples.get_or_create(&label).inc_by(n);
            }
            None => {
                self.scrape_errors.get_or_create(&label).inc();
            }
        }
        self.scrape_duration.observe(took.as_secs_f64());
    }

    /// A garbage collection removed `caches`, `artifacts` and `orphans`, freeing `bytes`.
    pub fn gc_removed(&self, caches: u64, artifacts: u64, orphans: u64, bytes: u64) {
        for (kind, n) in [("cache", caches), ("artifact", artifacts), ("orphan", orphans)] {
            self.gc_removed.get_or_create(&GcLabel { kind: kind.to_string() }).inc_by(n);
        }
        self.gc_freed_bytes.inc_by(bytes);
    }

    /// The live instances of a service now: how many per state (every state is set, so a
    /// state no instance is in any more reads 0).
    pub fn service_states<'a>(
        &self,
        project: &str,
        service: &str,
        states: impl Iterator<Item = &'a str>,
    ) {
        let mut counts: std::collections::BTreeMap<&str, i64> =
            kiln_service::InstanceState::ALL.iter().map(|s| (s.as_str(), 0)).collect();
        for s in states {
            if let Some(n) = counts.get_mut(s) {
                *n += 1;
            }
        }
        for (state, n) in counts {
            let label = InstanceStateLabel {
                project: project.to_string(),
                service: service.to_string(),
                state: state.to_string(),
            };
            self.service_instances.get_or_create(&label).set(n);
        }
    }

    /// A job attempt ended in `state` after `took`.
    pub fn job_finished(&self, state: &str, took: Duration) {
        self.job_duration
            .get_or_create(&StateLabel { state: state.to_string() })
            .observe(took.as_secs_f64());
    }

    /// A run ended in `state`.
    pub fn run_finished(&self, state: &str) {
        self.runs_finished.get_or_create(&StateLabel { state: state.to_string() }).inc();
    }

    /// A log line of `bytes` was stored.
    pub fn log_line(&self, bytes: usize) {
        self.log_lines.inc();
        self.log_bytes.inc_by(bytes as u64);
    }

    /// An API request finished.
    pub fn request(&self, method: &str, route: &str, status: u16, took: Duration) {
        self.http
            .get_or_create(&HttpLabel {
                method: method.to_string(),
                route: route.to_string(),
                status: status.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("writing to a String");
        out
    }
}
