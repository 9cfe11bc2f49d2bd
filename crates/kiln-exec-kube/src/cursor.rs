//! Pure bookkeeping of where a log read stopped, so that a re-opened stream (after a dropped
//! connection, an API server time-out or kubelet's log rotation) neither loses nor repeats a
//! line. No I/O here.
//!
//! Every line is read with `timestamps=true` (`2026-12-07T18:00:00.123456789Z text`). The
//! cursor remembers the newest timestamp seen and how many lines carried it; a re-opened read
//! starts at that timestamp's whole second (`sinceTime` has second precision) and the cursor
//! skips every line older than the newest one, and as many lines of the newest timestamp as
//! were already given.

use chrono::{DateTime, SubsecRound, Utc};

/// Where reading stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    newest: Option<DateTime<Utc>>,
    /// Lines given with timestamp `newest`.
    at_newest: u32,
    /// Lines with timestamp `newest` seen in the current pass (re-opened read).
    seen_in_pass: u32,
}

impl Cursor {
    /// A cursor before the first line.
    pub fn new() -> Cursor {
        Cursor::default()
    }

    /// The `sinceTime` to re-open with: the newest timestamp's second, `None` before the
    /// first line (read from the start).
    pub fn since(&self) -> Option<DateTime<Utc>> {
        self.newest.map(|t| t.trunc_subsecs(0))
    }

    /// Starts a new pass (a re-opened read).
    pub fn reopen(&mut self) {
        self.seen_in_pass = 0;
    }

    /// Whether the line stamped `time` is new (and records it when it is).
    pub fn accept(&mut self, time: DateTime<Utc>) -> bool {
        match self.newest {
            Some(newest) if time < newest => false,
            Some(newest) if time == newest => {
                self.seen_in_pass += 1;
                if self.seen_in_pass <= self.at_newest {
                    false
                } else {
                    self.at_newest += 1;
                    true
                }
            }
            _ => {
                self.newest = Some(time);
                self.at_newest = 1;
                self.seen_in_pass = 1;
                true
            }
        }
    }
}

/// Splits a line of a log read with `timestamps=true` into its time and text. A line without
/// a readable timestamp keeps all its text and gets `None`.
pub fn split_timestamp(line: &str) -> (Option<DateTime<Utc>>, &str) {
    if let Some((stamp, text)) = line.split_once(' ')
        && let Ok(time) = DateTime::parse_from_rfc3339(stamp)
    {
        return (Some(time.with_timezone(&Utc)), text);
    }
    (None, line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// Reads `lines` (stamps) from the first one whose second is at or after `since`, as the
    /// API does, through the cursor.
    fn pass(cursor: &mut Cursor, lines: &[&str]) -> Vec<String> {
        cursor.reopen();
        let since = cursor.since();
        lines
            .iter()
            .filter(|l| since.is_none_or(|s| t(l) >= s))
            .filter(|l| cursor.accept(t(l)))
            .map(|l| l.to_string())
            .collect()
    }

    #[test]
    fn a_reopened_read_gives_each_line_once() {
        let all = [
            "2026-12-07T18:00:00.100Z",
            "2026-12-07T18:00:00.200Z",
            "2026-12-07T18:00:00.200Z",
            "2026-12-07T18:00:01.500Z",
            "2026-12-07T18:00:01.500Z",
            "2026-12-07T18:00:02.000Z",
        ];
        // Every place the first read may stop at.
        for cut in 0..=all.len() {
            let mut cursor = Cursor::new();
            let mut got = pass(&mut cursor, &all[..cut]);
            got.extend(pass(&mut cursor, &all));
            assert_eq!(got, all, "cut after {cut}");
            // A third read adds nothing.
            assert!(pass(&mut cursor, &all).is_empty());
        }
    }

    #[test]
    fn since_is_the_newest_whole_second() {
        let mut cursor = Cursor::new();
        assert_eq!(cursor.since(), None);
        cursor.accept(t("2026-12-07T18:00:01.750Z"));
        assert_eq!(cursor.since(), Some(t("2026-12-07T18:00:01Z")));
    }

    #[test]
    fn timestamps_are_split_off() {
        let (time, text) = split_timestamp("2026-12-07T18:00:01.123456789Z hello world");
        assert_eq!(time, Some(t("2026-12-07T18:00:01.123456789Z")));
        assert_eq!(text, "hello world");
        assert_eq!(split_timestamp("no stamp"), (None, "no stamp"));
        assert_eq!(split_timestamp("2026-12-07T18:00:01Z ").1, "");
    }
}
