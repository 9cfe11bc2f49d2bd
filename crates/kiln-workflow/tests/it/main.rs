//! Integration tests of kiln-workflow: the `check` helper, the fixture folders
//! (`test_data/ok`, `test_data/err`), templates, the JSON Schema file, and fuzzing.

mod check;
mod fixtures;
mod fuzz;
mod schema;
mod support;
mod templates;
