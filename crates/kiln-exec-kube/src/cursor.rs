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

/// Lines of one read remembered to recognise them in the other read.
const WINDOW: usize = 512;

/// Notices a cluster that ignores `stream=Stdout|Stderr` (without the
/// `PodLogsQuerySplitStreams` feature gate both reads give every line): once a line (same
/// timestamp, same text) comes from both reads, only the stdout read is used, and lines the
/// stderr read already gave are not given again. Logs then arrive once each, as stdout.
#[derive(Debug, Default)]
pub struct Split {
    given: [std::collections::VecDeque<(DateTime<Utc>, String)>; 2],
    combined: bool,
}

impl Split {
    /// A detector that has seen nothing.
    pub fn new() -> Split {
        Split::default()
    }

    /// Whether the streams turned out not to be split.
    pub fn combined(&self) -> bool {
        self.combined
    }

    /// Whether the line `text` stamped `time`, read with `stream=Stderr` when `stderr`, else
    /// with `stream=Stdout`, is to be given (and remembers it when it is).
    pub fn admit(&mut self, stderr: bool, time: Option<DateTime<Utc>>, text: &str) -> bool {
        if self.combined && stderr {
            return false;
        }
        let Some(time) = time else { return true };
        let (mine, other) = if stderr { (1, 0) } else { (0, 1) };
        if self.given[other].iter().any(|(t, s)| *t == time && s == text) {
            self.combined = true;
            return false;
        }
        let window = &mut self.given[mine];
        window.push_back((time, text.to_string()));
        if window.len() > WINDOW {
            window.pop_front();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_streams_are_left_alone() {
        let mut split = Split::new();
        assert!(split.admit(false, Some(t("2026-12-07T18:00:00.1Z")), "out"));
        assert!(split.admit(true, Some(t("2026-12-07T18:00:00.2Z")), "err"));
        assert!(split.admit(true, Some(t("2026-12-07T18:00:00.3Z")), "out"));
        assert!(!split.combined());
    }

    #[test]
    fn streams_that_are_not_split_give_each_line_once() {
        let lines = [
            ("2026-12-07T18:00:00.1Z", "a"),
            ("2026-12-07T18:00:00.2Z", "b"),
            ("2026-12-07T18:00:00.3Z", "c"),
        ];
        // The stderr read is two lines ahead of the stdout one, then both go on.
        let mut split = Split::new();
        let mut given = Vec::new();
        for (stderr, i) in [(true, 0), (true, 1), (false, 0), (false, 1), (true, 2), (false, 2)] {
            let (time, text) = lines[i];
            if split.admit(stderr, Some(t(time)), text) {
                given.push(text);
            }
        }
        assert!(split.combined());
        assert_eq!(given, ["a", "b", "c"]);
    }

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
