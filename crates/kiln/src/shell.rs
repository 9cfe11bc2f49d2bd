//! `kiln run --replay RUN --shell`: the shell opened where a paused job's step failed. The
//! job's script waits (`kiln_runtime::local::pausing_script`); this opens a shell in the
//! directory the step ran in with the env it had (`export -p` at that moment), in the job's
//! container (`docker exec`) or, for host processes, in its workspace. When the shell ends,
//! `done` is created in the control directory and the job ends with the step's exit code.

use std::io::IsTerminal;
use std::process::{Command, Stdio};

use kiln_workflow::plan::JobId;

use crate::run_cmd::{Chosen, warn};
use crate::view::View;

/// Run inside the job's container or on the host with `$1` the control directory and `$2`
/// the shell to start: the step's directory and env, the failing command shown, then the
/// shell; `done` lets the job end.
const ENTER: &str = r#"c=$1
cd "$(cat "$c/pwd")" || true
. "$c/env"
echo "kiln: step failed with exit code $(cat "$c/rc") in $PWD; the command, to run again:" >&2
sed 's/^/    /' "$c/command" >&2
echo "kiln: 'exit' ends the job (with the step's exit code) and the replay" >&2
"$2"
touch "$c/done""#;

/// Opens the shell and waits for it. `false`: it could not be opened (said why); the caller
/// cancels the run then, so that the waiting job does not wait forever.
pub fn open(view: &View, chosen: &Chosen, run_id: &str, job: &JobId, ctl: &str) -> bool {
    tokio::task::block_in_place(|| view.suspend(|| open_blocking(chosen, run_id, job, ctl)))
}

fn open_blocking(chosen: &Chosen, run_id: &str, job: &JobId, ctl: &str) -> bool {
    let mut cmd = if chosen.docker.is_some() {
        let Some(container) = container(run_id, job) else {
            warn(format!("--shell: no container of job `{job}` found; canceling the run"));
            return false;
        };
        eprintln!("kiln: opening a shell in container {container} (docker exec)");
        let mut cmd = Command::new("docker");
        cmd.arg("exec").arg("-i");
        if std::io::stdin().is_terminal() {
            cmd.arg("-t");
        }
        cmd.args([&container, "sh", "-c", ENTER, "sh", ctl, "sh"]);
        cmd
    } else {
        let shell = std::env::var("SHELL").ok().filter(|s| !s.is_empty());
        let shell = shell.unwrap_or_else(|| "/bin/sh".to_string());
        eprintln!("kiln: opening {shell} in the job's workspace (host processes)");
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", ENTER, "sh", ctl, &shell]);
        // The job's env is what the script exported, nothing of this shell's but the terminal.
        cmd.env_clear();
        for keep in ["TERM", "HOME", "USER"] {
            if let Some(v) = std::env::var_os(keep) {
                cmd.env(keep, v);
            }
        }
        cmd
    };
    let status =
        cmd.stdin(Stdio::inherit()).stdout(Stdio::inherit()).stderr(Stdio::inherit()).status();
    match status {
        Ok(_) => {
            if chosen.docker.is_none() {
                // Also when the shell was killed before it could say so itself.
                let _ = std::fs::write(std::path::Path::new(ctl).join("done"), "");
            }
            true
        }
        Err(e) => {
            warn(format!("--shell: cannot start the shell: {e}; canceling the run"));
            false
        }
    }
}

/// The main container of `job` in local run `run_id`, found by its labels.
fn container(run_id: &str, job: &JobId) -> Option<String> {
    let out = Command::new("docker")
        .args(["ps", "-q", "--filter"])
        .arg(format!("label=kiln.run={run_id}"))
        .arg("--filter")
        .arg(format!("label=kiln.job={job}"))
        .args(["--filter", "label=kiln.role=main"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(String::from)
}
