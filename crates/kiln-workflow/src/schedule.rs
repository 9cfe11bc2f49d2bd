//! Schedules (`on: schedule:`): a cron expression read in an IANA time zone, its fire times,
//! and what a scheduler does with fires it reaches late ([`decide`]).
//!
//! Pure: every function takes the time it reasons about; nothing reads a clock. Expressions
//! have 5 fields (minute hour day-of-month month day-of-week, as Vixie cron) or 6 with seconds
//! first (`*/10 * * * * *`); names (`MON`, `JAN`), `L`, `W`, `#` and `@daily`-style aliases
//! are read by `croner`. Fire times follow the zone's civil clock: a time skipped by a
//! daylight-saving jump fires at the first instant after the gap, a time that occurs twice
//! fires once.

use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Serialize};

use crate::read::suggest;

/// The zone of a schedule that names none.
pub const DEFAULT_TIMEZONE: &str = "UTC";

/// A fire the scheduler reaches within this long after its time is on time; a later one was
/// missed (the server was down or stalled), and [`Missed`] decides.
pub const ON_TIME: TimeDelta = TimeDelta::seconds(60);

/// What a schedule does with fires missed while the server was down (`missed:`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Missed {
    /// Start nothing for them; wait for the next fire time (the default).
    #[default]
    Skip,
    /// Start one run for all of them together, as soon as the server is back.
    RunOnce,
}

impl Missed {
    /// The policies as written.
    pub const NAMES: &[&str] = &["skip", "run-once"];

    /// The policy as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Missed::Skip => "skip",
            Missed::RunOnce => "run-once",
        }
    }
}

impl fmt::Display for Missed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A cron expression in a time zone, ready to compute fire times.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    tz: Tz,
}

/// Reads a cron expression of 5 fields, or 6 with seconds first.
pub fn parse_cron(text: &str) -> Result<Cron, String> {
    let fields = text.split_whitespace().count();
    if !(text.trim_start().starts_with('@') || fields == 5 || fields == 6) {
        return Err(format!(
            "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds \
             first, found {fields}"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(text)
        .map_err(|e| {
            let m = match e {
                croner::errors::CronError::InvalidPattern(m)
                | croner::errors::CronError::IllegalCharacters(m)
                | croner::errors::CronError::ComponentError(m) => m,
                other => other.to_string(),
            };
            format!(
                "{}; fields: [second 0-59] minute 0-59, hour 0-23, day of month 1-31, month \
                 1-12 or JAN-DEC, day of week 0-7 or SUN-SAT",
                m.trim_end_matches('.').to_lowercase()
            )
        })
}

/// Reads an IANA time zone name (`Asia/Shanghai`, `UTC`), suggesting the closest one.
pub fn parse_timezone(text: &str) -> Result<Tz, String> {
    text.parse::<Tz>().map_err(|_| {
        let names: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|t| t.name()).collect();
        let hint = names
            .iter()
            .find(|n| n.eq_ignore_ascii_case(text))
            .copied()
            .or_else(|| suggest(text, &names))
            .map(|s| format!(" (did you mean '{s}'?)"))
            .unwrap_or_default();
        format!("'{text}' is not an IANA time zone such as Asia/Shanghai or UTC{hint}")
    })
}

impl Schedule {
    /// A schedule of `cron` in the zone `timezone`, or what is wrong with either.
    pub fn parse(cron: &str, timezone: &str) -> Result<Schedule, String> {
        let cron = parse_cron(cron).map_err(|e| format!("cron '{cron}': {e}"))?;
        let tz = parse_timezone(timezone)?;
        Ok(Schedule { cron, tz })
    }

    /// The zone fire times are read in.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The first fire time strictly after `t`; `None` when there is none (such as 30 February).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.tz), false)
            .ok()
            .map(|n| n.with_timezone(&Utc))
    }

    /// The latest fire time at or before `t`.
    fn latest_at(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_previous_occurrence(&t.with_timezone(&self.tz), true)
            .ok()
            .map(|n| n.with_timezone(&Utc))
    }

    /// The next `n` fire times strictly after `t`, in the schedule's zone.
    pub fn upcoming(&self, t: DateTime<Utc>, n: usize) -> Vec<DateTime<Tz>> {
        let mut out = Vec::with_capacity(n);
        let mut at = t;
        while out.len() < n {
            let Some(next) = self.next_after(at) else { break };
            out.push(next.with_timezone(&self.tz));
            at = next;
        }
        out
    }
}

/// What a scheduler does at `now` with a schedule whose stored next fire time `due` has come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Start one run now.
    pub fire: bool,
    /// Fire times from `due` to `now` that get no run of their own (missed and skipped, or
    /// folded into the one `run-once` run). Counted up to [`MAX_COUNTED`].
    pub skipped: u32,
    /// The next fire time to store: the first one after `now`.
    pub next: Option<DateTime<Utc>>,
}

