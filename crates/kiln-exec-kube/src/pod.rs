//! Pure translation of a [`TaskSpec`] into the pod (and pull secret) that runs it, and the
//! capability check that refuses what does not translate. No I/O here.
//!
//! The pod of task `ID` is `kiln-ID`, with `restartPolicy: Never` and:
//! - the container [`JOB`]: the task's image, its entry wrapped in a `sh` loop that waits for
//!   the file `/kiln/go` (written by `start`), so that nothing of the task runs before `start`
//!   even though Kubernetes starts all containers of a pod together;
//! - the container [`KEEPER`]: a helper image (busybox by default) that sleeps, holding the
//!   workspace while the executor copies the seed in, signals the start, and exports the
//!   workspace after the job container has exited (all through the exec API);
//! - one container `svc-NAME` per sidecar service, reachable from the job by its name
//!   (`hostAliases` map every service name to `127.0.0.1`: containers of a pod share one
//!   network namespace);
//! - two `emptyDir` volumes: the workspace at [`WORKSPACE_PATH`] and the control directory
//!   `/kiln`.

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, HostAlias, LocalObjectReference, Pod,
    PodSpec, ResourceRequirements, Secret, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kiln_exec::{Entry, ExecError, TaskId, TaskSpec, WORKSPACE_PATH};

/// Executor name in messages.
pub const NAME: &str = "kubernetes";
/// Label holding the task id on every pod and secret the executor creates.
pub const LABEL_TASK: &str = "kiln.dev/task";
/// Label holding the agent's name: the start-up sweep deletes what carries its own.
pub const LABEL_AGENT: &str = "kiln.dev/agent";
/// Label marking objects made by Kiln (`kiln.dev/managed-by=kiln`).
pub const LABEL_MANAGED: &str = "kiln.dev/managed-by";
/// The job (main) container.
pub const JOB: &str = "job";
/// The helper container that holds the workspace for copies in and out.
pub const KEEPER: &str = "kiln-keeper";
/// Where the control directory (start cue) is mounted in the job and keeper containers.
pub const CONTROL_PATH: &str = "/kiln";
/// The file whose creation lets the job's entry run.
pub const GO_FILE: &str = "/kiln/go";

/// What the job container runs before the task's own entry: wait for the start cue, then
/// replace itself with the entry (so the entry is the container's first process and gets
/// the signals sent to it).
const GATE: &str = "while [ ! -e /kiln/go ]; do sleep 0.1; done; exec \"$@\"";

/// The keeper's command: sleep until deleted, and end at once on SIGTERM.
const KEEPER_SCRIPT: &str = "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done";

/// What the pod of a task is made from beyond the task itself (the executor's settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodTemplate {
    /// Namespace of pods and secrets.
    pub namespace: String,
    /// The agent's name, as a label value (sanitized).
    pub agent: String,
    /// Image of the keeper container: needs `sh`, `sleep` and `tar` (or `busybox tar`).
    pub helper_image: String,
    /// Node selector put on every pod (`kiln agent --node-selector key=value`).
    pub node_selector: BTreeMap<String, String>,
}

/// The pod's name for task `id`.
pub fn pod_name(id: &TaskId) -> String {
    format!("kiln-{id}")
}

/// The pull secret's name for task `id`.
pub fn secret_name(id: &TaskId) -> String {
    format!("kiln-{id}-pull")
}

/// The container name of sidecar `service`.
pub fn service_container(service: &str) -> String {
    let id = TaskId::sanitized(&format!("svc-{service}"));
    id.as_str().chars().take(63).collect()
}

/// The label selector of everything made for task `id`.
pub fn task_selector(id: &TaskId) -> String {
    format!("{LABEL_TASK}={id}")
}

/// The label selector of everything made by agent `agent` (a sanitized name).
pub fn agent_selector(agent: &str) -> String {
    format!("{LABEL_AGENT}={agent},{LABEL_MANAGED}=kiln")
}

/// Whether `value` is a valid label value: at most 63 characters, alphanumerics, `-`, `_`
/// and `.`, starting and ending with an alphanumeric (or empty).
pub fn is_label_value(value: &str) -> bool {
    value.is_empty()
        || (value.len() <= 63
            && value.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

/// Whether `key` is a valid label key: an optional DNS-subdomain prefix and `/`, then a name
/// that is a valid non-empty label value.
pub fn is_label_key(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            })
    });
    prefix_ok && !name.is_empty() && is_label_value(name)
}

