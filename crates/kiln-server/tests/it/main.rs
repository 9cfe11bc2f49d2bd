//! The server through its REST API, with a real agent running jobs as host processes; the
//! main scenarios also on PostgreSQL (`postgres.rs`).

mod access;
mod api;
mod arrays;
mod builds;
mod config;
mod deploys;
mod distcc;
mod environments;
mod faults;
mod files;
mod gc;
mod git;
mod images;
mod injection;
mod instance_config;
mod limits;
mod logs;
mod masking;
mod notify;
mod openapi;
mod pool;
mod pools;
mod postgres;
mod scans;
mod schedules;
mod scrape;
mod seed003;
mod service_access;
mod services;
mod support;
mod trigger;
mod usage;
