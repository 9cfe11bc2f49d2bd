//! Service pools on one machine, as `kiln run` runs them ([`LocalPool`]): a pool's replicas
//! started here through [`run_instance`] (the agents' instance code: `$(VAR)` expansion,
//! health checks), each named port on a free host port, waited for until `ready` of them
//! are healthy, their exports rendered with the server's function
//! ([`kiln_workflow::pool::render_exports`]), and stopped when their owner ends.
//!
//! What differs from the server, by necessity: constraints are not checked (every replica
//! runs here), an instance that exits is not restarted, `KILN_POOL_CLIENTS` is loopback
//! (`127.0.0.1/32`: the jobs run here), and only the process executor is supported (a job
//! in a container would not reach the instances at `127.0.0.1`; [`supported`] says so).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln_engine::Outcome;
use kiln_exec::{Entry, Executor, Limits, LogLine, PortMap, TaskId, TaskSpec};
use kiln_workflow::pool::{Pool, PoolInstance, render_exports};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::instance::{HealthCheck, InstanceEvent, InstanceRequest, Ports, Probe, run_instance};

/// The env var of a pool instance listing who may connect (CIDRs, space separated).
pub const CLIENTS_VAR: &str = "KILN_POOL_CLIENTS";

/// Why `executor` cannot run service pools here; `None` when it can.
pub fn supported(executor: &str) -> Option<String> {
    (executor != "process").then(|| {
        format!(
            "kiln run starts service-pools on the process executor only (this run uses the \
             {executor} executor, whose jobs would not reach the pool's instances on this \
             machine's loopback); run with --executor process, or on a server"
        )
    })
}

/// Why `kiln run` cannot start `pool` (`owner`: `job build`, or `the run`): an
/// environment's variables and the config center's files live on a server. `None` when
/// the pool asks for neither.
pub fn needs_server(pool: &Pool, owner: &str) -> Option<String> {
    let spec = &pool.service;
    let what = match (&spec.environment, &spec.config) {
        (None, None) => return None,
        (Some(e), None) => format!("`environment: {e}`"),
        (None, Some(_)) => "`config:`".to_string(),
        (Some(e), Some(_)) => format!("`environment: {e}` and `config:`"),
    };
    Some(format!(
        "kiln run cannot give service-pools an environment's variables or config: they live \
         on a server (pool `{}` of {owner} sets {what}); run the workflow on a server \
         (kiln pipeline run), or take those keys out of the pool to run it here",
        pool.name
    ))
}

/// [`needs_server`] for every pool of `plan` (the run's, then each job's), for `kiln run`
/// to say before anything runs.
pub fn server_only(plan: &kiln_workflow::plan::Plan) -> Vec<String> {
    let run = plan.pools.iter().filter_map(|p| needs_server(p, "the run"));
    let jobs = plan.jobs.iter().flat_map(|j| {
        j.pools.iter().filter_map(move |p| needs_server(p, &format!("job {}", j.id)))
    });
    run.chain(jobs).collect()
}

/// How one replica is doing.
#[derive(Debug, Clone, Default)]
struct Slot {
    info: Option<PoolInstance>,
    healthy: bool,
    /// Why it is not healthy (the last check, its exit).
    note: String,
}

