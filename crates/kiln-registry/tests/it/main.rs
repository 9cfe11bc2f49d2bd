//! Integration tests of Kiln's registry: the protocol through the real server on loopback,
//! garbage collection, events and webhooks, real clients (docker, skopeo, oras), and the blob
//! stores (filesystem, S3 on s3s-fs) through one conformance suite.

mod access;
mod api;
mod blobstores;
mod clients;
mod conformance;
mod gc_events;
mod oras;
mod protocol;
mod support;
