//! A headless browser for the web UI's tests: Debian's `chromium` and `chromium-driver`,
//! installed with apt-get when `/usr/bin/chromium` or `/usr/bin/chromedriver` is missing.
//! Never a downloaded browser build.

use std::path::Path;
use std::process::Command;

use anyhow::{Result, bail};

use crate::apt::Apt;
use crate::step;

/// Where the tests look for them (`crates/kiln-ui/tests/it/browser.rs`).
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Makes sure Chromium and its WebDriver are installed; prints their versions.
pub fn ensure(apt: &mut Apt) -> Result<()> {
    if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
        apt.install(&["chromium", "chromium-driver"])?;
    }
    for bin in [CHROMIUM, CHROMEDRIVER] {
        if !Path::new(bin).exists() {
            bail!("{bin} is still missing after apt-get install chromium chromium-driver");
        }
    }
    let version = step::output(Command::new(CHROMEDRIVER).arg("--version"))?;
    println!("{}", version.trim());
    Ok(())
}
