//! Integration tests of Kiln's registry: the protocol through the real server on loopback,
//! garbage collection, events and webhooks, and real clients (docker, skopeo, oras).

mod access;
mod api;
mod clients;
mod conformance;
mod gc_events;
mod oras;
mod protocol;
mod support;
