//! The shared test kit (`kiln-testkit`): a real server on loopback with its agent on the
//! process executor, hosts as agents declare them, and a proxy whose connections a test cuts.

pub use kiln_testkit::{CuttableProxy, TestServer, host};
