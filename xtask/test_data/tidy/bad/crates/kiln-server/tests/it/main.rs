#![allow(missing_docs)]
//! Tests, with an attribute before the module doc.
