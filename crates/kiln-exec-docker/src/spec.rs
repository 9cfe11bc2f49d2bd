//! Pure translation of a [`TaskSpec`] into Docker Engine API request bodies.
//!
//! Invariant: no I/O here; everything the engine is asked to create is described by these
//! functions, so they can be tested without an engine.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, HostConfigLogConfig, Mount, MountType,
    NetworkCreateRequest, NetworkingConfig, VolumeCreateRequest,
};
use kiln_exec::{Entry, ServiceSpec, TaskSpec, WORKSPACE_PATH};

use crate::names;

/// Labels for one object of the task: the task's own labels, then Kiln's (which win).
pub(crate) fn labels(task: &TaskSpec, extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut out: HashMap<String, String> =
        task.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    out.insert(names::LABEL_TASK.to_owned(), task.id.to_string());
    for (k, v) in extra {
        out.insert((*k).to_owned(), (*v).to_owned());
    }
    out
}

/// The task's private bridge network.
pub(crate) fn network(task: &TaskSpec) -> NetworkCreateRequest {
    NetworkCreateRequest {
        name: names::network(&task.id),
        driver: Some("bridge".to_owned()),
        labels: Some(labels(task, &[])),
        ..Default::default()
    }
}

/// The task's workspace volume.
pub(crate) fn workspace_volume(task: &TaskSpec) -> VolumeCreateRequest {
    VolumeCreateRequest {
        name: Some(names::workspace_volume(&task.id)),
        driver: Some("local".to_owned()),
        labels: Some(labels(task, &[])),
        ..Default::default()
    }
}

/// `KEY=value` lines, in key order.
fn env(vars: &BTreeMap<String, String>) -> Option<Vec<String>> {
    Some(vars.iter().map(|(k, v)| format!("{k}={v}")).collect())
}

/// The workspace volume mounted at [`WORKSPACE_PATH`].
fn workspace_mount(task: &TaskSpec) -> Mount {
    Mount {
        target: Some(WORKSPACE_PATH.to_owned()),
        source: Some(names::workspace_volume(&task.id)),
        typ: Some(MountType::VOLUME),
        ..Default::default()
    }
}

/// Attaches a container to the task network, reachable under `aliases`.
fn networking(task: &TaskSpec, aliases: Option<Vec<String>>) -> NetworkingConfig {
    let endpoint = EndpointSettings { aliases, ..Default::default() };
    NetworkingConfig {
        endpoints_config: Some(HashMap::from([(names::network(&task.id), endpoint)])),
    }
}

/// The workspace, then the task's bind mounts (a service instance's config directory).
fn main_mounts(task: &TaskSpec) -> Vec<Mount> {
    let binds = task.binds.iter().map(|b| Mount {
        target: Some(b.container.clone()),
        source: Some(b.host.display().to_string()),
        typ: Some(MountType::BIND),
        read_only: Some(b.read_only),
        ..Default::default()
    });
    std::iter::once(workspace_mount(task)).chain(binds).collect()
}

/// A sidecar: on the task network under its service name, with the workspace mounted.
pub(crate) fn service_container(task: &TaskSpec, service: &ServiceSpec) -> ContainerCreateBody {
    let labels = labels(
        task,
        &[(names::LABEL_ROLE, names::ROLE_SERVICE), (names::LABEL_SERVICE, &service.name)],
    );
    ContainerCreateBody {
        image: Some(service.image.clone()),
        hostname: Some(service.name.clone()),
        env: env(&service.env),
        cmd: service.command.clone(),
        labels: Some(labels),
        host_config: Some(HostConfig {
            network_mode: Some(names::network(&task.id)),
            mounts: Some(vec![workspace_mount(task)]),
            ..Default::default()
        }),
        networking_config: Some(networking(task, Some(vec![service.name.clone()]))),
        ..Default::default()
    }
}

/// Entrypoint and command of the main container.
///
/// A script runs as `sh -e -c SCRIPT`. A command replaces the image's entrypoint when set
/// (an empty list clears it); empty `args` keep the image's default command, as `docker run`
/// does.
fn entry(entry: &Entry) -> (Option<Vec<String>>, Option<Vec<String>>) {
    match entry {
        Entry::Script(script) => (
            Some(vec!["sh".to_owned(), "-e".to_owned(), "-c".to_owned()]),
            Some(vec![script.clone()]),
        ),
        Entry::Command { command, args } => {
            let cmd = if args.is_empty() { None } else { Some(args.clone()) };
            (command.clone(), cmd)
        }
    }
}

/// The container's working directory: the workspace by default, relative paths inside it.
fn workdir(workdir: Option<&str>) -> String {
    match workdir.map(|d| d.trim_start_matches("./")) {
        None | Some("" | ".") => WORKSPACE_PATH.to_owned(),
        Some(dir) if dir.starts_with('/') => dir.to_owned(),
        Some(dir) => format!("{WORKSPACE_PATH}/{dir}"),
    }
}

