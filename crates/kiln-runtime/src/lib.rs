//! Runs jobs: the wrapper around one task ([`task`]), the PreStart/PostStop wrapper around a
//! job attempt ([`wrapper`]: the `source` checkout ([`checkout`]), artifacts of needed jobs,
//! caches), a whole run on one machine ([`local`], what `kiln run` uses), the `sh -e` script of a job's `script:` lines
//! ([`script`]: echo, exit status, stderr in order), the file-system
//! side of caches and artifacts ([`archive`]), and service instances with their health
//! checks ([`instance`], what agents run for long leases; their config files written as
//! Kubernetes writes ConfigMap volumes by [`config_files`]), and service pools on one machine
//! ([`pools`], what `kiln run` starts for `service-pools`). Shared by `kiln run` and the
//! agents, so a job gets the same workspace on a laptop as on the server.
//!
//! Invariant: every task started through [`task::drive_task`] (or
//! [`instance::run_instance`]) is destroyed before it returns,
//! whether it succeeded, failed, timed out or was canceled. Nothing here speaks HTTP: where
//! archives come from and go to is the caller's [`wrapper::Files`].

pub mod archive;
pub mod build;
pub mod checkout;
pub mod config_files;
pub mod instance;
pub mod local;
pub mod pools;
pub mod script;
pub mod task;
pub mod wrapper;

pub use instance::{
    ConfigChange, InstanceConfig, InstanceEvent, InstanceRequest, run_instance,
    run_instance_configured,
};
pub use local::{Control, JobReport, LocalRun, LocalSetup, Report, Update};
pub use task::{TaskEvent, TaskRequest, TaskResult, drive_task, parse_job_out};