fn unsupported(what: impl Into<String>) -> ExecError {
    ExecError::Unsupported { executor: NAME, what: what.into() }
}

/// Says whether `task` translates into a pod; `Unsupported` naming what does not.
pub fn check(task: &TaskSpec) -> Result<(), ExecError> {
    if task.image.is_none() {
        return Err(unsupported("a job without an image (every pod container needs one)"));
    }
    if task.builder {
        return Err(unsupported(
            "image builds (`build:` jobs need buildah with a relaxed seccomp profile; run them \
             on a Docker or process agent)",
        ));
    }
    if !task.binds.is_empty() {
        return Err(unsupported(
            "host directories mounted into the job (the pod runs on a cluster node, not on the \
             agent's host)",
        ));
    }
    if task.host_network {
        return Err(unsupported(
            "the host's network (the pod runs on a cluster node, not on the agent's host)",
        ));
    }
    if let Entry::Command { command: None, .. } = task.entry {
        return Err(unsupported(
            "a command run with the image's own entrypoint (the pod starts the job on cue \
             through `sh`: name the command)",
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for service in &task.services {
        let container = service_container(&service.name);
        if !seen.insert(container.clone()) || container == JOB || container == KEEPER {
            return Err(unsupported(format!(
                "two services named alike (`{}` is container `{container}` in the pod)",
                service.name
            )));
        }
        if !is_dns_label(&service.name) {
            return Err(unsupported(format!(
                "the service name `{}` as a host name (lowercase letters, digits and `-`)",
                service.name
            )));
        }
    }
    Ok(())
}

fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// The job's working directory in its container: the workspace when unset, relative paths
/// below it, absolute ones as given.
pub fn workdir(task: &TaskSpec) -> String {
    match task.workdir.as_deref() {
        None | Some("") => WORKSPACE_PATH.to_string(),
        Some(dir) if dir.starts_with('/') => dir.to_string(),
        Some(dir) => format!("{WORKSPACE_PATH}/{}", dir.trim_end_matches('/')),
    }
}

/// The job container's command: the gate, then the entry as `"$@"`.
pub fn job_command(entry: &Entry) -> Vec<String> {
    let mut argv =
        vec!["sh".to_string(), "-c".to_string(), GATE.to_string(), "kiln-job".to_string()];
    match entry {
        Entry::Script(script) => {
            argv.extend(["sh", "-e", "-c"].map(str::to_string));
            argv.push(script.clone());
        }
        Entry::Command { command, args } => {
            argv.extend(command.iter().flatten().cloned());
            argv.extend(args.iter().cloned());
        }
    }
    argv
}

fn env(vars: &BTreeMap<String, String>) -> Option<Vec<EnvVar>> {
    let vars: Vec<EnvVar> = vars
        .iter()
        .map(|(name, value)| EnvVar {
            name: name.clone(),
            value: Some(value.clone()),
            ..Default::default()
        })
        .collect();
    (!vars.is_empty()).then_some(vars)
}

fn mounts() -> Option<Vec<VolumeMount>> {
    Some(vec![
        VolumeMount {
            name: "workspace".to_string(),
            mount_path: WORKSPACE_PATH.to_string(),
            ..Default::default()
        },
        VolumeMount {
            name: "kiln".to_string(),
            mount_path: CONTROL_PATH.to_string(),
            ..Default::default()
        },
    ])
}

/// Requests and limits of the job container: both set to the task's limits (a job gets what
/// it may use), none when the task has none.
pub fn resources(task: &TaskSpec) -> Option<ResourceRequirements> {
    let mut amounts = BTreeMap::new();
    if let Some(cpu) = task.limits.cpu_millis {
        amounts.insert("cpu".to_string(), Quantity(format!("{cpu}m")));
    }
    if let Some(memory) = task.limits.memory_bytes {
        amounts.insert("memory".to_string(), Quantity(memory.to_string()));
    }
    (!amounts.is_empty()).then(|| ResourceRequirements {
        limits: Some(amounts.clone()),
        requests: Some(amounts),
        ..Default::default()
    })
}

/// The labels (valid as labels) and annotations (the task labels that are not) of the
/// objects made for `task`.
fn labels(
    template: &PodTemplate,
    task: &TaskSpec,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut labels = BTreeMap::new();
    let mut annotations = BTreeMap::new();
    for (key, value) in &task.labels {
        if is_label_key(key) && is_label_value(value) {
            labels.insert(key.clone(), value.clone());
        } else {
            annotations.insert(key.clone(), value.clone());
        }
    }
    labels.insert(LABEL_TASK.to_string(), task.id.to_string());
    labels.insert(LABEL_AGENT.to_string(), template.agent.clone());
    labels.insert(LABEL_MANAGED.to_string(), "kiln".to_string());
    (labels, annotations)
}

/// The job container's ports: each of the task's `ports:` as a TCP `containerPort` (no
/// `hostPort`: the pod's IP reaches it; the host port the scheduler gave stays in
/// `KILN_PORT_<NAME>`).
pub fn container_ports(task: &TaskSpec) -> Option<Vec<ContainerPort>> {
    let mut ports: Vec<ContainerPort> = Vec::new();
    for p in &task.ports {
        if ports.iter().all(|have| have.container_port != i32::from(p.container)) {
            ports.push(ContainerPort {
                container_port: i32::from(p.container),
                protocol: Some("TCP".to_string()),
                ..Default::default()
            });
        }
    }
    (!ports.is_empty()).then_some(ports)
}

/// Whether the pod needs the task's pull secret: it has credentials and they are for the
/// registry of the job's image or of a service's.
pub fn needs_pull_secret(task: &TaskSpec) -> bool {
    task.pull_auth.as_ref().is_some_and(|auth| {
        task.image.iter().chain(task.services.iter().map(|s| &s.image)).any(|i| auth.covers(i))
    })
}

/// The pod that runs `task` (assumed to pass [`check`] and
/// [`affinity::translate`](crate::affinity::translate)).
pub fn pod(template: &PodTemplate, task: &TaskSpec) -> Pod {
    let placement = crate::affinity::translate(&template.node_selector, &task.constraints)
        .unwrap_or_else(|_| crate::affinity::NodePlacement {
            node_selector: template.node_selector.clone(),
            affinity: None,
        });
    let (labels, annotations) = labels(template, task);
    let image = task.image.clone().unwrap_or_default();
    let mut containers = vec![
        Container {
            name: JOB.to_string(),
            image: Some(image),
            command: Some(job_command(&task.entry)),
            env: env(&task.env),
            working_dir: Some(workdir(task)),
            resources: resources(task),
            ports: container_ports(task),
            volume_mounts: mounts(),
            ..Default::default()
        },
        Container {
            name: KEEPER.to_string(),
            image: Some(template.helper_image.clone()),
            command: Some(vec!["sh".to_string(), "-c".to_string(), KEEPER_SCRIPT.to_string()]),
            volume_mounts: mounts(),
            ..Default::default()
        },
    ];
    for service in &task.services {
        containers.push(Container {
            name: service_container(&service.name),
            image: Some(service.image.clone()),
            command: service.command.clone(),
            env: env(&service.env),
            ..Default::default()
        });
    }
    let host_aliases = (!task.services.is_empty()).then(|| {
        vec![HostAlias {
            ip: "127.0.0.1".to_string(),
            hostnames: Some(task.services.iter().map(|s| s.name.clone()).collect()),
        }]
    });
    let empty_dir = |name: &str| Volume {
        name: name.to_string(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(pod_name(&task.id)),
            namespace: Some(template.namespace.clone()),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..Default::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("Never".to_string()),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            termination_grace_period_seconds: Some(1),
            node_selector: (!placement.node_selector.is_empty()).then_some(placement.node_selector),
            affinity: placement.affinity,
            image_pull_secrets: needs_pull_secret(task)
                .then(|| vec![LocalObjectReference { name: secret_name(&task.id) }]),
            host_aliases,
            volumes: Some(vec![empty_dir("workspace"), empty_dir("kiln")]),
            containers,
            ..Default::default()
        }),
        status: None,
    }
}

/// The `kubernetes.io/dockerconfigjson` secret holding the task's pull credentials, when it
/// has some.
pub fn pull_secret(template: &PodTemplate, task: &TaskSpec) -> Option<Secret> {
    let auth = task.pull_auth.as_ref().filter(|_| needs_pull_secret(task))?;
    let (labels, _) = labels(template, task);
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", auth.username, auth.password));
    let config = serde_json::json!({
        "auths": {
            &auth.registry: { "username": auth.username, "password": auth.password, "auth": basic }
        }
    });
    Some(Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(&task.id)),
            namespace: Some(template.namespace.clone()),
            labels: Some(labels),
            ..Default::default()
        },
        type_: Some("kubernetes.io/dockerconfigjson".to_string()),
        data: Some(BTreeMap::from([(
            ".dockerconfigjson".to_string(),
            ByteString(config.to_string().into_bytes()),
        )])),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_exec::conformance::script_task;
    use kiln_exec::{Limits, RegistryAuth, ServiceSpec};

    fn template() -> PodTemplate {
        PodTemplate {
            namespace: "ci".to_string(),
            agent: "a1".to_string(),
            helper_image: "busybox:latest".to_string(),
            node_selector: BTreeMap::from([("pool".to_string(), "ci".to_string())]),
        }
    }

    fn task() -> TaskSpec {
        let mut task = script_task("t1", &["echo hi"]);
        task.image = Some("alpine:3".to_string());
        task
    }

    #[test]
    fn the_job_container_waits_for_the_cue_then_runs_the_script() {
        let pod = pod(&template(), &task());
        let spec = pod.spec.unwrap();
        let job = &spec.containers[0];
        assert_eq!(job.name, JOB);
        assert_eq!(job.image.as_deref(), Some("alpine:3"));
        let command = job.command.clone().unwrap();
        assert_eq!(command[..2], ["sh", "-c"]);
        assert!(command[2].contains(GO_FILE));
        assert_eq!(command[3..], ["kiln-job", "sh", "-e", "-c", "echo hi"]);
        assert_eq!(job.working_dir.as_deref(), Some("/workspace"));
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(spec.node_selector.unwrap()["pool"], "ci");
        assert_eq!(spec.containers[1].name, KEEPER);
    }

    #[test]
    fn labels_name_the_task_and_agent_and_odd_ones_become_annotations() {
        let mut task = task();
        task.labels.insert("kiln.run".to_string(), "not a valid value!".to_string());
        let pod = pod(&template(), &task);
        let labels = pod.metadata.labels.unwrap();
        assert_eq!(labels[LABEL_TASK], task.id.as_str());
        assert_eq!(labels[LABEL_AGENT], "a1");
        assert_eq!(labels["kiln.task"], task.id.as_str());
        assert_eq!(pod.metadata.annotations.unwrap()["kiln.run"], "not a valid value!");
        assert_eq!(pod.metadata.name.unwrap(), format!("kiln-{}", task.id));
    }

    #[test]
    fn limits_become_requests_and_limits() {
        let mut task = task();
        task.limits = Limits { cpu_millis: Some(500), memory_bytes: Some(64 << 20) };
        let r = resources(&task).unwrap();
        assert_eq!(r.limits.as_ref().unwrap()["cpu"], Quantity("500m".to_string()));
        assert_eq!(r.limits.as_ref().unwrap()["memory"], Quantity("67108864".to_string()));
        assert_eq!(r.requests, r.limits);
        assert_eq!(resources(&super::tests::task()), None);
    }

    #[test]
    fn services_are_containers_reachable_by_name() {
        let mut task = task();
        task.services.push(ServiceSpec {
            name: "db".to_string(),
            image: "postgres:17".to_string(),
            env: BTreeMap::new(),
            command: None,
        });
        let spec = pod(&template(), &task).spec.unwrap();
        assert_eq!(spec.containers[2].name, "svc-db");
        let alias = &spec.host_aliases.unwrap()[0];
        assert_eq!(alias.ip, "127.0.0.1");
        assert_eq!(alias.hostnames.as_deref(), Some(&["db".to_string()][..]));
    }

    #[test]
    fn workdirs_resolve_against_the_workspace() {
        let mut task = task();
        assert_eq!(workdir(&task), "/workspace");
        task.workdir = Some("sub/dir".to_string());
        assert_eq!(workdir(&task), "/workspace/sub/dir");
        task.workdir = Some("/".to_string());
        assert_eq!(workdir(&task), "/");
    }

    #[test]
    fn ports_become_container_ports_of_the_job() {
        let mut task = task();
        assert_eq!(container_ports(&task), None);
        task.ports.push(kiln_exec::PortMap { host: 31005, container: 8080 });
        task.ports.push(kiln_exec::PortMap { host: 31006, container: 3633 });
        assert_eq!(check(&task), Ok(()));
        let spec = pod(&template(), &task).spec.unwrap();
        let ports = spec.containers[0].ports.clone().unwrap();
        let numbers: Vec<i32> = ports.iter().map(|p| p.container_port).collect();
        assert_eq!(numbers, [8080, 3633]);
        assert!(
            ports.iter().all(|p| p.host_port.is_none() && p.protocol.as_deref() == Some("TCP"))
        );
    }

    #[test]
    fn constraints_join_the_agents_node_selector() {
        let mut task = task();
        task.constraints = vec![
            vec![kiln_exec::ConstraintTest {
                attribute: "disktype".into(),
                operator: "LIKE".into(),
                value: Some("ssd".into()),
            }],
            vec![kiln_exec::ConstraintTest {
                attribute: "zone".into(),
                operator: "LIKE".into(),
                value: Some("a|b".into()),
            }],
        ];
        let spec = pod(&template(), &task).spec.unwrap();
        let selector = spec.node_selector.unwrap();
        assert_eq!((selector["pool"].as_str(), selector["disktype"].as_str()), ("ci", "ssd"));
        let required = spec
            .affinity
            .unwrap()
            .node_affinity
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .unwrap();
        let e = &required.node_selector_terms[0].match_expressions.as_ref().unwrap()[0];
        assert_eq!((e.key.as_str(), e.operator.as_str()), ("zone", "In"));
    }

    #[test]
    fn pull_credentials_become_a_dockerconfigjson_secret() {
        let mut task = task();
        assert!(pull_secret(&template(), &task).is_none());
        task.pull_auth = Some(RegistryAuth {
            registry: "kiln.example:7171".to_string(),
            username: "pull".to_string(),
            password: "s3cret".to_string(),
        });
        // Credentials for another registry than the images': no secret, no reference.
        assert!(pull_secret(&template(), &task).is_none());
        assert_eq!(pod(&template(), &task).spec.unwrap().image_pull_secrets, None);
        task.image = Some("kiln.example:7171/shop/app:1".to_string());
        task.pull_auth = Some(RegistryAuth {
            registry: "kiln.example:7171".to_string(),
            username: "pull".to_string(),
            password: "s3cret".to_string(),
        });
        let secret = pull_secret(&template(), &task).unwrap();
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/dockerconfigjson"));
        let data = &secret.data.unwrap()[".dockerconfigjson"];
        let json: serde_json::Value = serde_json::from_slice(&data.0).unwrap();
        assert_eq!(json["auths"]["kiln.example:7171"]["username"], "pull");
        assert_eq!(json["auths"]["kiln.example:7171"]["auth"], "cHVsbDpzM2NyZXQ=");
        let spec = pod(&template(), &task).spec.unwrap();
        assert_eq!(spec.image_pull_secrets.unwrap()[0].name, secret_name(&task.id));
    }

    #[test]
    fn what_does_not_translate_is_refused_by_name() {
        let refused = |task: TaskSpec, needle: &str| match check(&task) {
            Err(ExecError::Unsupported { executor, what }) => {
                assert_eq!(executor, NAME);
                assert!(what.contains(needle), "{what}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        };
        let mut t = task();
        t.host_network = true;
        refused(t, "network");
        let mut t = task();
        t.builder = true;
        refused(t, "builds");
        let mut t = task();
        t.image = None;
        refused(t, "image");
        let mut t = task();
        t.entry = Entry::Command { command: None, args: vec!["x".to_string()] };
        refused(t, "entrypoint");
        let mut t = task();
        t.binds.push(kiln_exec::Bind {
            host: "/etc".into(),
            container: "/etc/x".to_string(),
            read_only: true,
        });
        refused(t, "host directories");
        assert_eq!(check(&task()), Ok(()));
    }

    #[test]
    fn label_syntax() {
        assert!(is_label_key("kiln.dev/task"));
        assert!(is_label_key("kiln.task"));
        assert!(!is_label_key("Kiln.Dev/x"));
        assert!(!is_label_key("a/b/c"));
        assert!(is_label_value("kc-abc-1"));
        assert!(!is_label_value("-x"));
        assert!(!is_label_value(&"x".repeat(64)));
    }
}