/// Nanoseconds of CPU time per second for `cpu_millis` thousandths of a CPU.
fn nano_cpus(cpu_millis: u64) -> i64 {
    i64::try_from(cpu_millis.saturating_mul(1_000_000)).unwrap_or(i64::MAX)
}

/// The main container. `image` is the task's image (checked present by the caller).
pub(crate) fn main_container(task: &TaskSpec, image: &str) -> ContainerCreateBody {
    let (entrypoint, cmd) = entry(&task.entry);
    let memory = task.limits.memory_bytes.map(|m| i64::try_from(m).unwrap_or(i64::MAX));
    ContainerCreateBody {
        image: Some(image.to_owned()),
        entrypoint,
        cmd,
        env: env(&task.env),
        working_dir: Some(workdir(task.workdir.as_deref())),
        labels: Some(labels(task, &[(names::LABEL_ROLE, names::ROLE_MAIN)])),
        tty: Some(false),
        open_stdin: Some(false),
        attach_stdin: Some(false),
        exposed_ports: (!task.host_network && !task.ports.is_empty())
            .then(|| task.ports.iter().map(|p| format!("{}/tcp", p.container)).collect()),
        host_config: Some(HostConfig {
            // The image builder: buildah's chroot isolation unshares a user namespace, which
            // Docker's default seccomp profile refuses. Nothing more: no privilege, no added
            // capability, no Docker socket.
            security_opt: task.builder.then(|| vec!["seccomp=unconfined".to_owned()]),
            network_mode: if task.host_network
                || (task.builder && crate::builder::needs_host_network(task))
            {
                Some("host".to_owned())
            } else {
                has_network(task).then(|| names::network(&task.id))
            },
            port_bindings: (!task.host_network && !task.ports.is_empty())
                .then(|| port_bindings(&task.ports)),
            mounts: Some(main_mounts(task)),
            nano_cpus: task.limits.cpu_millis.map(nano_cpus),
            memory,
            // Equal to `memory`: no swap on top of the limit.
            memory_swap: memory,
            // `logs` with `follow` must replay everything even when the container exited
            // before we asked; a daemon-wide driver such as `none` or `syslog` would not.
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".to_owned()),
                config: None,
            }),
            ..Default::default()
        }),
        networking_config: has_network(task).then(|| networking(task, None)),
        ..Default::default()
    }
}

/// `-p HOST:CONTAINER` for each port, on all the host's addresses.
fn port_bindings(ports: &[kiln_exec::PortMap]) -> bollard::models::PortMap {
    ports
        .iter()
        .map(|p| {
            let binding = bollard::models::PortBinding {
                host_ip: Some(String::new()),
                host_port: Some(p.host.to_string()),
            };
            (format!("{}/tcp", p.container), Some(vec![binding]))
        })
        .collect()
}

/// Whether the task gets a private network: when it has sidecars to reach, or ports to
/// publish (a private bridge publishes them even where the engine's default bridge is off,
/// as with `dockerd --bridge=none`). A job alone uses the engine's default network, as
/// `docker run` does, and saves creating a bridge; a job on the host network has none.
pub(crate) fn has_network(task: &TaskSpec) -> bool {
    !task.host_network && (!task.services.is_empty() || !task.ports.is_empty())
}

/// The reference to pull: Docker pulls every tag of a repository when none is named, so a
/// reference without tag or digest gets `:latest`.
pub(crate) fn pull_reference(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || last.contains(':') {
        image.to_owned()
    } else {
        format!("{image}:latest")
    }
}

