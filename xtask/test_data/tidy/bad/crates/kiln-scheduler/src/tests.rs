//! Unit tests, out of line.

#[test]
fn now() {
    let _ = std::time::SystemTime::now();
}
