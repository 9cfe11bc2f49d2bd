use std::io;

/// Stores lines.
pub fn store() -> io::Result<()> {
    Ok(())
}
