//! kiln-runtime (being written).
