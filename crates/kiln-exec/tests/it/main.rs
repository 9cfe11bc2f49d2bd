//! Integration tests of kiln-exec: the conformance suite on the fake, and the fake's own knobs.

mod conformance;
mod fake;
mod teeth;
