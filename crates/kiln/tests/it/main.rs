//! End-to-end tests of the `kiln` binary: validation, runs on the process executor, runs
//! of every example in real containers, the client commands against a real server, and the
//! pool across hosts (a server and three agents in containers).

mod docker;
mod multihost;
mod process;
mod recovery;
mod server;
mod support;
mod validate;
