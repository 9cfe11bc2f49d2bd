//! The binary may use anyhow.

fn main() -> anyhow::Result<()> {
    Ok(())
}
