//! Integration tests of kiln-exec: the conformance suite on the fake, the fake's own knobs, the
//! no-op executor.

mod conformance;
mod fake;
mod noop;
mod teeth;
