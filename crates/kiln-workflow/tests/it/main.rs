//! Integration tests of kiln-workflow: the `check` helper, the fixture folders
//! (`test_data/ok`, `test_data/err`), templates, the JSON Schema file, fuzzing, and the
//! scheduling keys turned into the scheduler's request; service files.

mod check;
mod fixtures;
mod fuzz;
mod schedules;
mod scheduling;
mod schema;
mod services;
mod support;
mod templates;
