//! `kiln completions`: a script bash accepts, naming the real subcommands; an unknown shell
//! is a clear error with exit code 2.

use crate::support::{assert_code, run};

#[test]
fn bash_completions_name_real_subcommands_and_parse() {
    let out = run(&["completions", "bash"]);
    let (script, _) = assert_code(&out, 0);
    for sub in ["trigger", "runs", "pipeline", "webhook"] {
        assert!(script.contains(sub), "no `{sub}` in the bash script:\n{script}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kiln.bash");
    std::fs::write(&file, &script).unwrap();
    let checked = std::process::Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(
        checked.status.success(),
        "bash -n rejects the script: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
}

#[test]
fn zsh_and_fish_completions_are_printed() {
    for (shell, marker) in [("zsh", "#compdef kiln"), ("fish", "complete -c kiln")] {
        let out = run(&["completions", shell]);
        let (script, _) = assert_code(&out, 0);
        assert!(script.contains(marker), "{shell}: {script}");
    }
}

#[test]
fn an_unknown_shell_is_a_clear_error() {
    let out = run(&["completions", "tcsh"]);
    let (_, stderr) = assert_code(&out, 2);
    assert!(stderr.contains("tcsh") && stderr.contains("bash"), "{stderr}");
}
