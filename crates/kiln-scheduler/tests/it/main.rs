//! Integration tests of kiln-scheduler: the constraint language, placement, the ledger,
//! batches, the elastic pool's planner, and property tests of the invariants.

mod autoscale;
mod batch;
mod constraints;
mod images;
mod place;
mod props;
mod support;
