//! Benches may read the clock.

fn main() {
    let _ = std::time::Instant::now();
}
