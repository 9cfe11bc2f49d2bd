//! Placement, pure: the clock is read only by tests, which may.

// Time is a parameter: never `SystemTime::now()` here.
/// Places at `now`.
pub fn place(now: u64) -> u64 {
    now // not `Instant::now()`
}

#[cfg(test)]
mod tests;

#[cfg(test)]
#[allow(clippy::all)]
mod inline {
    #[test]
    fn clock() {
        let _ = std::time::Instant::now();
        if true {
            let _ = ("}", '}');
        }
        let _ = std::fs::read("x");
    }
}

/// Still checked after the test module (and clean).
pub fn after() {}
