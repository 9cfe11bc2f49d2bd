//! The server through its REST API, with a real agent running jobs as host processes.

mod api;
mod files;
mod support;
