//! The one integration-test binary of `kiln-engine`: scenarios with snapshots, and property
//! tests over random plans and event scripts.

mod arrays;
mod props;
mod scenarios;
mod support;
mod wire;
