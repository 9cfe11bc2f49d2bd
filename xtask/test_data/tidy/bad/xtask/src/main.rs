//! xtask may use anyhow.

fn main() -> anyhow::Result<()> {
    Ok(())
}
