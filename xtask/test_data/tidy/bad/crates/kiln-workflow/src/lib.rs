//! Workflows, fetched over HTTP (which a pure crate must not do).
