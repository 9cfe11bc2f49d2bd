//! The validated form of a service file (`kind: service`): [`ServiceSpec`], what the service
//! controller, the server and the agents consume, and the rolling-update arithmetic
//! ([`UpdatePolicy::resolve`], Kubernetes' `ResolveFenceposts`).
//!
//! Invariants of a spec [`crate::compile_service`] returned: `replicas` is 1 to
//! [`MAX_REPLICAS`]; `image` or `run.command` is set; port names are distinct and every
//! health probe names one of them; durations are more than zero (`grace` may be zero);
//! percentages are at most 100; `max_surge` and `max_unavailable` are not both zero;
//! label keys and values follow Kubernetes' syntax; constraints parse with
//! `kiln_scheduler`'s parser.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::plan::{Resources, RunSpec, Scheduling};

/// Most replicas one service may ask for.
pub const MAX_REPLICAS: u32 = 1000;

/// A checked service: what to run, how many, where, how its health is judged, and how it
/// restarts and updates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// The service's name: 1 to 63 of `[a-z0-9-]`, starting and ending with a letter or digit.
    pub name: String,
    /// Container image; `None` runs `run.command` on the process executor.
    pub image: Option<String>,
    /// What an instance runs.
    pub run: ServiceRun,
    /// Env of every instance, as written (no `${{ }}` expressions in service files).
    pub env: BTreeMap<String, String>,
    /// Resources of each instance.
    pub resources: Resources,
    /// How many instances should run (1 to [`MAX_REPLICAS`]; default 1).
    pub replicas: u32,
    /// Constraints and ports on the pool, the same data a job carries.
    #[serde(default, skip_serializing_if = "Scheduling::is_default")]
    pub scheduling: Scheduling,
    /// Labels (Kubernetes' syntax), for selectors and discovery.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// How an instance's health is checked; `None`: running counts as healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthCheck>,
    /// What happens when an instance exits.
    pub restart: RestartPolicy,
    /// How a new version replaces the running one.
    pub update: UpdatePolicy,
    /// The project environment the service runs in: every instance gets its variables and
    /// secrets, and `config` reads that environment's releases. A deploy sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Config files of the config center written into every instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ServiceConfig>,
}

impl ServiceSpec {
    /// The scheduler's request for one instance: `task` (unique), `group` (what UNIQUE,
    /// GROUP_BY... count together, such as `<project>/<service>`), `project`, and the
    /// resources to ask when the spec writes none (`defaults`, per amount).
    pub fn ask(
        &self,
        task: &str,
        group: &str,
        project: &str,
        defaults: kiln_scheduler::Resources,
    ) -> Result<kiln_scheduler::Ask, kiln_scheduler::ConstraintError> {
        self.scheduling.ask(&self.resources, task, group, project, defaults)
    }
}

/// The config center's files of one application, written into every instance of a service
/// (the release of the service's environment the instance gets, gray releases included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceConfig {
    /// The config center's application; `None`: the service's own name (a deploy's: the
    /// name in its service file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// Where the files appear in the instance's container (an absolute path; default
    /// [`ServiceConfig::DEFAULT_PATH`]). Every instance also gets `KILN_CONFIG_DIR`.
    pub path: String,
    /// What a new release does to a running instance.
    pub on_change: OnChange,
}

impl ServiceConfig {
    /// Where the files are when the file does not say.
    pub const DEFAULT_PATH: &str = "/etc/kiln/config";

    /// The application whose files the service of this name gets.
    pub fn app_or<'a>(&'a self, service: &'a str) -> &'a str {
        self.app.as_deref().unwrap_or(service)
    }
}

/// What a new config release does to a running instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnChange {
    /// A rolling restart: every instance is replaced, as `kiln service restart` does.
    Restart,
    /// The files are rewritten in place, then the instance gets this signal (`HUP`, `USR1`…:
    /// the name without `SIG`).
    Signal(String),
    /// The files are rewritten in place; the program watches them itself.
    None,
}

impl OnChange {
    /// The signals a service may ask for.
    pub const SIGNALS: &[&str] = &["HUP", "USR1", "USR2", "INT", "QUIT", "TERM", "WINCH"];
}

/// What an instance runs: the image's entrypoint (or `command`) with `args`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRun {
    /// Replaces the image's entrypoint when set; required without an image.
    pub command: Option<Vec<String>>,
    /// Arguments.
    pub args: Vec<String>,
}

