//! Test support shared by every suite that needs a running Kiln: [`TestServer`] (a real
//! server on loopback with a temporary data directory and an agent on the process executor),
//! fresh PostgreSQL databases ([`postgres`]), host facts as agents declare them ([`host`]),
//! waiting with a deadline ([`wait`]), a TCP proxy whose connections a test can cut
//! ([`CuttableProxy`]), the real peers some tests run against ([`peer`]), a generated C
//! project to build ([`c_project`]), tiny images pushed to a server's registry
//! ([`push_image`]), Docker engines of a test's own ([`PrivateEngine`]), another registry
//! with a login ([`Distribution`]) and faults of the file system under a data directory
//! ([`Mount`]: a small tmpfs to [`fill`], a read-only one), and a real S3 server
//! ([`S3Server`], s3s-fs). A dev-dependency only: no library
//! or binary depends on it.

mod cproject;
mod distribution;
mod engine;
mod image;
mod mount;
pub mod postgres;
mod proxy;
mod s3;
mod server;
pub mod wait;

use kiln_api::pool::{AttrValue, PortRange, Resources};

pub use cproject::c_project;
pub use distribution::{DISTRIBUTION_PASSWORD, DISTRIBUTION_USER, Distribution};
pub use engine::PrivateEngine;
pub use image::push_image;
pub use mount::{Mount, fill};
pub use proxy::CuttableProxy;
pub use s3::{S3_ACCESS_KEY, S3_SECRET_KEY, S3S_FS_VAR, S3Server, s3s_fs};
pub use server::{Backend, TestAgent, TestServer};
pub use wait::is_final;

const GI: u64 = 1 << 30;

/// A host as `kiln agent` declares it: `cpus` CPUs, 16 GiB, 100 GiB of disk, ports
/// 31000-31099, these attributes, named `host-<last part of the IP>`.
pub fn host(ip: &str, cpus: u64, attrs: &[(&str, AttrValue)]) -> kiln_agent::HostFacts {
    kiln_agent::HostFacts {
        hostname: format!("host-{}", ip.rsplit('.').next().unwrap_or(ip)),
        ip: ip.into(),
        resources: Some(Resources {
            cpu_millis: cpus * 1000,
            memory_bytes: 16 * GI,
            disk_bytes: 100 * GI,
        }),
        ports: Some(PortRange { start: 31000, end: 31099 }),
        attributes: attrs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
    }
}

/// The path of a real peer's binary (`/usr/bin/prometheus`, `/usr/bin/distccd`), or `None`
/// after printing why `test` skips when it is not installed. With `KILN_REQUIRE_PEERS=1` (as
/// in `cargo xtask ci`, which installs them) a missing peer fails the test instead.
pub fn peer(test: &str, bin: &str) -> Option<std::path::PathBuf> {
    let path = std::path::Path::new(bin);
    if path.exists() {
        return Some(path.to_path_buf());
    }
    assert!(
        std::env::var("KILN_REQUIRE_PEERS").as_deref() != Ok("1"),
        "{test}: KILN_REQUIRE_PEERS=1 but {bin} is missing (cargo xtask ci installs it)"
    );
    eprintln!("{test}: skipped, {bin} is not installed (cargo xtask ci installs it)");
    None
}
