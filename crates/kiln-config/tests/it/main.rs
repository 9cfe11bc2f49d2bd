//! kiln-config's behaviour as the config center uses it: diffs between renders (insta
//! snapshots of the unified text), release decisions, what an instance is served.

mod diffs;
mod releases;
