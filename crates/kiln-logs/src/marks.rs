//! What a log line marks, read from its text in this one place: a script line echoed before
//! it ran and the exit status of one that failed (printed by the script `kiln-runtime`
//! generates, as GitLab does, with the prefixes below), and the sections a script opens and
//! closes itself: GitHub's `::group::NAME` / `::endgroup::` and GitLab's
//! `section_start:<unix>:<name>[collapsed=true]\r\e[0K<header>` /
//! `section_end:<unix>:<name>\r\e[0K`.
//!
//! The prefixes are ANSI colour sequences, so a terminal (`kiln run`, `kiln logs`) shows the
//! echo in bold green and the exit status in bold red without knowing about marks.

/// Start of the echo of a script entry's first line: `$ make test` in bold green.
pub const COMMAND: &str = "\x1b[0K\x1b[32;1m$ ";
/// Start of the echo of a further line of a multi-line entry (a `|` block).
pub const CONTINUED: &str = "\x1b[0K\x1b[32;1m> ";
/// Start of the line a failed entry prints: `exit status 2: make test` in bold red.
pub const EXIT: &str = "\x1b[0K\x1b[31;1mexit status ";
/// End of an echo or exit status line (resets the colour).
pub const END: &str = "\x1b[0m";

/// What a line marks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark<'a> {
    /// A script line echoed before it ran (`continued`: a further line of the same entry).
    Command {
        /// The line as written in the workflow.
        text: &'a str,
        /// A further line of a multi-line entry.
        continued: bool,
    },
    /// A script entry failed with `status`.
    Exit {
        /// Its exit status.
        status: i32,
        /// The entry (its first line).
        command: &'a str,
    },
    /// A section starts.
    SectionStart {
        /// Its name (GitLab's; GitHub's title).
        name: &'a str,
        /// What its header shows (the name when none is given).
        title: &'a str,
        /// Shown collapsed at first (`::group::` always; GitLab's `[collapsed=true]`).
        collapsed: bool,
    },
    /// A section ends: the named one (GitLab), or the innermost open one (`None`, GitHub).
    SectionEnd {
        /// The section's name.
        name: Option<&'a str>,
    },
}

/// `text` without an `\e[0K` (erase line) in front, as GitLab writes before its markers.
fn unerased(text: &str) -> &str {
    text.strip_prefix("\x1b[0K").unwrap_or(text)
}

/// `section_start:`/`section_end:` remainder: `<unix>:<name>[options]`, then `\r\e[0K` and
/// the header. Returns the name, options and header.
fn gitlab(rest: &str) -> Option<(&str, &str, &str)> {
    let (stamp, rest) = rest.split_once(':')?;
    if stamp.is_empty() || !stamp.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (head, header) = match rest.split_once('\r') {
        Some((head, header)) => (head, unerased(header)),
        None => (rest, ""),
    };
    let (name, options) = match head.split_once('[') {
        Some((name, options)) => (name, options.strip_suffix(']')?),
        None => (head, ""),
    };
    let valid = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-');
    if name.is_empty() || !name.bytes().all(valid) {
        return None;
    }
    Some((name, options, header))
}

/// What `text` (a log line as stored, escapes included) marks, if anything.
pub fn mark(text: &str) -> Option<Mark<'_>> {
    fn body(rest: &str) -> &str {
        rest.strip_suffix(END).unwrap_or(rest)
    }
    if let Some(rest) = text.strip_prefix(COMMAND) {
        return Some(Mark::Command { text: body(rest), continued: false });
    }
    if let Some(rest) = text.strip_prefix(CONTINUED) {
        return Some(Mark::Command { text: body(rest), continued: true });
    }
    if let Some(rest) = text.strip_prefix(EXIT) {
        let (status, command) = body(rest).split_once(": ")?;
        return Some(Mark::Exit { status: status.parse().ok()?, command });
    }
    let plain = unerased(text);
    if let Some(rest) = plain.strip_prefix("::group::") {
        let title = rest.trim();
        return Some(Mark::SectionStart { name: title, title, collapsed: true });
    }
    if plain.trim_end() == "::endgroup::" {
        return Some(Mark::SectionEnd { name: None });
    }
    if let Some(rest) = plain.strip_prefix("section_start:") {
        let (name, options, header) = gitlab(rest)?;
        let collapsed = options.split(',').any(|o| o.trim() == "collapsed=true");
        let title = if header.trim().is_empty() { name } else { header };
        return Some(Mark::SectionStart { name, title, collapsed });
    }
    if let Some(rest) = plain.strip_prefix("section_end:") {
        let (name, _, _) = gitlab(rest)?;
        return Some(Mark::SectionEnd { name: Some(name) });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_and_exit_lines() {
        let echo = format!("{COMMAND}make test{END}");
        assert_eq!(mark(&echo), Some(Mark::Command { text: "make test", continued: false }));
        let more = format!("{CONTINUED}  done{END}");
        assert_eq!(mark(&more), Some(Mark::Command { text: "  done", continued: true }));
        let exit = format!("{EXIT}2: make test{END}");
        assert_eq!(mark(&exit), Some(Mark::Exit { status: 2, command: "make test" }));
        assert_eq!(mark("$ make test"), None, "a line printed by the job is not an echo");
        assert_eq!(mark("exit status 2: x"), None);
    }

    #[test]
    fn github_groups() {
        assert_eq!(
            mark("::group::Build the thing"),
            Some(Mark::SectionStart {
                name: "Build the thing",
                title: "Build the thing",
                collapsed: true
            })
        );
        assert_eq!(mark("::endgroup::"), Some(Mark::SectionEnd { name: None }));
        assert_eq!(mark("  ::group::x"), None, "only at the start of a line");
    }

    #[test]
    fn gitlab_sections() {
        let start = "\x1b[0Ksection_start:1700000000:build_step[collapsed=true]\r\x1b[0KBuilding";
        assert_eq!(
            mark(start),
            Some(Mark::SectionStart { name: "build_step", title: "Building", collapsed: true })
        );
        assert_eq!(
            mark("section_start:1700000000:deps\r\x1b[0K"),
            Some(Mark::SectionStart { name: "deps", title: "deps", collapsed: false })
        );
        assert_eq!(
            mark("\x1b[0Ksection_end:1700000009:build_step\r\x1b[0K"),
            Some(Mark::SectionEnd { name: Some("build_step") })
        );
        assert_eq!(mark("section_start:soon:x\r"), None);
        assert_eq!(mark("section_start:1:bad name\r"), None);
        assert_eq!(mark("section_end:1:x[oops\r"), None);
    }
}
