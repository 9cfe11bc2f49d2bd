//! What an agent declares of its host: CPUs, memory, disk, host name and IP.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;

use kiln_api::pool::Resources;

/// The host's resources as this process sees them: CPUs the scheduler lets it use (cgroup
/// quotas included), memory (`MemTotal`, or the cgroup's `memory.max` when lower) and the
/// size of the file system holding `work_dir`.
pub fn resources(work_dir: &Path) -> Resources {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
    let mut memory = meminfo.as_deref().and_then(mem_total).unwrap_or(0);
    if let Some(limit) = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        && (memory == 0 || limit < memory)
    {
        memory = limit;
    }
    let disk =
        rustix::fs::statvfs(work_dir).map(|s| s.f_blocks.saturating_mul(s.f_frsize)).unwrap_or(0);
    Resources { cpu_millis: cpus * 1000, memory_bytes: memory, disk_bytes: disk }
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The local address this host uses to reach `server` (a UDP socket "connected" to it: no
/// packet is sent). `None` when the server is not an address this host can route to.
pub fn ip_towards(server: SocketAddr) -> Option<IpAddr> {
    let bind: SocketAddr =
        if server.is_ipv4() { "0.0.0.0:0".parse().ok()? } else { "[::]:0".parse().ok()? };
    let socket = UdpSocket::bind(bind).ok()?;
    socket.connect(server).ok()?;
    socket.local_addr().ok().map(|a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_read_from_meminfo() {
        let text = "MemTotal:       24576000 kB\nMemFree:         1000 kB\n";
        assert_eq!(mem_total(text), Some(24_576_000 * 1024));
        assert_eq!(mem_total("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn this_host_has_resources_and_a_loopback_route() {
        let dir = tempfile::tempdir().unwrap();
        let r = resources(dir.path());
        assert!(r.cpu_millis >= 1000, "{r:?}");
        assert!(r.memory_bytes > 64 << 20, "{r:?}");
        assert!(r.disk_bytes > 0, "{r:?}");
        let ip = ip_towards("127.0.0.1:7171".parse().unwrap()).unwrap();
        assert!(ip.is_loopback(), "{ip}");
    }
}
