//! `${{ … }}` expressions: templates in string fields and `if:` conditions.
//!
//! SKELETON: signatures are the contract; bodies are being written.

/// A value an expression computes.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Missing value (renders as empty text).
    Null,
    /// Boolean.
    Bool(bool),
    /// Number.
    Number(f64),
    /// Text.
    String(String),
}

/// What an expression can read. The engine implements it for one job of one run.
pub trait Scope {
    /// `params.<name>`.
    fn param(&self, name: &str) -> Option<Value>;
    /// `jobs.<job>.outputs.<key>`.
    fn output(&self, job: &str, key: &str) -> Option<String>;
    /// `jobs.<job>.result`: `success`, `failure`, `skipped`, `canceled` or `timeout`.
    fn result(&self, job: &str) -> Option<String>;
    /// `matrix.<key>`.
    fn matrix(&self, key: &str) -> Option<String>;
    /// `failure()`: a job this one (transitively) needs failed or timed out.
    fn failed(&self) -> bool;
    /// `cancelled()`: the run is being canceled.
    fn canceled(&self) -> bool;
}

/// Something an expression reads, found by [`references`] for compile-time checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// `params.<name>`.
    Param(String),
    /// `jobs.<job>.outputs.<key>`.
    Output {
        /// Job key.
        job: String,
        /// Output key.
        key: String,
    },
    /// `jobs.<job>.result`.
    Result(String),
    /// `matrix.<key>`.
    Matrix(String),
}

/// A reference and where it stands (byte offset in the text given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// What is read.
    pub reference: Reference,
    /// Byte offset of the reference in the text.
    pub offset: usize,
}

/// A syntax or evaluation error, with its byte offset in the text given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExprError {
    /// Byte offset in the text given.
    pub offset: usize,
    /// What was wrong and what was expected.
    pub message: String,
}
