//! Where a label selector's instances serve: the healthy instances of the services whose
//! labels match, with the host address of one named port. Discovery's `http_sd` endpoint
//! (`routes/discovery.rs`) and the metrics scraper (`scrape/`) both read instances through
//! this, so they always agree on what a selector picks.

use std::collections::BTreeMap;

use kiln_api::service::ServiceInfo;
use kiln_service::Selector;

/// One healthy instance of a selected service, at one of its ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Project name.
    pub project: String,
    /// Service name.
    pub service: String,
    /// The service's labels.
    pub service_labels: BTreeMap<String, String>,
    /// Instance id.
    pub instance: String,
    /// The node it runs on (empty when unknown).
    pub node: String,
    /// Its slot.
    pub slot: u32,
    /// The template version it runs.
    pub version: u32,
    /// The node's IP.
    pub host_ip: String,
    /// The host port of the chosen port.
    pub port: u16,
}

impl Target {
    /// `host:port` (an IPv6 host in brackets).
    pub fn address(&self) -> String {
        if self.host_ip.contains(':') {
            format!("[{}]:{}", self.host_ip, self.port)
        } else {
            format!("{}:{}", self.host_ip, self.port)
        }
    }
}

/// The healthy instances of the `services` that `selector` picks, at the named `port` (none:
/// each instance's first port by name). Instances without that port, or not placed yet, are
/// left out.
pub fn targets(services: &[ServiceInfo], selector: &Selector, port: Option<&str>) -> Vec<Target> {
    let mut out = Vec::new();
    for s in services.iter().filter(|s| selector.matches(&s.labels)) {
        for i in s.instances.iter().filter(|i| i.state == "healthy") {
            let host_port = match port {
                Some(name) => i.ports.get(name).copied(),
                None => i.ports.values().next().copied(),
            };
            let (Some(ip), Some(host_port)) = (&i.host_ip, host_port) else { continue };
            out.push(Target {
                project: s.project.clone(),
                service: s.name.clone(),
                service_labels: s.labels.clone(),
                instance: i.id.clone(),
                node: i.node.clone().unwrap_or_default(),
                slot: i.slot,
                version: i.version,
                host_ip: ip.clone(),
                port: host_port,
            });
        }
    }
    out
}