impl ServiceRun {
    /// The same thing as a job's [`RunSpec`] (component style), for code shared with jobs.
    pub fn run_spec(&self) -> RunSpec {
        RunSpec::Command { command: self.command.clone(), args: self.args.clone() }
    }
}

/// A health check, run next to the instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// What is checked.
    pub probe: Probe,
    /// How long after start failures do not count yet (default 0s).
    pub grace: Duration,
    /// Time between checks (default 10s).
    pub interval: Duration,
    /// How long one check may take before it counts as failed (default 1s).
    pub timeout: Duration,
    /// Consecutive failures after which the instance is unhealthy (default 3, at least 1).
    pub failures: u32,
}

impl HealthCheck {
    /// Kubernetes' probe default `periodSeconds`.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
    /// Kubernetes' probe default `timeoutSeconds`.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
    /// Kubernetes' probe default `failureThreshold`.
    pub const DEFAULT_FAILURES: u32 = 3;
}

/// One kind of health probe; ports are named as in the service's `ports`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    /// A TCP connection to the port succeeds.
    Tcp {
        /// The port's name.
        port: String,
    },
    /// An HTTP GET of `path` on the port answers 200 to 399.
    Http {
        /// The port's name.
        port: String,
        /// The path, starting with `/`.
        path: String,
    },
    /// The command, run inside the instance, exits 0.
    Command(Vec<String>),
}

/// Whether and how fast an exited instance is started again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    /// When an instance is restarted.
    pub policy: Restart,
    /// Wait before the first restart; doubled after each failed one (default 10s).
    pub initial_backoff: Duration,
    /// Longest wait between restarts (default 5m).
    pub max_backoff: Duration,
}

impl RestartPolicy {
    /// Kubernetes' crash-loop back-off starts at 10s.
    pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_secs(10);
    /// Kubernetes' crash-loop back-off is capped at 5 minutes.
    pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(300);
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            policy: Restart::Always,
            initial_backoff: Self::DEFAULT_INITIAL_BACKOFF,
            max_backoff: Self::DEFAULT_MAX_BACKOFF,
        }
    }
}

/// When an exited instance is restarted.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    /// Whatever its exit code (the default: a service is meant to keep running).
    #[default]
    Always,
    /// Only after a non-zero exit.
    OnFailure,
    /// Never: an exited instance stays exited.
    Never,
}

impl Restart {
    /// The names, as written.
    pub const NAMES: &[&str] = &["always", "on-failure", "never"];
}

/// How a rolling update replaces instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdatePolicy {
    /// How many instances may run above `replicas` during an update (default 25%).
    pub max_surge: Amount,
    /// How many of `replicas` may be unavailable during an update (default 25%).
    pub max_unavailable: Amount,
    /// An update not healthy by then rolls back by itself (default 10m).
    pub deadline: Duration,
}

impl UpdatePolicy {
    /// Kubernetes' default `progressDeadlineSeconds` (600).
    pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(600);

    /// The surge and unavailable counts for `replicas`, as Kubernetes'
    /// `ResolveFenceposts`: a surge percentage rounds up, an unavailable one rounds down, and
    /// when both end at 0, unavailable becomes 1 (an update must be able to move).
    pub fn resolve(&self, replicas: u32) -> Fenceposts {
        let surge = self.max_surge.scaled(replicas, true);
        let mut unavailable = self.max_unavailable.scaled(replicas, false);
        if surge == 0 && unavailable == 0 {
            unavailable = 1;
        }
        Fenceposts { surge, unavailable }
    }
}

impl Default for UpdatePolicy {
    /// Kubernetes' defaults: 25% surge, 25% unavailable.
    fn default() -> Self {
        UpdatePolicy {
            max_surge: Amount::Percent(25),
            max_unavailable: Amount::Percent(25),
            deadline: Self::DEFAULT_DEADLINE,
        }
    }
}

/// Resolved limits of a rolling update, in instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fenceposts {
    /// At most `replicas + surge` instances at once.
    pub surge: u32,
    /// At least `replicas - unavailable` available instances at once.
    pub unavailable: u32,
}

/// A number of instances, or a percentage of `replicas` (at most 100).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Amount {
    /// This many instances.
    Count(u32),
    /// This percentage of `replicas`.
    Percent(u32),
}

impl Amount {
    /// Zero, however written.
    pub fn is_zero(self) -> bool {
        matches!(self, Amount::Count(0) | Amount::Percent(0))
    }

