//! End-to-end tests of the `kiln` binary: validation, runs on the process executor, runs
//! of every example in real containers, the client commands against a real server, the
//! parity of `kiln run` with the server (artifacts, caches, `source:`, the examples), the
//! environments and the config center (`config.rs`), the pool across hosts (a server and
//! three agents in containers), `kill -9` of a server that then adopts the service instances
//! its agents run, `kill -9` of a server whose embedded agent's processes are swept when
//! it starts again, the examples as pods on the fake Kubernetes API server (`kube.rs`), and
//! the deployment files: Kiln's OCI image, the Kubernetes manifests, the systemd units
//! (`deploy.rs`).

mod adoption;
mod arrays;
mod completions;
mod config;
mod deploy;
mod deploys;
mod docker;
mod kube;
mod multihost;
mod orphans;
mod parity;
mod pools;
mod process;
mod recovery;
mod replay;
mod server;
mod support;
mod trigger;
mod usage;
mod validate;
