//! Log storage, with an anyhow in a library.

mod store;

/// Opens the store.
pub fn open() -> anyhow::Result<()> {
    Ok(())
}
