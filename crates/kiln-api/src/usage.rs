//! Usage accounting in the REST API: what a project's job attempts reserved and for how long
//! (`GET /api/v1/projects/{project}/usage`, `kiln usage`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How usage totals are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UsageBy {
    /// By the UTC day the attempts ended (`2026-12-07`).
    Day,
    /// By pipeline name.
    Pipeline,
    /// By the `group` attribute of the node the attempts ran on (`""` without one).
    NodeGroup,
}

impl UsageBy {
    /// Every grouping, in the order `--by` lists them.
    pub const ALL: [UsageBy; 3] = [UsageBy::Day, UsageBy::Pipeline, UsageBy::NodeGroup];

    /// The name on the wire and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            UsageBy::Day => "day",
            UsageBy::Pipeline => "pipeline",
            UsageBy::NodeGroup => "node-group",
        }
    }
}

impl std::fmt::Display for UsageBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for UsageBy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        UsageBy::ALL.into_iter().find(|b| b.as_str() == s).ok_or_else(|| {
            format!("`{s}` is not a usage grouping: expected one of day, pipeline, node-group")
        })
    }
}

/// Reserved amounts times seconds, summed over attempts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UsageAmounts {
    /// Finished attempts.
    pub attempts: u64,
    /// Their seconds (each attempt's rounded up to the second).
    pub seconds: u64,
    /// Reserved CPU cores × seconds.
    pub cpu_core_seconds: f64,
    /// Reserved memory GiB × seconds.
    pub memory_gib_seconds: f64,
    /// Reserved disk GiB × seconds.
    pub disk_gib_seconds: f64,
}

/// The totals of one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UsageGroup {
    /// The day (`YYYY-MM-DD`), pipeline or node group.
    pub key: String,
    /// Its totals.
    #[serde(flatten)]
    pub amounts: UsageAmounts,
}

/// One finished job attempt's usage record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UsageAttempt {
    /// Run id.
    pub run: String,
    /// Job id.
    pub job: String,
    /// Attempt (1 for the first).
    pub attempt: u32,
    /// Pipeline name.
    pub pipeline: String,
    /// The job's `environment:` (`""` without one).
    pub environment: String,
    /// The node it ran on.
    pub node: String,
    /// The node's `group` attribute (`""` without one).
    pub node_group: String,
    /// CPU reserved, in thousandths of a core.
    pub cpu_millis: u64,
    /// Memory reserved, in bytes.
    pub memory_bytes: u64,
    /// Disk reserved, in bytes.
    pub disk_bytes: u64,
    /// When the server heard it started.
    pub started_at: DateTime<Utc>,
    /// When the server recorded its end.
    pub ended_at: DateTime<Utc>,
    /// Whole seconds from start to end, rounded up.
    pub seconds: u64,
}

/// `GET /api/v1/projects/{project}/usage`: a project's usage of attempts that ended in
/// `[since, until)`, grouped, with the records it sums.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UsageReport {
    /// Project name.
    pub project: String,
    /// Start of the window (inclusive).
    pub since: DateTime<Utc>,
    /// End of the window (exclusive).
    pub until: DateTime<Utc>,
    /// How `groups` are grouped.
    pub by: UsageBy,
    /// Totals per group, by key.
    pub groups: Vec<UsageGroup>,
    /// Totals of the whole window.
    pub total: UsageAmounts,
    /// The attempts summed, oldest end first.
    pub attempts: Vec<UsageAttempt>,
}

/// Reads a time of a usage window (`--since`, `--until`, `?since=`): RFC 3339
/// (`2026-12-01T08:00:00Z`), a UTC day (`2026-12-01`, its midnight) or an age before `now`
/// (`90s`, `30m`, `12h`, `7d`, `2w`). The error names what was given and what is expected.
pub fn parse_time(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    let expected = "expected an RFC 3339 time (2026-12-01T08:00:00Z), a day (2026-12-01) \
                    or an age such as 90s, 30m, 12h, 7d or 2w";
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.to_utc());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    let unit = s.chars().last().unwrap_or(' ');
    let secs = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        _ => return Err(format!("`{s}` is not a time: {expected}")),
    };
    let age = s[..s.len() - 1]
        .parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(secs))
        .filter(|v| (0..=100 * 365 * 86_400).contains(v))
        .ok_or_else(|| format!("`{s}` is not a time: {expected}"))?;
    Ok(now - chrono::Duration::seconds(age))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_days_or_ages() {
        let now = DateTime::parse_from_rfc3339("2026-12-07T12:00:00Z").unwrap().to_utc();
        let t = |s| parse_time(s, now).map(|t| t.to_rfc3339());
        assert_eq!(t("2026-12-01").unwrap(), "2026-12-01T00:00:00+00:00");
        assert_eq!(t("2026-12-01T08:00:00+01:00").unwrap(), "2026-12-01T07:00:00+00:00");
        assert_eq!(t("7d").unwrap(), "2026-11-30T12:00:00+00:00");
        assert_eq!(t("90s").unwrap(), "2026-12-07T11:58:30+00:00");
        assert_eq!(t("2w").unwrap(), "2026-11-23T12:00:00+00:00");
        for bad in
            ["garbage", "", "7", "-3d", "d", "99999999999d", "9223372036854775807w", "2026-13-01"]
        {
            let e = t(bad).unwrap_err();
            assert!(e.contains("is not a time") && e.contains("7d"), "{bad}: {e}");
        }
        assert_eq!("node-group".parse::<UsageBy>(), Ok(UsageBy::NodeGroup));
        assert!("nope".parse::<UsageBy>().unwrap_err().contains("day, pipeline, node-group"));
    }
}
