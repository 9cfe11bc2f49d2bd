//! Why a job failed, read from the end of its log: the script entry that failed (its
//! `exit status N: CMD` line, see [`crate::marks`]), or the one that was running when the job
//! was stopped (its echo, `$ CMD`), and the lines just before. Pure: it gets the last lines of
//! a log and says which of them to show; the server reads them (one page at the end of the
//! log, whatever its length) and serves them (`GET /api/v1/runs/{run}/failures`).

use crate::marks::{Mark, mark};

/// What to show of a failed job's log, as positions in the lines it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excerpt {
    /// The failing script entry as written (its first line; `…` after it when it has more),
    /// from its exit status line, else the last entry echoed (the job was killed or timed out
    /// while it ran). `None` when the lines hold neither.
    pub step: Option<String>,
    /// Its exit status, from its exit status line.
    pub status: Option<i32>,
    /// Position of the step's echo (`$ CMD`), if it is among the lines.
    pub echo: Option<usize>,
    /// Position of its exit status line, if there is one.
    pub exit: Option<usize>,
    /// The lines to show: up to `before` lines before the exit status line and that line, or
    /// the last `before` lines when there is none.
    pub lines: std::ops::Range<usize>,
}

/// The excerpt of `texts` (the last lines of a failed job's log, in order, as stored): see
/// [`Excerpt`]. The last exit status line wins (an entry that failed inside `|| true` prints
/// none; a job prints one at most, as `sh -e` stops there).
pub fn excerpt<S: AsRef<str>>(texts: &[S], before: usize) -> Excerpt {
    let marks: Vec<Option<Mark<'_>>> = texts.iter().map(|t| mark(t.as_ref())).collect();
    let exit = marks.iter().rposition(|m| matches!(m, Some(Mark::Exit { .. })));
    let end = exit.map_or(texts.len(), |e| e + 1);
    // The echo of the entry that failed or ran last: the last first line echoed before.
    let echo = marks[..exit.unwrap_or(texts.len())]
        .iter()
        .rposition(|m| matches!(m, Some(Mark::Command { continued: false, .. })));
    let (step, status) = match (exit.map(|e| &marks[e]), echo.map(|e| &marks[e])) {
        (Some(Some(Mark::Exit { status, command })), _) => {
            (Some(command.to_string()), Some(*status))
        }
        (_, Some(Some(Mark::Command { text, .. }))) => (Some(text.to_string()), None),
        _ => (None, None),
    };
    let shown = before + usize::from(exit.is_some());
    Excerpt { step, status, echo, exit, lines: end.saturating_sub(shown)..end }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::marks::{COMMAND, END, EXIT};

    fn echo(cmd: &str) -> String {
        format!("{COMMAND}{cmd}{END}")
    }
    fn exit(status: i32, cmd: &str) -> String {
        format!("{EXIT}{status}: {cmd}{END}")
    }

    #[test]
    fn a_failed_entry_is_its_exit_line_and_the_lines_before() {
        let mut log = vec![echo("make deps"), "ok".to_string(), echo("make test")];
        log.extend((1..=30).map(|i| format!("test {i} ... ok")));
        log.push("error: 1 test failed".to_string());
        log.push(exit(2, "make test"));
        log.push("uploading artifacts".to_string());
        let e = excerpt(&log, 20);
        assert_eq!(e.step.as_deref(), Some("make test"));
        assert_eq!(e.status, Some(2));
        assert_eq!(e.echo, Some(2));
        assert_eq!(e.exit, Some(34));
        assert_eq!(e.lines, 14..35, "20 lines before the exit line, and it");
        assert_eq!(log[e.lines.end - 2], "error: 1 test failed");
    }

    #[test]
    fn a_short_log_is_shown_whole_up_to_its_exit_line() {
        let log = vec![echo("false"), exit(1, "false")];
        let e = excerpt(&log, 20);
        assert_eq!(
            (e.step.as_deref(), e.status, e.echo, e.exit),
            (Some("false"), Some(1), Some(0), Some(1))
        );
        assert_eq!(e.lines, 0..2);
    }

    #[test]
    fn a_killed_job_names_the_entry_that_ran() {
        let mut log = vec![echo("make deps"), echo("sleep 600")];
        log.extend((0..5).map(|i| format!("waiting {i}")));
        let e = excerpt(&log, 3);
        assert_eq!(
            (e.step.as_deref(), e.status, e.echo, e.exit),
            (Some("sleep 600"), None, Some(1), None)
        );
        assert_eq!(e.lines, 4..7, "the last lines");
    }

    #[test]
    fn lines_without_marks_give_the_tail_only() {
        let log: Vec<String> = (0..50).map(|i| format!("line {i}")).collect();
        let e = excerpt(&log, 20);
        assert_eq!((e.step, e.status, e.echo, e.exit), (None, None, None, None));
        assert_eq!(e.lines, 30..50);
        let empty: [&str; 0] = [];
        assert_eq!(excerpt(&empty, 20).lines, 0..0);
    }

    #[test]
    fn a_multi_line_entry_keeps_its_first_line() {
        let log = vec![
            echo("for f in a b; do"),
            format!("{}  test -e $f{END}", crate::marks::CONTINUED),
            "missing b".to_string(),
            exit(1, "for f in a b; do …"),
        ];
        let e = excerpt(&log, 20);
        assert_eq!(e.step.as_deref(), Some("for f in a b; do …"));
        assert_eq!(e.echo, Some(0), "the echo of its first line, not a continued one");
    }
}
