//! Array jobs with the binary: `kiln run` runs every index with the same engine as the
//! server (one failing index retried alone), and `kiln validate` refuses a bad array with
//! its position.

use crate::support::{assert_code, kiln};

#[test]
fn kiln_run_runs_every_index_once_and_retries_a_failing_one_alone() {
    let dir = tempfile::tempdir().unwrap();
    let marks = dir.path().join("marks");
    std::fs::create_dir(&marks).unwrap();
    let file = dir.path().join("arr.yml");
    std::fs::write(
        &file,
        format!(
            r#"name: arr
stages:
  - name: s
    jobs:
      t:
        array: 12
        parallelism: 3
        retry: 1
        script:
          - touch "{m}/$KILN_ARRAY_INDEX.$KILN_ATTEMPT"
          - test "$KILN_ARRAY_INDEX" != 5 -o "$KILN_ATTEMPT" = 2
  - name: after
    jobs:
      after:
        script: echo after the array
"#,
            m = marks.display()
        ),
    )
    .unwrap();
    let out =
        kiln().args(["run", file.to_str().unwrap(), "--executor", "process"]).output().unwrap();
    let (stdout, stderr) = assert_code(&out, 0);
    let mut ran: Vec<String> = std::fs::read_dir(&marks)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    ran.sort();
    let mut want: Vec<String> = (0..12).map(|i| format!("{i}.1")).collect();
    want.push("5.2".into());
    want.sort();
    assert_eq!(ran, want, "every index once, index 5 twice: {stderr}");
    assert!(stdout.contains("after the array"), "{stdout}");
}

#[test]
fn kiln_validate_refuses_a_bad_array_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yml");
    std::fs::write(
        &file,
        "name: bad\nstages:\n  - name: s\n    jobs:\n      t:\n        array: 0\n        script: \"true\"\n",
    )
    .unwrap();
    let out = kiln().args(["validate", file.to_str().unwrap()]).output().unwrap();
    let (stdout, stderr) = crate::support::text(&out);
    assert!(!out.status.success());
    let all = format!("{stdout}{stderr}");
    assert!(
        all.contains("bad.yml:6:16: error: array of job 't' is 0; expected 1 to 1000000 indexes"),
        "{all}"
    );
}
