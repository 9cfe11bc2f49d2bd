//! Integration tests of kiln-scheduler: the constraint language, placement, the ledger,
//! batches, and property tests of the invariants.

mod batch;
mod constraints;
mod images;
mod place;
mod props;
mod support;
