//! End-to-end tests of the `kiln` binary: validation, runs on the process executor, runs
//! of every example in real containers, and the client commands against a real server.

mod docker;
mod process;
mod recovery;
mod server;
mod support;
mod validate;
