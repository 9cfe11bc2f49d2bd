//! kiln-exec-process (being written).
