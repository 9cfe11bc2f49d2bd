//! kiln-exec-docker (being written).
