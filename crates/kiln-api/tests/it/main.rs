//! kiln-api's tests: the JSON of every wire type, pinned.

mod wire;