/// A pool's replicas running on this machine.
pub struct LocalPool {
    pool: Pool,
    service: String,
    slots: Arc<Mutex<Vec<Slot>>>,
    changed: Arc<Notify>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A free TCP port of this machine's loopback (free when asked; the instance binds it).
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

/// The runtime's form of a service's health check.
fn health_of(h: &kiln_workflow::service::HealthCheck) -> HealthCheck {
    use kiln_workflow::service::Probe as P;
    HealthCheck {
        probe: match &h.probe {
            P::Tcp { port } => Probe::Tcp { port: port.clone() },
            P::Http { port, path } => Probe::Http { port: port.clone(), path: path.clone() },
            P::Command(argv) => Probe::Command { argv: argv.clone() },
        },
        grace: h.grace,
        interval: h.interval,
        timeout: h.timeout,
        failures: h.failures,
    }
}

impl LocalPool {
    /// Starts the replicas of `pool` for run `run_id` (`scope`: the job that owns it, empty
    /// for the run's), their output going to `log` (with the instance's name,
    /// `<pool>/<slot>`). Fails (having stopped what it started) when a port can not be had.
    pub fn start(
        executor: Arc<dyn Executor>,
        run_id: &str,
        scope: &str,
        pool: &Pool,
        log: impl Fn(&str, LogLine) + Send + Sync + 'static,
    ) -> std::io::Result<LocalPool> {
        let owner = if scope.is_empty() { "the run".to_string() } else { format!("job {scope}") };
        if let Some(why) = needs_server(pool, &owner) {
            return Err(std::io::Error::other(why));
        }
        let service =
            if scope.is_empty() { pool.name.clone() } else { format!("{scope}-{}", pool.name) };
        let spec = &pool.service;
        let replicas = spec.replicas as usize;
        let slots = Arc::new(Mutex::new(vec![Slot::default(); replicas]));
        let changed = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let log = Arc::new(log);
        let mut started = LocalPool {
            pool: pool.clone(),
            service: service.clone(),
            slots: slots.clone(),
            changed: changed.clone(),
            stop: stop.clone(),
            tasks: Vec::new(),
        };
        for slot in 0..spec.replicas {
            let mut ports = BTreeMap::new();
            for p in &spec.scheduling.ports {
                let host = if p.host != 0 { p.host } else { free_port()? };
                ports.insert(p.name.clone(), (host, p.container.unwrap_or(host)));
            }
            let instance = format!("{}-{slot}", TaskId::sanitized(&service).as_str());
            let mut env = spec.env.clone();
            for (name, (host, _)) in &ports {
                env.insert(kiln_scheduler::port_env_name(name), host.to_string());
            }
            env.extend([
                ("KILN_SERVICE".to_string(), service.clone()),
                ("KILN_INSTANCE".to_string(), instance.clone()),
                ("KILN_SLOT".to_string(), slot.to_string()),
                ("KILN_SERVICE_VERSION".to_string(), "1".to_string()),
                ("KILN_HOST_IP".to_string(), Ipv4Addr::LOCALHOST.to_string()),
                (CLIENTS_VAR.to_string(), "127.0.0.1/32".to_string()),
            ]);
            let labels = BTreeMap::from([
                ("kiln.run".to_string(), run_id.to_string()),
                ("kiln.service".to_string(), service.clone()),
                ("kiln.instance".to_string(), instance.clone()),
            ]);
            let task = TaskSpec {
                id: TaskId::sanitized(&format!("kiln-{run_id}-pool-{instance}")),
                labels,
                image: spec.image.clone(),
                entry: Entry::Command {
                    command: spec.run.command.clone(),
                    args: spec.run.args.clone(),
                },
                env,
                workdir: None,
                services: Vec::new(),
                limits: Limits {
                    cpu_millis: spec.resources.cpu_millis,
                    memory_bytes: spec.resources.memory_bytes,
                },
                seed: None,
                ports: ports
                    .values()
                    .map(|(host, container)| PortMap { host: *host, container: *container })
                    .collect(),
                host_network: false,
                pull_auth: None,
                builder: false,
                constraints: Vec::new(),
                binds: Vec::new(),
            };
            let reach: Ports = ports
                .iter()
                .map(|(n, (host, _))| (n.clone(), SocketAddr::from((Ipv4Addr::LOCALHOST, *host))))
                .collect();
            lock(&slots)[slot as usize].info = Some(PoolInstance {
                id: instance.clone(),
                slot,
                node: "local".to_string(),
                ip: Ipv4Addr::LOCALHOST.to_string(),
                ports: ports.iter().map(|(n, (host, _))| (n.clone(), *host)).collect(),
                labels: spec.labels.clone(),
            });
            let req = InstanceRequest {
                spec: task,
                health: spec.health.as_ref().map(health_of),
                ports: reach,
            };
            let (executor, slots, changed, stop, log) =
                (executor.clone(), slots.clone(), changed.clone(), stop.clone(), log.clone());
            let name = format!("{}/{slot}", pool.name);
            started.tasks.push(tokio::spawn(async move {
                let at = slot as usize;
                let outcome = run_instance(&*executor, req, stop, |ev| match ev {
                    InstanceEvent::Started | InstanceEvent::ConfigApplied { .. } => {}
                    InstanceEvent::Log(line) => log(&name, line),
                    InstanceEvent::Health(h) => {
                        let mut s = lock(&slots);
                        s[at].healthy = h.healthy;
                        s[at].note = if h.healthy { String::new() } else { h.detail };
                        drop(s);
                        changed.notify_waiters();
                    }
                })
                .await;
                let mut s = lock(&slots);
                s[at].healthy = false;
                s[at].note = match outcome {
                    Outcome::Exited(code) => format!("exited with code {code}"),
                    Outcome::Killed { code, why } => format!("{why} (exit code {code})"),
                    Outcome::Error(e) => e,
                    Outcome::Canceled => "stopped".to_string(),
                    Outcome::TimedOut => "timed out".to_string(),
                };
                drop(s);
                changed.notify_waiters();
            }));
        }
        Ok(started)
    }

