//! Integration tests of the Kubernetes executor against the FAKE API server of
//! `kiln_exec_kube::fake` (real HTTP, real `kube` client), whose pods run as containers on
//! the Docker engine of `DOCKER_HOST`, which must hold `busybox:latest`. No live cluster is
//! involved anywhere.

mod conformance;
mod executor;
mod faults;
mod scheduling;

use std::sync::Arc;
use std::time::Duration;

use kiln_exec_kube::fake::FakeApi;
use kiln_exec_kube::{KubeConfig, KubeExecutor};

/// Image every test runs.
pub const IMAGE: &str = "busybox:latest";

/// Namespace of the tests' pods.
pub const NAMESPACE: &str = "kiln-ci";

/// Starts a fake API server, or fails the test saying what is missing.
pub async fn fake() -> Arc<FakeApi> {
    match FakeApi::start().await {
        Ok(fake) => Arc::new(fake),
        Err(e) => panic!("{e} (export DOCKER_HOST=unix:///run/kiln-docker/docker.sock)"),
    }
}

/// The executor settings for agent `agent` against `fake`.
pub fn config(fake: &FakeApi, agent: &str) -> KubeConfig {
    KubeConfig {
        client: Some(fake.client_config(NAMESPACE)),
        agent: agent.to_string(),
        startup_timeout: Duration::from_secs(60),
        retry_for: Duration::from_secs(20),
        ..KubeConfig::default()
    }
}

/// An executor of agent `agent` against `fake`.
pub async fn executor(fake: &FakeApi, agent: &str) -> KubeExecutor {
    match KubeExecutor::connect(config(fake, agent)).await {
        Ok(executor) => executor,
        Err(e) => panic!("connecting to the fake: {e}"),
    }
}
