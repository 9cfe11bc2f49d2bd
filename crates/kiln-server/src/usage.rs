//! Usage accounting's arithmetic: a finished attempt's reserved amounts times its seconds,
//! and the totals of a project's records grouped by day, pipeline or node group. Pure: the
//! records come from the store (`kiln_store::Store::usage_records`), written in the
//! transactions that record each attempt's start and end (`coord/actor.rs`).

use std::collections::BTreeMap;

use kiln_api::usage::{UsageAmounts, UsageAttempt, UsageBy, UsageGroup};
use kiln_store::UsageRecord;

/// Bytes in a GiB.
const GIB: f64 = (1u64 << 30) as f64;

/// One record's amounts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Amounts {
    /// Reserved CPU cores × seconds.
    pub cpu_core_seconds: f64,
    /// Reserved memory GiB × seconds.
    pub memory_gib_seconds: f64,
    /// Reserved disk GiB × seconds.
    pub disk_gib_seconds: f64,
}

impl Amounts {
    /// What `u` reserved times its seconds.
    pub fn of(u: &UsageRecord) -> Amounts {
        let s = u.seconds as f64;
        Amounts {
            cpu_core_seconds: u.cpu_millis as f64 * s / 1000.0,
            memory_gib_seconds: u.memory_bytes as f64 * s / GIB,
            disk_gib_seconds: u.disk_bytes as f64 * s / GIB,
        }
    }
}

/// Adds one record to a total.
fn add(total: &mut UsageAmounts, u: &UsageRecord) {
    let a = Amounts::of(u);
    total.attempts += 1;
    total.seconds += u.seconds;
    total.cpu_core_seconds += a.cpu_core_seconds;
    total.memory_gib_seconds += a.memory_gib_seconds;
    total.disk_gib_seconds += a.disk_gib_seconds;
}

/// The key of `u` under `by`.
fn key(u: &UsageRecord, by: UsageBy) -> String {
    match by {
        UsageBy::Day => u.ended_at.format("%Y-%m-%d").to_string(),
        UsageBy::Pipeline => u.pipeline.clone(),
        UsageBy::NodeGroup => u.node_group.clone(),
    }
}

/// The totals of `records` per key of `by` (sorted by key), and of all of them.
pub fn totals(records: &[UsageRecord], by: UsageBy) -> (Vec<UsageGroup>, UsageAmounts) {
    let mut groups: BTreeMap<String, UsageAmounts> = BTreeMap::new();
    let mut total = UsageAmounts::default();
    for u in records {
        add(groups.entry(key(u, by)).or_default(), u);
        add(&mut total, u);
    }
    let groups = groups.into_iter().map(|(key, amounts)| UsageGroup { key, amounts }).collect();
    (groups, total)
}

/// The API's view of a record.
pub fn attempt(u: &UsageRecord) -> UsageAttempt {
    UsageAttempt {
        run: u.run.to_string(),
        job: u.job.clone(),
        attempt: u.attempt,
        pipeline: u.pipeline.clone(),
        environment: u.environment.clone(),
        node: u.node.clone(),
        node_group: u.node_group.clone(),
        cpu_millis: u.cpu_millis,
        memory_bytes: u.memory_bytes,
        disk_bytes: u.disk_bytes,
        started_at: u.started_at,
        ended_at: u.ended_at,
        seconds: u.seconds,
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn record(pipeline: &str, group: &str, end: &str, seconds: u64) -> UsageRecord {
        let ended_at = at(end);
        UsageRecord {
            run: kiln_store::RunId::new(),
            job: "build".into(),
            attempt: 1,
            project: kiln_store::ProjectId::new(),
            pipeline: pipeline.into(),
            environment: String::new(),
            node: "n1".into(),
            node_group: group.into(),
            cpu_millis: 500,
            memory_bytes: 256 << 20,
            disk_bytes: 1 << 30,
            started_at: ended_at - chrono::Duration::seconds(seconds as i64),
            ended_at,
            seconds,
        }
    }

    #[test]
    fn a_record_is_its_reservation_times_its_seconds() {
        let a = Amounts::of(&record("build", "", "2026-12-07T10:00:00Z", 4));
        assert_eq!(a.cpu_core_seconds, 2.0);
        assert_eq!(a.memory_gib_seconds, 1.0);
        assert_eq!(a.disk_gib_seconds, 4.0);
    }

    #[test]
    fn totals_group_by_day_pipeline_and_node_group() {
        let records = [
            record("build", "ci", "2026-12-06T23:59:59Z", 2),
            record("build", "", "2026-12-07T00:00:00Z", 3),
            record("deploy", "ci", "2026-12-07T12:00:00Z", 5),
        ];
        let (days, total) = totals(&records, UsageBy::Day);
        let keys = |g: &[UsageGroup]| {
            g.iter().map(|g| (g.key.clone(), g.amounts.attempts, g.amounts.seconds)).collect()
        };
        let days: Vec<_> = keys(&days);
        assert_eq!(days, [("2026-12-06".into(), 1, 2), ("2026-12-07".into(), 2, 8)]);
        assert_eq!((total.attempts, total.seconds, total.cpu_core_seconds), (3, 10, 5.0));
        let pipelines: Vec<_> = keys(&totals(&records, UsageBy::Pipeline).0);
        assert_eq!(pipelines, [("build".into(), 2, 5), ("deploy".into(), 1, 5)]);
        let groups: Vec<_> = keys(&totals(&records, UsageBy::NodeGroup).0);
        assert_eq!(groups, [(String::new(), 1, 3), ("ci".into(), 2, 7)]);
    }
}