/// [`Decision::skipped`] stops counting here (a per-second schedule after a week away).
pub const MAX_COUNTED: u32 = 1000;

/// Decides what to do at `now` with a schedule due at `due` (`due <= now`) under `missed`.
///
/// At most one run starts, never a burst: the latest fire time at or before `now` starts it
/// when it is on time (reached within [`ON_TIME`]); otherwise every fire since `due` was
/// missed, and `run-once` starts one run for them while `skip` starts none. Earlier missed
/// fire times are counted in `skipped`. The next fire time is the first after `now`.
pub fn decide(
    schedule: &Schedule,
    missed: Missed,
    due: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Decision {
    let next = schedule.next_after(now);
    if due > now {
        return Decision { fire: false, skipped: 0, next: Some(due) };
    }
    let latest = schedule.latest_at(now).filter(|l| *l >= due).unwrap_or(due);
    let on_time = now - latest <= ON_TIME;
    // Fire times in [due, latest): never run on their own.
    let mut earlier = 0u32;
    let mut at = due;
    while at < latest && earlier < MAX_COUNTED {
        earlier += 1;
        match schedule.next_after(at) {
            Some(n) => at = n,
            None => break,
        }
    }
    let fire = on_time || missed == Missed::RunOnce;
    let skipped = if on_time || fire { earlier } else { earlier + 1 }.min(MAX_COUNTED);
    Decision { fire, skipped, next }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    #[test]
    fn five_and_six_fields_and_bad_ones() {
        let every_5m = Schedule::parse("*/5 * * * *", "UTC").unwrap();
        assert_eq!(every_5m.next_after(utc(2026, 1, 1, 0, 3, 0)), Some(utc(2026, 1, 1, 0, 5, 0)));
        let every_s = Schedule::parse("* * * * * *", "UTC").unwrap();
        assert_eq!(every_s.next_after(utc(2026, 1, 1, 0, 3, 0)), Some(utc(2026, 1, 1, 0, 3, 1)));
        let daily = Schedule::parse("@daily", "UTC").unwrap();
        assert_eq!(daily.next_after(utc(2026, 1, 1, 0, 3, 0)), Some(utc(2026, 1, 2, 0, 0, 0)));
        assert!(parse_cron("* * * *").unwrap_err().contains("expected 5 fields"));
        assert!(parse_cron("0 0 1 1 * 2030 *").unwrap_err().contains("found 7"));
        assert!(parse_cron("61 * * * *").is_err());
        assert!(parse_cron("x * * * *").is_err());
    }

    #[test]
    fn timezones_are_iana_names_with_a_hint() {
        assert!(parse_timezone("Asia/Shanghai").is_ok());
        let e = parse_timezone("asia/shanghai").unwrap_err();
        assert!(e.contains("did you mean 'Asia/Shanghai'"), "{e}");
        let e = parse_timezone("Asia/Shanghia").unwrap_err();
        assert!(e.contains("did you mean 'Asia/Shanghai'"), "{e}");
        assert!(parse_timezone("Mars/Olympus").is_err());
    }

    #[test]
    fn fire_times_follow_the_zone() {
        // 08:00 in Shanghai is 00:00 UTC.
        let s = Schedule::parse("0 8 * * *", "Asia/Shanghai").unwrap();
        let next = s.upcoming(utc(2026, 11, 30, 12, 0, 0), 3);
        let at: Vec<String> = next.iter().map(|t| t.to_rfc3339()).collect();
        assert_eq!(
            at,
            ["2026-12-01T08:00:00+08:00", "2026-12-02T08:00:00+08:00", "2026-12-03T08:00:00+08:00"]
        );
        assert_eq!(next[0].with_timezone(&Utc), utc(2026, 12, 1, 0, 0, 0));
    }

    #[test]
    fn daylight_saving_gap_and_overlap() {
        // Berlin springs forward 2026-03-29 at 02:00 -> 03:00: 02:30 does not exist that day
        // and fires at 03:00 (CEST, 01:00 UTC); the next day it is 02:30 CEST again.
        let s = Schedule::parse("30 2 * * *", "Europe/Berlin").unwrap();
        let at: Vec<String> =
            s.upcoming(utc(2026, 3, 28, 12, 0, 0), 2).iter().map(|t| t.to_rfc3339()).collect();
        assert_eq!(at, ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]);
        // It falls back 2026-10-25 at 03:00 -> 02:00: 02:30 happens twice, the job fires once.
        let at: Vec<String> =
            s.upcoming(utc(2026, 10, 24, 12, 0, 0), 2).iter().map(|t| t.to_rfc3339()).collect();
        assert_eq!(at, ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]);
        // An hourly job keeps its hour-by-hour rhythm in UTC across the gap.
        let hourly = Schedule::parse("0 * * * *", "Europe/Berlin").unwrap();
        let at: Vec<DateTime<Utc>> = hourly
            .upcoming(utc(2026, 3, 28, 23, 30, 0), 3)
            .iter()
            .map(|t| t.with_timezone(&Utc))
            .collect();
        assert_eq!(
            at,
            [utc(2026, 3, 29, 0, 0, 0), utc(2026, 3, 29, 1, 0, 0), utc(2026, 3, 29, 2, 0, 0)]
        );
    }

    #[test]
    fn on_time_fires_run_whatever_the_policy() {
        let s = Schedule::parse("*/5 * * * *", "UTC").unwrap();
        let due = utc(2026, 1, 1, 0, 5, 0);
        for policy in [Missed::Skip, Missed::RunOnce] {
            let d = decide(&s, policy, due, due + TimeDelta::milliseconds(300));
            assert_eq!(
                d,
                Decision { fire: true, skipped: 0, next: Some(utc(2026, 1, 1, 0, 10, 0)) }
            );
        }
    }

    #[test]
    fn after_downtime_skip_starts_nothing_and_run_once_starts_one() {
        let s = Schedule::parse("*/5 * * * *", "UTC").unwrap();
        let due = utc(2026, 1, 1, 0, 5, 0);
        let now = utc(2026, 1, 1, 1, 2, 0); // 0:05 .. 1:00 missed: 12 fires
        let skip = decide(&s, Missed::Skip, due, now);
        assert_eq!(
            skip,
            Decision { fire: false, skipped: 12, next: Some(utc(2026, 1, 1, 1, 5, 0)) }
        );
        let once = decide(&s, Missed::RunOnce, due, now);
        assert_eq!(
            once,
            Decision { fire: true, skipped: 11, next: Some(utc(2026, 1, 1, 1, 5, 0)) }
        );
    }

    #[test]
    fn the_latest_fire_runs_when_it_is_on_time_after_downtime() {
        // Down from 0:04 to 1:00:20: 1:00 is 20 s late (on time), 0:05..0:55 were missed.
        let s = Schedule::parse("*/5 * * * *", "UTC").unwrap();
        let d = decide(&s, Missed::Skip, utc(2026, 1, 1, 0, 5, 0), utc(2026, 1, 1, 1, 0, 20));
        assert_eq!(d, Decision { fire: true, skipped: 11, next: Some(utc(2026, 1, 1, 1, 5, 0)) });
    }

    #[test]
    fn counting_stops_for_long_absences_of_fast_schedules() {
        let s = Schedule::parse("* * * * * *", "UTC").unwrap();
        let d = decide(&s, Missed::Skip, utc(2026, 1, 1, 0, 0, 0), utc(2026, 1, 8, 0, 0, 0));
        assert!(d.fire, "the current second is on time");
        assert_eq!(d.skipped, MAX_COUNTED);
        assert_eq!(d.next, Some(utc(2026, 1, 8, 0, 0, 1)));
    }

    #[test]
    fn a_stored_time_that_is_not_yet_due_is_kept() {
        let s = Schedule::parse("0 0 1 1 *", "UTC").unwrap();
        let due = utc(2027, 1, 1, 0, 0, 0);
        let d = decide(&s, Missed::RunOnce, due, utc(2026, 6, 1, 0, 0, 0));
        assert_eq!(d, Decision { fire: false, skipped: 0, next: Some(due) });
    }
}
