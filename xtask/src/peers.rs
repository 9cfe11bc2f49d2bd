//! The real peers that services' tests run against: Debian's `prometheus` (reads Kiln's
//! `http_sd` endpoint and scrapes what it lists) and `distcc` (the seed-000 compile farm),
//! installed with apt-get when missing. The tests skip without them unless
//! `KILN_REQUIRE_PEERS=1`, which `cargo xtask ci` sets.

use std::path::Path;
use std::process::Command;

use anyhow::{Result, bail};

use crate::apt::Apt;
use crate::step;

/// Each peer: the Debian package and the binary the tests run.
const PEERS: &[(&str, &str)] = &[
    ("prometheus", "/usr/bin/prometheus"),
    ("distcc", "/usr/bin/distcc"),
    ("distcc", "/usr/bin/distccd"),
];

/// Makes sure every peer is installed; prints their versions.
pub fn ensure(apt: &mut Apt) -> Result<()> {
    let mut missing: Vec<&str> =
        PEERS.iter().filter(|(_, bin)| !Path::new(bin).exists()).map(|(pkg, _)| *pkg).collect();
    missing.dedup();
    if !missing.is_empty() {
        apt.install(&missing)?;
    }
    for (pkg, bin) in PEERS {
        if !Path::new(bin).exists() {
            bail!("{bin} is still missing after apt-get install {pkg}");
        }
    }
    let prometheus = step::output(Command::new("/usr/bin/prometheus").arg("--version"))?;
    println!("{}", prometheus.lines().next().unwrap_or_default());
    let distcc = step::output(Command::new("/usr/bin/distcc").arg("--version"))?;
    println!("{}", distcc.lines().next().unwrap_or_default());
    Ok(())
}