    /// Waits until `ready` replicas are healthy, then renders the pool's exports from the
    /// healthy ones. Fails with the pool's reason after its `timeout`, or when `cancel` fires.
    pub async fn ready(
        &self,
        cancel: &CancellationToken,
    ) -> Result<BTreeMap<String, String>, String> {
        let deadline = tokio::time::Instant::now() + self.pool.timeout;
        loop {
            let notified = self.changed.notified();
            let (healthy, notes) = self.state();
            if healthy.len() >= self.pool.ready as usize {
                return render_exports(&self.pool.export, &self.service, &healthy)
                    .map_err(|e| format!("service pool `{}`: {e}", self.pool.name));
            }
            tokio::select! {
                () = notified => {}
                () = cancel.cancelled() => {
                    return Err(format!("canceled while waiting for service pool `{}`", self.pool.name));
                }
                () = tokio::time::sleep_until(deadline) => {
                    let details = if notes.is_empty() { String::new() } else { format!(": {notes}") };
                    return Err(format!(
                        "service pool `{}` was not ready after {:?}: {} of {} needed instances \
                         healthy{details}",
                        self.pool.name,
                        self.pool.timeout,
                        healthy.len(),
                        self.pool.ready
                    ));
                }
                // A check that never changes state still lets the deadline be seen.
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// The healthy replicas, and why the others are not.
    fn state(&self) -> (Vec<PoolInstance>, String) {
        let slots = lock(&self.slots);
        let healthy = slots.iter().filter(|s| s.healthy).filter_map(|s| s.info.clone()).collect();
        let notes: Vec<String> = slots
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.healthy)
            .map(|(i, s)| {
                let why = if s.note.is_empty() { "starting" } else { s.note.as_str() };
                format!("slot {i}: {why}")
            })
            .collect();
        (healthy, notes.join("; "))
    }

    /// Stops every replica and waits until each is destroyed.
    pub async fn stop(self) {
        self.stop.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Starts every pool of `pools` and waits for all to be ready: their exports together, or
/// the first reason one failed (every pool is stopped then). The pools come back either
/// way, for [`stop_all`].
pub async fn start_all(
    executor: &Arc<dyn Executor>,
    run_id: &str,
    scope: &str,
    pools: &[Pool],
    cancel: &CancellationToken,
    log: impl Fn(&str, LogLine) + Clone + Send + Sync + 'static,
) -> (Vec<LocalPool>, Result<BTreeMap<String, String>, String>) {
    let mut started = Vec::new();
    let mut env = BTreeMap::new();
    for pool in pools {
        match LocalPool::start(executor.clone(), run_id, scope, pool, log.clone()) {
            Ok(p) => started.push(p),
            Err(e) => {
                return (started, Err(format!("service pool `{}`: no free port: {e}", pool.name)));
            }
        }
    }
    for p in &started {
        match p.ready(cancel).await {
            Ok(exports) => env.extend(exports),
            Err(why) => return (started, Err(why)),
        }
    }
    (started, Ok(env))
}

/// Stops every pool of `pools`.
pub async fn stop_all(pools: Vec<LocalPool>) {
    futures::future::join_all(pools.into_iter().map(LocalPool::stop)).await;
}