/// Whether `name` can be a host name on the task network: one DNS label.
pub(crate) fn is_host_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_exec::{Limits, TaskId};

    fn task(entry: Entry) -> TaskSpec {
        TaskSpec {
            id: TaskId::sanitized("t1"),
            labels: BTreeMap::from([("kiln.run".to_owned(), "r1".to_owned())]),
            image: Some("busybox:latest".to_owned()),
            entry,
            env: BTreeMap::from([("A".to_owned(), "1".to_owned())]),
            workdir: None,
            services: vec![],
            limits: Limits { cpu_millis: Some(500), memory_bytes: Some(64 << 20) },
            seed: None,
            ports: Vec::new(),
            host_network: false,
            pull_auth: None,
            builder: false,
            constraints: Vec::new(),
            binds: Vec::new(),
        }
    }

    #[test]
    fn script_runs_under_sh_e_c() {
        let body = main_container(&task(Entry::Script("echo hi".into())), "busybox:latest");
        assert_eq!(body.entrypoint.unwrap(), ["sh", "-e", "-c"]);
        assert_eq!(body.cmd.unwrap(), ["echo hi"]);
        assert_eq!(body.working_dir.as_deref(), Some(WORKSPACE_PATH));
        assert_eq!(body.env.unwrap(), ["A=1"]);
        let labels = body.labels.unwrap();
        assert_eq!(labels["kiln.task"], "t1");
        assert_eq!(labels["kiln.run"], "r1");
        assert_eq!(labels["kiln.role"], "main");
    }

    #[test]
    fn command_overrides_entrypoint_only_when_set() {
        let entry = Entry::Command { command: None, args: vec!["a".into()] };
        let body = main_container(&task(entry), "i");
        assert_eq!(body.entrypoint, None);
        assert_eq!(body.cmd.unwrap(), ["a"]);
        let entry = Entry::Command { command: Some(vec!["/bin/x".into()]), args: vec![] };
        let body = main_container(&task(entry), "i");
        assert_eq!(body.entrypoint.unwrap(), ["/bin/x"]);
        assert_eq!(body.cmd, None);
    }

    #[test]
    fn limits_become_nano_cpus_and_memory_without_swap() {
        let host = main_container(&task(Entry::Script(String::new())), "i").host_config.unwrap();
        assert_eq!(host.nano_cpus, Some(500_000_000));
        assert_eq!(host.memory, Some(64 << 20));
        assert_eq!(host.memory_swap, Some(64 << 20));
        // A job without sidecars uses the engine's default network, like `docker run`.
        assert_eq!(host.network_mode, None);
        assert_eq!(host.port_bindings, None);
        let mount = &host.mounts.unwrap()[0];
        assert_eq!(mount.source.as_deref(), Some("kiln-t1-ws"));
        assert_eq!(mount.target.as_deref(), Some(WORKSPACE_PATH));
    }

    #[test]
    fn binds_are_mounted_after_the_workspace_read_only_when_asked() {
        let mut t = task(Entry::Script(String::new()));
        t.binds.push(kiln_exec::Bind {
            host: "/var/lib/kiln/instances/i1/config".into(),
            container: "/etc/kiln/config".into(),
            read_only: true,
        });
        let mounts = main_container(&t, "i").host_config.unwrap().mounts.unwrap();
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[0].typ, Some(MountType::VOLUME));
        assert_eq!(mounts[1].typ, Some(MountType::BIND));
        assert_eq!(mounts[1].source.as_deref(), Some("/var/lib/kiln/instances/i1/config"));
        assert_eq!(mounts[1].target.as_deref(), Some("/etc/kiln/config"));
        assert_eq!(mounts[1].read_only, Some(true));
        // Sidecars do not get them.
        let service = ServiceSpec {
            name: "db".into(),
            image: "busybox".into(),
            env: BTreeMap::new(),
            command: None,
        };
        let sidecar = service_container(&t, &service).host_config.unwrap().mounts.unwrap();
        assert_eq!(sidecar.len(), 1);
    }

    #[test]
    fn service_is_reachable_by_its_name() {
        let t = task(Entry::Script(String::new()));
        let service = ServiceSpec {
            name: "db".into(),
            image: "busybox".into(),
            env: BTreeMap::new(),
            command: Some(vec!["nc".into(), "-l".into()]),
        };
        let body = service_container(&t, &service);
        let endpoints = body.networking_config.unwrap().endpoints_config.unwrap();
        assert_eq!(endpoints["kiln-t1"].aliases.as_deref(), Some(&["db".to_owned()][..]));
        assert_eq!(body.cmd.unwrap(), ["nc", "-l"]);
        assert_eq!(body.labels.unwrap()["kiln.service"], "db");
    }

    #[test]
    fn relative_workdirs_are_inside_the_workspace() {
        assert_eq!(workdir(None), "/workspace");
        assert_eq!(workdir(Some("/tmp")), "/tmp");
        assert_eq!(workdir(Some("sub/dir")), "/workspace/sub/dir");
        assert_eq!(workdir(Some("./sub")), "/workspace/sub");
        assert_eq!(workdir(Some(".")), "/workspace");
    }

    #[test]
    fn pull_reference_names_a_tag() {
        assert_eq!(pull_reference("busybox"), "busybox:latest");
        assert_eq!(pull_reference("busybox:1.36"), "busybox:1.36");
        assert_eq!(pull_reference("localhost:5000/x"), "localhost:5000/x:latest");
        assert_eq!(pull_reference("localhost:5000/x:2"), "localhost:5000/x:2");
        assert_eq!(pull_reference("x@sha256:ab"), "x@sha256:ab");
    }

    #[test]
    fn host_labels() {
        assert!(is_host_label("db"));
        assert!(is_host_label("redis-1"));
        assert!(!is_host_label(""));
        assert!(!is_host_label("-a"));
        assert!(!is_host_label("a_b"));
        assert!(!is_host_label("a.b"));
    }

    #[test]
    fn ports_are_published_and_the_host_network_replaces_them() {
        let mut t = task(Entry::Script("true".into()));
        t.ports = vec![kiln_exec::PortMap { host: 31005, container: 8080 }];
        let body = main_container(&t, "busybox");
        assert_eq!(body.exposed_ports, Some(vec!["8080/tcp".to_owned()]));
        let bindings = body.host_config.unwrap().port_bindings.unwrap();
        let b = bindings["8080/tcp"].as_ref().unwrap();
        assert_eq!(b[0].host_port.as_deref(), Some("31005"));

        t.host_network = true;
        let body = main_container(&t, "busybox");
        assert_eq!(body.exposed_ports, None);
        let host = body.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("host"));
        assert_eq!(host.port_bindings, None);
    }
}
