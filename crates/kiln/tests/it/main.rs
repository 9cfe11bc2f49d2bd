//! End-to-end tests of the `kiln` binary: validation, runs on the process executor, and runs
//! of every example in real containers.

mod docker;
mod process;
mod support;
mod validate;
