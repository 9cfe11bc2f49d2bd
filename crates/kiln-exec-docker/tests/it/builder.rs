//! The image builder: a `builder` task runs in the builder image (made from this host's
//! buildah when the engine lacks it), builds a two-stage Dockerfile with buildah in chroot
//! isolation, and its container is neither privileged nor given the Docker socket.

use std::collections::BTreeMap;

use kiln_exec::Executor;

use crate::{executor, read_all, script_task, texts};

/// A two-stage Dockerfile on `FROM scratch` (nothing to pull) whose first stage runs a
/// command.
const DOCKERFILE: &str = "FROM scratch AS base\nCOPY busybox /bin/busybox\n\
                          RUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox mkdir /out && echo built > /out/a\"]\n\
                          FROM scratch\nCOPY --from=base /out/a /a\n";

#[tokio::test]
async fn a_builder_task_builds_with_buildah_unprivileged_and_without_the_socket() {
    let exec = executor().await;
    let seed = tempfile::tempdir().unwrap();
    std::fs::write(seed.path().join("Dockerfile"), DOCKERFILE).unwrap();
    std::fs::copy("/usr/bin/busybox", seed.path().join("busybox")).unwrap();
    let mut task = script_task(
        "builder",
        "buildah --storage-driver vfs bud --isolation chroot -t localhost/it/x:1 . && \
         buildah --storage-driver vfs images --format '{{.Name}}:{{.Tag}}'",
    );
    task.image = None;
    task.builder = true;
    task.seed = Some(seed.path().to_path_buf());
    task.env = BTreeMap::from([("KILN_REGISTRY".into(), "127.0.0.1:1".into())]);
    exec.setup(&task).await.expect("setup");
    let stream = exec.start(&task).await.expect("start");
    let lines = read_all(stream).await;
    let status = exec.wait(&task.id).await.expect("wait");
    let name = kiln_exec_docker::names::main_container(&task.id);
    let inspect = exec.client().inspect_container(&name, None).await.expect("inspect");
    exec.destroy(&task.id).await.expect("destroy");
    let text = texts(&lines);
    assert_eq!(status.code, 0, "{text:#?}");
    assert!(text.iter().any(|l| l.contains("localhost/it/x:1")), "{text:#?}");
    let image = inspect.config.and_then(|c| c.image).unwrap_or_default();
    assert_eq!(image, kiln_exec_docker::builder::default_builder_image());
    let host = inspect.host_config.expect("host config");
    assert_eq!(host.privileged, Some(false));
    assert_eq!(host.security_opt, Some(vec!["seccomp=unconfined".to_owned()]));
    assert!(host.cap_add.unwrap_or_default().is_empty());
    assert_eq!(host.network_mode.as_deref(), Some("host"), "a loopback registry");
    let mounts: Vec<String> = inspect
        .mounts
        .unwrap_or_default()
        .iter()
        .map(|m| format!("{:?}", m.source))
        .chain(host.binds.unwrap_or_default())
        .collect();
    assert!(!mounts.iter().any(|m| m.contains("docker.sock")), "{mounts:?}");
}
