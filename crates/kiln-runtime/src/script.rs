//! The `sh -e` script a job's `script:` lines become, the same for every executor (Docker,
//! process, Kubernetes) and for `kiln run` and agents alike.
//!
//! What it adds to the lines: stderr goes into stdout (`exec 2>&1`), so the log keeps the
//! order the job wrote its lines in, whatever the executor reads its streams with; each entry
//! of `script:` is echoed before it runs ([`kiln_logs::marks::COMMAND`], `$ make test`, the
//! text as written, never expanded: a `$SECRET` shows as `$SECRET`), its further lines (a `|`
//! block is one entry) as [`kiln_logs::marks::CONTINUED`]; and when an entry fails, the script
//! ends as `sh -e` does after printing [`kiln_logs::marks::EXIT`] (`exit status 2: make test`).

use kiln_logs::marks::{COMMAND, CONTINUED, END, EXIT};

/// `text` as one single-quoted shell word (nothing in it is expanded).
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// `text` as a `printf` format that prints it literally (`%` and `\\` escaped, the escape
/// character written `\\033`).
fn literal(text: &str) -> String {
    text.replace('\\', r"\\").replace('%', "%%").replace('\'', r"'\''").replace('\x1b', r"\033")
}

/// The script run (`sh -e -c`) for the `script:` entries `lines` (see the module docs).
pub fn job_script(lines: &[String]) -> String {
    // A heredoc may span entries (a `script: |` text is split into one entry per line): echo
    // lines put between them would land in its body. Such a script runs as written.
    if lines.iter().any(|l| l.contains("<<")) {
        return format!("exec 2>&1\n{}", lines.join("\n"));
    }
    let (command, continued) = (literal(COMMAND), literal(CONTINUED));
    let (exit, end) = (literal(EXIT), literal(END));
    let mut s = String::from("exec 2>&1\n__kiln_cmd=\n");
    s.push_str(&format!(
        "__kiln_exit() {{\n  __kiln_rc=$?\n  [ \"$__kiln_rc\" -eq 0 ] || printf '{exit}%d: %s{end}\\n' \
         \"$__kiln_rc\" \"$__kiln_cmd\"\n  exit \"$__kiln_rc\"\n}}\ntrap __kiln_exit EXIT\n"
    ));
    for entry in lines {
        let mut physical = entry.lines();
        let first = physical.next().unwrap_or_default();
        let shown = if entry.trim_end().contains('\n') {
            format!("{first} …")
        } else {
            first.to_string()
        };
        s.push_str(&format!("__kiln_cmd={}\n", quote(&shown)));
        s.push_str(&format!("printf '{command}%s{end}\\n' {}\n", quote(first)));
        for more in physical {
            s.push_str(&format!("printf '{continued}%s{end}\\n' {}\n", quote(more)));
        }
        s.push_str(entry);
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_logs::marks::{Mark, mark};
    use std::process::Command;

    /// Runs `job_script(lines)` with `sh -e -c`, env `SECRET=hunter2`: (exit code, output lines).
    fn run(lines: &[&str]) -> (i32, Vec<String>) {
        let lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        let out = Command::new("sh")
            .args(["-e", "-c", &job_script(&lines)])
            .env("SECRET", "hunter2")
            .output()
            .unwrap();
        assert!(out.stderr.is_empty(), "stderr goes to stdout: {:?}", out.stderr);
        let text = String::from_utf8(out.stdout).unwrap();
        (out.status.code().unwrap(), text.lines().map(str::to_string).collect())
    }

    #[test]
    fn echoes_each_entry_as_written_then_its_output() {
        let (rc, out) = run(&["echo one", "echo \"$SECRET\" 50% 'q' \\n"]);
        assert_eq!(rc, 0);
        assert_eq!(out.len(), 4, "{out:?}");
        assert_eq!(mark(&out[0]), Some(Mark::Command { text: "echo one", continued: false }));
        assert_eq!(out[1], "one");
        assert_eq!(
            mark(&out[2]),
            Some(Mark::Command { text: "echo \"$SECRET\" 50% 'q' \\n", continued: false })
        );
        assert_eq!(out[3], "hunter2 50% q n", "the shell ran it as written");
    }

    #[test]
    fn a_failing_entry_ends_the_script_with_its_status() {
        let (rc, out) = run(&["echo a", "sh -c 'exit 3'", "echo never"]);
        assert_eq!(rc, 3);
        assert_eq!(out[1], "a");
        assert_eq!(mark(&out[3]), Some(Mark::Exit { status: 3, command: "sh -c 'exit 3'" }));
        assert!(!out.iter().any(|l| l.contains("never")), "{out:?}");
    }

    #[test]
    fn a_block_is_one_command() {
        let (rc, out) = run(&["for i in 1 2; do\n  echo $i\ndone\n", "false"]);
        assert_eq!(rc, 1);
        let marks: Vec<_> = out.iter().map(|l| mark(l)).collect();
        assert_eq!(marks[0], Some(Mark::Command { text: "for i in 1 2; do", continued: false }));
        assert_eq!(marks[1], Some(Mark::Command { text: "  echo $i", continued: true }));
        assert_eq!(marks[2], Some(Mark::Command { text: "done", continued: true }));
        assert_eq!(out[3..5], ["1", "2"]);
        assert_eq!(marks[6], Some(Mark::Exit { status: 1, command: "false" }));
    }

    #[test]
    fn stderr_and_stdout_keep_their_order() {
        let (rc, out) = run(&["for i in $(seq 200); do echo out$i; echo err$i >&2; done"]);
        assert_eq!(rc, 0);
        let want: Vec<String> =
            (1..=200).flat_map(|i| [format!("out{i}"), format!("err{i}")]).collect();
        assert_eq!(out[1..], want[..]);
    }
}
