//! A pure crate that is not: it reads the clock and the environment.

mod state;

// `Utc::now` in a comment is not a call.

/// Seconds a run took.
pub fn start() -> u64 {
    let started = std::time::Instant::now();
    started.elapsed().as_secs()
}

/// The home directory.
pub fn home() -> Option<String> { std::env::var("HOME").ok() }
