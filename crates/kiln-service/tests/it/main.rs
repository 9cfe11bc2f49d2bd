//! kiln-service's tests: each slot situation as a table of cases (`slots.rs`), and properties
//! over whole services driven through random lives (`props.rs`).

mod props;
mod slots;
mod support;
