//! What `/proc` says of a process: its state, process group and start time (`stat`), and
//! whether its environment holds a given entry (`environ`); the boot id. Parsing is pure
//! ([`parse_stat`]); the rest reads `/proc` and answers `None` or nothing when it cannot.

use std::path::Path;

/// The fields of `/proc/PID/stat` the executor needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    /// Field 3: `R`, `S`, `D`, `Z` (zombie), `X` (dead), …
    pub state: char,
    /// Field 5: the process group id.
    pub pgid: i32,
    /// Field 22: when the process started, in clock ticks since boot. With the pid, it names
    /// one process: a recycled pid has a later start time.
    pub start: u64,
}

impl Stat {
    /// Whether the process still runs: a zombie (`Z`) or dead (`X`) one does no more work.
    pub fn running(&self) -> bool {
        !matches!(self.state, 'Z' | 'X')
    }
}

/// Parses the text of `/proc/PID/stat`. The command name (field 2) is in parentheses and may
/// hold spaces and parentheses itself, so fields are counted after the last `)`.
pub(crate) fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `fields[0]` is field 3.
    let field = |n: usize| fields.get(n - 3).copied();
    let mut state = field(3)?.chars();
    let (Some(state), None) = (state.next(), state.next()) else { return None };
    Some(Stat { state, pgid: field(5)?.parse().ok()?, start: field(22)?.parse().ok()? })
}

/// The `stat` of process `pid`, or `None` when it does not exist (or `/proc` is unreadable).
pub(crate) fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`): start times count from boot, so a
/// record of another boot names no process of this one.
pub(crate) fn boot_id() -> Option<String> {
    let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}

/// Pids of every process listed in `/proc`.
fn pids() -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect()
}

/// The process groups that still have a running (not zombie) member, among `groups`.
pub(crate) fn groups_running(groups: &[i32]) -> Vec<i32> {
    let mut out: Vec<i32> = pids()
        .into_iter()
        .filter_map(stat)
        .filter(|s| s.running() && groups.contains(&s.pgid))
        .map(|s| s.pgid)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Pids of the processes whose initial environment holds exactly `entry` (`NAME=value`).
/// Only processes this user may read are seen (`environ` is private to its owner).
pub(crate) fn with_env_entry(entry: &[u8]) -> Vec<i32> {
    pids()
        .into_iter()
        .filter(|pid| {
            let path = format!("/proc/{pid}/environ");
            std::fs::read(Path::new(&path))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|item| item == entry))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let text = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 110 0 0 0 1 0 0 0 20 0 1 0 \
                    987654 2408448 213 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0";
        let stat = parse_stat(text).expect("parses");
        assert_eq!(stat, Stat { state: 'S', pgid: 4242, start: 987_654 });
        assert!(stat.running());
        let zombie = text.replace(") S ", ") Z ");
        assert!(!parse_stat(&zombie).expect("parses").running());
    }

    #[test]
    fn a_short_or_garbled_stat_is_none() {
        for bad in ["", "1 (sh)", "1 (sh) S 1 x", "1 (sh) SS 1 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 5"]
        {
            assert_eq!(parse_stat(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn this_process_is_seen_running_with_a_start_time() {
        let me = stat(std::process::id() as i32).expect("own stat");
        assert!(me.running());
        assert!(me.start > 0);
        assert!(boot_id().is_some());
    }
}
