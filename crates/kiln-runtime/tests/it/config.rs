//! Service instances with config files: written before the instance starts, each update
//! written (nothing when the bytes did not change) and then signalled through the executor
//! (the fake records it), each release reported; a directory that cannot be written fails
//! the instance before it starts; in a container the files are bind-mounted read-only at
//! the service's path and an update shows there (skipped with a note when no Docker engine
//! answers, unless `KILN_REQUIRE_DOCKER=1`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use kiln_engine::Outcome;
use kiln_exec::conformance::script_task;
use kiln_exec::fake::FakeExecutor;
use kiln_exec::{Entry, TaskSpec};
use kiln_runtime::config_files::ConfigFiles;
use kiln_runtime::instance::Ports;
use kiln_runtime::{ConfigChange, InstanceConfig, InstanceEvent, InstanceRequest};
use tokio::sync::mpsc;

use crate::instance::{Watched, log_texts};

fn files(release: u32, digest: &str, body: &str) -> ConfigFiles {
    ConfigFiles {
        release,
        digest: digest.into(),
        files: BTreeMap::from([("app.conf".to_string(), body.to_string())]),
    }
}

fn config(dir: &Path, first: ConfigFiles) -> (InstanceConfig, mpsc::UnboundedSender<ConfigChange>) {
    let (tx, updates) = mpsc::unbounded_channel();
    let config =
        InstanceConfig { dir: dir.to_path_buf(), path: "/etc/site".into(), first, updates };
    (config, tx)
}

fn applied(n: u32) -> impl Fn(&InstanceEvent) -> bool {
    move |e| matches!(e, InstanceEvent::ConfigApplied { release, .. } if *release == n)
}

#[tokio::test]
async fn updates_are_written_then_signalled_and_the_same_bytes_are_not() {
    let fake = Arc::new(FakeExecutor::new());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("instances/i1/config");
    let spec = script_task(
        "configured",
        &[
            "trap 'echo got HUP' HUP",
            "echo dir=$KILN_CONFIG_DIR r=$KILN_CONFIG_RELEASE",
            "sleep 60",
            "sleep 60",
        ],
    );
    let id = spec.id.clone();
    let req = InstanceRequest { spec, health: None, ports: Ports::new() };
    let (config, tx) = config(&dir, files(1, "sha256:1111111111111111", "v1\n"));
    let mut w = Watched::start_configured(fake.clone(), req, Some(config));
    w.until("release 1", applied(1)).await;
    assert_eq!(std::fs::read_to_string(dir.join("app.conf")).unwrap(), "v1\n");
    let line = format!("dir={} r=1", dir.display());
    w.until(&line, |e| matches!(e, InstanceEvent::Log(l) if l.text == line)).await;

    let change = |r, digest, body: &str| ConfigChange {
        files: files(r, digest, body),
        signal: Some("HUP".into()),
    };
    tx.send(change(2, "sha256:2222222222222222", "v2\n")).unwrap();
    w.until("release 2", applied(2)).await;
    assert_eq!(std::fs::read_to_string(dir.join("app.conf")).unwrap(), "v2\n");
    w.until("the trap", |e| matches!(e, InstanceEvent::Log(l) if l.text == "got HUP")).await;
    assert_eq!(fake.calls().signalled, [(id.clone(), "HUP".to_string())]);

    // Release 3 has release 2's bytes: nothing is written, nothing signalled.
    tx.send(change(3, "sha256:2222222222222222", "v2\n")).unwrap();
    w.until("release 3", applied(3)).await;
    assert_eq!(fake.calls().signalled.len(), 1, "{:?}", fake.calls().signalled);
    let data = std::fs::read_link(dir.join("..data")).unwrap();
    assert!(data.to_str().unwrap().starts_with("..2_"), "{data:?}");
    w.cancel.cancel();
    let (outcome, events) = w.end().await;
    assert_eq!(outcome, Outcome::Canceled);
    let logs = log_texts(&events);
    for want in [
        "kiln: config release 1 (sha256:1111111111111111) in ",
        "kiln: config release 2 written (sha256:2222222222222222)",
        "kiln: sent SIGHUP",
        "kiln: config release 3 has the files it has: nothing written",
    ] {
        assert!(logs.iter().any(|l| l.starts_with(want)), "{want}: {logs:#?}");
    }
    let first_applied = events.iter().position(applied(1)).unwrap();
    let started = events.iter().position(|e| *e == InstanceEvent::Started).unwrap();
    assert!(first_applied < started, "the files come before the start: {events:?}");
}

#[tokio::test]
async fn files_that_cannot_be_written_fail_the_instance_before_it_starts() {
    let fake = Arc::new(FakeExecutor::new());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("config");
    std::fs::write(&dir, "a file where the directory should be").unwrap();
    let spec = script_task("unwritable", &["echo never"]);
    let req = InstanceRequest { spec, health: None, ports: Ports::new() };
    let (config, _tx) = config(&dir, files(1, "sha256:1", "v1\n"));
    let (outcome, events) = Watched::start_configured(fake.clone(), req, Some(config)).end().await;
    match outcome {
        Outcome::Error(e) => assert!(e.starts_with("config release 1 could not be written"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(events.is_empty(), "{events:?}");
    assert!(fake.calls().started.is_empty());
}

/// A busybox container that prints its config file, whether it may write there, then the
/// file again at each SIGHUP.
fn reader(name: &str) -> TaskSpec {
    let script = "trap 'echo now $(cat $KILN_CONFIG_DIR/app.conf)' HUP; \
                  echo in $KILN_CONFIG_DIR: $(cat $KILN_CONFIG_DIR/app.conf); \
                  if touch $KILN_CONFIG_DIR/x 2>/dev/null; then echo writable; else echo read-only; fi; \
                  while true; do sleep 1; done";
    let mut spec = script_task(&format!("inst-config-{name}-{}", std::process::id()), &[]);
    spec.image = Some("busybox:latest".into());
    spec.entry = Entry::Command {
        command: Some(vec!["sh".into(), "-c".into(), script.into()]),
        args: Vec::new(),
    };
    spec
}

#[tokio::test]
async fn in_a_container_the_files_are_mounted_read_only_at_path() {
    let Some(executor) = crate::docker::engine("config_files_in_a_container").await else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("config");
    let spec = reader("ro");
    let id = spec.id.clone();
    let req = InstanceRequest { spec, health: None, ports: Ports::new() };
    let (config, tx) = config(&dir, files(1, "sha256:aaaaaaaaaaaa01", "v1"));
    let mut w = Watched::start_configured(executor.clone(), req, Some(config));
    let line = |want: &'static str| move |e: &InstanceEvent| matches!(e, InstanceEvent::Log(l) if l.text == want);
    w.until("the file at its path", line("in /etc/site: v1")).await;
    w.until("a refused write", line("read-only")).await;
    tx.send(ConfigChange {
        files: files(2, "sha256:bbbbbbbbbbbb02", "v2"),
        signal: Some("HUP".into()),
    })
    .unwrap();
    w.until("the new bytes inside at the signal", line("now v2")).await;
    assert!(!dir.join("x").exists());
    w.cancel.cancel();
    assert_eq!(w.end().await.0, Outcome::Canceled);
    assert_eq!(crate::docker::containers(&executor, &id).await, Vec::<String>::new());
}