    /// The amount for `replicas` instances; a percentage rounds up with `round_up`, down
    /// otherwise (Kubernetes' `GetScaledValueFromIntOrPercent`).
    pub fn scaled(self, replicas: u32, round_up: bool) -> u32 {
        match self {
            Amount::Count(n) => n,
            Amount::Percent(p) => {
                let product = u64::from(p) * u64::from(replicas);
                let n = if round_up { product.div_ceil(100) } else { product / 100 };
                u32::try_from(n).unwrap_or(u32::MAX)
            }
        }
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amount::Count(n) => write!(f, "{n}"),
            Amount::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// Why a text is not an [`Amount`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// Neither a whole number nor a percentage.
    #[error("expected a whole number such as 1 or a percentage such as 25%, found '{0}'")]
    Syntax(String),
    /// A percentage over 100.
    #[error("{0}% is more than 100%: the percentage is of replicas, at most all of them")]
    OverHundred(u32),
}

impl std::str::FromStr for Amount {
    type Err = AmountError;

    /// `3` or `25%`; a percentage is at most 100.
    fn from_str(text: &str) -> Result<Amount, AmountError> {
        let t = text.trim();
        let digits = |s: &str| {
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse::<u32>().ok())
                .flatten()
                .ok_or_else(|| AmountError::Syntax(text.to_owned()))
        };
        match t.strip_suffix('%') {
            Some(p) => {
                let p = digits(p.trim_end())?;
                if p > 100 {
                    return Err(AmountError::OverHundred(p));
                }
                Ok(Amount::Percent(p))
            }
            None => Ok(Amount::Count(digits(t)?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(surge: &str, unavailable: &str) -> UpdatePolicy {
        UpdatePolicy {
            max_surge: surge.parse().unwrap_or(Amount::Count(u32::MAX)),
            max_unavailable: unavailable.parse().unwrap_or(Amount::Count(u32::MAX)),
            ..UpdatePolicy::default()
        }
    }

    #[test]
    fn fenceposts_round_as_kubernetes() {
        // (surge, unavailable, replicas) -> (surge, unavailable)
        let table = [
            ("25%", "25%", 10, (3, 2)),
            ("25%", "25%", 4, (1, 1)),
            ("25%", "25%", 1, (1, 0)),
            ("25%", "25%", 3, (1, 0)),
            ("0", "25%", 3, (0, 1)), // 0.75 rounds down to 0, then the fencepost rule
            ("0%", "10%", 5, (0, 1)),
            ("1", "0", 3, (1, 0)),
            ("0", "1", 3, (0, 1)),
            ("100%", "0", 7, (7, 0)),
            ("0", "100%", 7, (0, 7)),
            ("50%", "50%", 5, (3, 2)),
            ("1%", "99%", 1000, (10, 990)),
            ("5", "2", 3, (5, 2)), // counts are not capped, as in ResolveFenceposts
        ];
        for (surge, unavailable, replicas, (s, u)) in table {
            let got = policy(surge, unavailable).resolve(replicas);
            assert_eq!(
                got,
                Fenceposts { surge: s, unavailable: u },
                "surge {surge}, unavailable {unavailable}, replicas {replicas}"
            );
        }
    }

    #[test]
    fn defaults_are_kubernetes() {
        let d = UpdatePolicy::default();
        assert_eq!((d.max_surge, d.max_unavailable), (Amount::Percent(25), Amount::Percent(25)));
        assert_eq!(d.deadline, Duration::from_secs(600));
        assert_eq!(d.resolve(10), Fenceposts { surge: 3, unavailable: 2 });
    }

    #[test]
    fn amounts() {
        assert_eq!("3".parse(), Ok(Amount::Count(3)));
        assert_eq!(" 25% ".parse(), Ok(Amount::Percent(25)));
        assert_eq!("100%".parse(), Ok(Amount::Percent(100)));
        assert_eq!("101%".parse::<Amount>(), Err(AmountError::OverHundred(101)));
        for bad in ["", "%", "-1", "1.5", "25 %x", "x%", "99999999999"] {
            assert!(matches!(bad.parse::<Amount>(), Err(AmountError::Syntax(_))), "{bad}");
        }
        assert_eq!(Amount::Percent(25).to_string(), "25%");
        assert!(Amount::Percent(0).is_zero() && Amount::Count(0).is_zero());
        assert_eq!(Amount::Percent(100).scaled(u32::MAX, true), u32::MAX);
    }
}
