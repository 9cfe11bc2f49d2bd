//! Pure reading of a pod's status: whether its containers run, why it waits, how the job
//! container ended. No I/O here.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kiln_exec::{ExitStatus, Killed};

use crate::pod::JOB;

/// Where a pod is on its way to running every container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup {
    /// Not there yet; the reason when the API gives one (`ContainerCreating`).
    Waiting(Option<String>),
    /// The scheduler finds no node for it (`PodScheduled=False`, reason `Unschedulable`):
    /// the scheduler's message.
    Unschedulable(String),
    /// A container's image cannot be pulled (`ErrImagePull`, `ImagePullBackOff`,
    /// `InvalidImageName`).
    PullFailed {
        /// The image as the pod spec names it.
        image: String,
        /// The waiting reason and message.
        detail: String,
    },
    /// A container cannot be created or the pod failed before running.
    Failed(String),
    /// Every container has started (some may have ended since).
    Running,
}

fn statuses(pod: &Pod) -> &[ContainerStatus] {
    pod.status.as_ref().and_then(|s| s.container_statuses.as_deref()).unwrap_or(&[])
}

/// Where `pod` is on its way to running.
pub fn startup(pod: &Pod) -> Startup {
    let status = pod.status.clone().unwrap_or_default();
    for condition in status.conditions.iter().flatten() {
        if condition.type_ == "PodScheduled"
            && condition.status == "False"
            && condition.reason.as_deref() == Some("Unschedulable")
        {
            let message = condition.message.clone().unwrap_or_else(|| "no node fits".to_string());
            return Startup::Unschedulable(message);
        }
    }
    let expected = pod.spec.as_ref().map(|s| s.containers.len()).unwrap_or(0);
    let mut started = 0;
    let mut waiting = None;
    for container in statuses(pod) {
        let state = container.state.clone().unwrap_or_default();
        if let Some(w) = state.waiting {
            let reason = w.reason.unwrap_or_default();
            let message = w.message.unwrap_or_default();
            let detail =
                if message.is_empty() { reason.clone() } else { format!("{reason}: {message}") };
            match reason.as_str() {
                "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull" => {
                    let image = pod
                        .spec
                        .iter()
                        .flat_map(|s| &s.containers)
                        .find(|c| c.name == container.name)
                        .and_then(|c| c.image.clone())
                        .unwrap_or_else(|| container.image.clone());
                    return Startup::PullFailed { image, detail };
                }
                "CreateContainerConfigError"
                | "CreateContainerError"
                | "RunContainerError"
                | "CrashLoopBackOff" => {
                    return Startup::Failed(format!("container {}: {detail}", container.name));
                }
                _ => waiting = Some(detail),
            }
        } else {
            started += 1;
        }
    }
    if status.phase.as_deref() == Some("Failed") && started == 0 {
        let why = status.message.or(status.reason).unwrap_or_else(|| "pod failed".to_string());
        return Startup::Failed(why);
    }
    if expected > 0 && started == expected {
        Startup::Running
    } else {
        Startup::Waiting(waiting.or(status.reason))
    }
}

/// How the job container ended, `None` while it has not. `signaled`: Kiln sent it a signal
/// (so a death by signal is not "from outside").
pub fn job_exit(pod: &Pod, signaled: bool) -> Option<ExitStatus> {
    let container = statuses(pod).iter().find(|c| c.name == JOB)?;
    let terminated = container.state.as_ref()?.terminated.as_ref()?;
    let code = terminated.exit_code;
    let killed = match terminated.reason.as_deref() {
        Some("OOMKilled") => Some(Killed::OutOfMemory),
        _ if signaled => None,
        _ if code == 137 || code == 143 => Some(Killed::Signal(code - 128)),
        _ => None,
    };
    Some(ExitStatus { code, killed })
}

/// Whether the job container is running now.
pub fn job_running(pod: &Pod) -> bool {
    statuses(pod)
        .iter()
        .find(|c| c.name == JOB)
        .and_then(|c| c.state.as_ref())
        .is_some_and(|s| s.running.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    fn spec() -> serde_json::Value {
        serde_json::json!({"containers": [{"name": "job", "image": "alpine"}, {"name": "kiln-keeper", "image": "busybox"}]})
    }

    #[test]
    fn unschedulable_pods_say_why() {
        let p = pod(serde_json::json!({
            "spec": spec(),
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
              "reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient cpu."}]}
        }));
        assert_eq!(
            startup(&p),
            Startup::Unschedulable("0/3 nodes are available: 3 Insufficient cpu.".into())
        );
    }

    #[test]
    fn image_pull_failures_name_the_image() {
        let p = pod(serde_json::json!({
            "spec": spec(),
            "status": {"phase": "Pending", "containerStatuses": [
              {"name": "job", "image": "alpine:nope", "imageID": "", "ready": false, "restartCount": 0,
               "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"alpine:nope\""}}},
              {"name": "kiln-keeper", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
               "state": {"waiting": {"reason": "ContainerCreating"}}}]}
        }));
        match startup(&p) {
            Startup::PullFailed { image, detail } => {
                assert_eq!(image, "alpine", "the image as the spec names it");
                assert!(detail.starts_with("ImagePullBackOff"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn running_once_every_container_started_and_exit_codes_read() {
        let p = pod(serde_json::json!({
            "spec": spec(),
            "status": {"phase": "Running", "containerStatuses": [
              {"name": "job", "image": "alpine", "imageID": "", "ready": false, "restartCount": 0,
               "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}},
              {"name": "kiln-keeper", "image": "busybox", "imageID": "", "ready": true, "restartCount": 0,
               "state": {"running": {}}}]}
        }));
        assert_eq!(startup(&p), Startup::Running);
        assert_eq!(
            job_exit(&p, false),
            Some(ExitStatus { code: 137, killed: Some(Killed::OutOfMemory) })
        );
        assert!(!job_running(&p));
    }

    #[test]
    fn plain_exits_and_signals() {
        let ended = |code: i32, reason: &str| {
            pod(serde_json::json!({"spec": spec(), "status": {"containerStatuses": [
              {"name": "job", "image": "alpine", "imageID": "", "ready": false, "restartCount": 0,
               "state": {"terminated": {"exitCode": code, "reason": reason}}}]}}))
        };
        assert_eq!(job_exit(&ended(3, "Error"), false), Some(ExitStatus { code: 3, killed: None }));
        assert_eq!(
            job_exit(&ended(143, "Error"), false),
            Some(ExitStatus { code: 143, killed: Some(Killed::Signal(15)) })
        );
        assert_eq!(
            job_exit(&ended(143, "Error"), true),
            Some(ExitStatus { code: 143, killed: None })
        );
        assert_eq!(startup(&ended(0, "Completed")), Startup::Waiting(None));
    }
}
