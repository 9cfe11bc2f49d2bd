//! `${{ … }}` expressions: templates in string fields and `if:` conditions.
//!
//! The language is a small subset of GitHub Actions expressions, parsed by hand (recursive
//! descent). Grammar, lowest precedence first:
//!
//! ```text
//! or      := and ( '||' and )*
//! and     := eq ( '&&' eq )*
//! eq      := cmp ( ( '==' | '!=' ) cmp )*
//! cmp     := unary ( ( '<' | '<=' | '>' | '>=' ) unary )*
//! unary   := '!' unary | primary
//! primary := '(' or ')' | STRING | NUMBER | 'true' | 'false' | 'null'
//!          | FUNC '(' [ or ( ',' or )* ] ')' | path
//! path    := ( 'params' | 'jobs' | 'matrix' ) ( '.' NAME | '[' STRING ']' )*
//! ```
//!
//! Semantics that differ from GitHub on purpose: string comparison and `contains`,
//! `startsWith`, `endsWith` are case-sensitive; a boolean equals the text `'true'`/`'false'`.
//!
//! Invariants: parsing never panics and is bounded (nesting depth and operator count are
//! limited); evaluation is infallible once parsed (a missing value is `null`).

use std::cmp::Ordering;
use std::fmt;

use crate::plan::ParamValue;

/// Opens an expression inside a template.
const OPEN: &str = "${{";
/// Closes an expression inside a template.
const CLOSE: &str = "}}";
/// Deepest nesting of `(` and `!` accepted (bounds recursion on hostile input).
const MAX_DEPTH: usize = 64;
/// Most binary operators accepted in one expression (bounds the tree's depth).
const MAX_OPERATORS: usize = 256;

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

impl Value {
    /// GitHub truthiness: `false`, `0`, `NaN`, `''` and `null` are false, all else is true.
    pub fn is_truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Number(n) => *n != 0.0 && !n.is_nan(),
            Value::String(s) => !s.is_empty(),
        }
    }
}

impl fmt::Display for Value {
    /// The text a template renders: `null` is empty, integral numbers have no `.0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => Ok(()),
            Value::Bool(b) => write!(f, "{b}"),
            // Rust prints 3.0 as "3"; -0 is shown as 0.
            Value::Number(n) if *n == 0.0 => f.write_str("0"),
            Value::Number(n) => write!(f, "{n}"),
            Value::String(s) => f.write_str(s),
        }
    }
}

impl From<&ParamValue> for Value {
    fn from(v: &ParamValue) -> Self {
        match v {
            ParamValue::String(s) => Value::String(s.clone()),
            ParamValue::Number(n) => Value::Number(*n),
            ParamValue::Bool(b) => Value::Bool(*b),
        }
    }
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

/// Renders a template: each `${{ expr }}` is replaced by the expression's value as text
/// (`null` -> empty, booleans `true`/`false`, integral numbers without `.0`).
///
/// Text without `${{` is returned unchanged. To write a literal `${{`, use `${{ '${{' }}`.
pub fn render(template: &str, scope: &dyn Scope) -> Result<String, ExprError> {
    let Some(first) = template.find(OPEN) else {
        return Ok(template.to_owned());
    };
    let mut out = String::with_capacity(template.len() + 16);
    let mut copied = 0;
    let mut at = first;
    loop {
        out.push_str(&template[copied..at]);
        let (parsed, end) = parse_embedded(template, at)?;
        use fmt::Write as _;
        // Writing to a String can not fail.
        let _ = write!(out, "{}", eval(&parsed.expr, scope));
        copied = end;
        match template[end..].find(OPEN) {
            Some(i) => at = end + i,
            None => break,
        }
    }
    out.push_str(&template[copied..]);
    Ok(out)
}

/// Evaluates an `if:` condition, written with or without a surrounding `${{ }}`.
///
/// As on GitHub, a condition that calls none of `success()`, `failure()`, `always()`,
/// `cancelled()` (or `canceled()`) means `success() && (condition)`.
pub fn eval_condition(expr: &str, scope: &dyn Scope) -> Result<bool, ExprError> {
    let parsed = parse_condition(expr)?;
    let success = !scope.failed() && !scope.canceled();
    if !parsed.has_status && !success {
        return Ok(false);
    }
    Ok(eval(&parsed.expr, scope).is_truthy())
}

/// Every reference in a template's `${{ }}` expressions, without evaluating them.
/// Offsets are byte offsets in `template`.
pub fn references(template: &str) -> Result<Vec<Located>, ExprError> {
    let mut refs = Vec::new();
    let Some(first) = template.find(OPEN) else {
        return Ok(refs);
    };
    let mut at = first;
    loop {
        let (parsed, end) = parse_embedded(template, at)?;
        refs.extend(parsed.refs);
        match template[end..].find(OPEN) {
            Some(i) => at = end + i,
            None => return Ok(refs),
        }
    }
}

/// Every reference in an `if:` condition (with or without `${{ }}`), without evaluating it.
/// Offsets are byte offsets in `expr`.
pub fn condition_references(expr: &str) -> Result<Vec<Located>, ExprError> {
    parse_condition(expr).map(|p| p.refs)
}

/// The body of an `if:` condition: the text inside a surrounding `${{ }}` if there is one,
/// trimmed. This is the form stored in [`crate::plan::Job::condition`].
pub fn condition_body(expr: &str) -> &str {
    let trimmed = expr.trim();
    match trimmed.strip_prefix(OPEN).and_then(|s| s.strip_suffix(CLOSE)) {
        // Only strip when the `}}` at the end is the one closing the `${{` at the start.
        Some(inner) if parse_condition(expr).is_ok() && !inner.contains(OPEN) => inner.trim(),
        _ => trimmed,
    }
}

/// Whether a condition calls a status function (`success()`, `failure()`, `always()`,
/// `cancelled()`); if not, it is implicitly `success() && (…)`.
pub fn condition_has_status_check(expr: &str) -> Result<bool, ExprError> {
    parse_condition(expr).map(|p| p.has_status)
}

// ---------------------------------------------------------------------------------------------
// Syntax tree

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A built-in function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Success,
    Failure,
    Always,
    Cancelled,
    Contains,
    StartsWith,
    EndsWith,
}

impl Func {
    /// Looks a function up by name; names are case-insensitive, as on GitHub.
    fn by_name(name: &str) -> Option<Func> {
        Some(match name.to_ascii_lowercase().as_str() {
            "success" => Func::Success,
            "failure" => Func::Failure,
            "always" => Func::Always,
            "cancelled" | "canceled" => Func::Cancelled,
            "contains" => Func::Contains,
            "startswith" => Func::StartsWith,
            "endswith" => Func::EndsWith,
            _ => return None,
        })
    }

    fn arity(self) -> usize {
        match self {
            Func::Success | Func::Failure | Func::Always | Func::Cancelled => 0,
            Func::Contains | Func::StartsWith | Func::EndsWith => 2,
        }
    }

    fn is_status(self) -> bool {
        self.arity() == 0
    }
}

/// A parsed expression.
#[derive(Debug, Clone)]
enum Expr {
    Lit(Value),
    Ref(Reference),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    Call(Func, Vec<Expr>),
}

/// An expression with what the compiler wants to know about it.
struct Parsed {
    expr: Expr,
    refs: Vec<Located>,
    has_status: bool,
}

// ---------------------------------------------------------------------------------------------
// Parser

/// Parses the expression of the `${{` at byte `open` of `text`; returns it and the offset just
/// after its closing `}}`.
fn parse_embedded(text: &str, open: usize) -> Result<(Parsed, usize), ExprError> {
    let mut p = Parser::new(text, open + OPEN.len());
    let expr = p.parse_or()?;
    p.skip_ws();
    if !p.rest().starts_with(CLOSE) {
        return Err(p.error_here(format!("expected '}}}}' to close '${{{{', found {}", p.found())));
    }
    let end = p.pos + CLOSE.len();
    Ok((p.finish(expr), end))
}

/// Parses an `if:` condition, with or without a surrounding `${{ }}`.
fn parse_condition(text: &str) -> Result<Parsed, ExprError> {
    let lead = text.len() - text.trim_start().len();
    if text[lead..].starts_with(OPEN) {
        let (parsed, end) = parse_embedded(text, lead)?;
        let tail = &text[end..];
        if let Some(i) = tail.find(|c: char| !c.is_whitespace()) {
            return Err(ExprError {
                offset: end + i,
                message: "unexpected text after '}}': a condition is one expression; \
                          write it inside a single '${{ }}' or without '${{ }}'"
                    .into(),
            });
        }
        return Ok(parsed);
    }
    let mut p = Parser::new(text, 0);
    let expr = p.parse_or()?;
    p.skip_ws();
    if p.pos < text.len() {
        return Err(p.error_here(format!(
            "expected an operator or the end of the condition, found {}",
            p.found()
        )));
    }
    Ok(p.finish(expr))
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    depth: usize,
    operators: usize,
    refs: Vec<Located>,
    has_status: bool,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str, pos: usize) -> Self {
        Parser { text, pos, depth: 0, operators: 0, refs: Vec::new(), has_status: false }
    }

    fn finish(self, expr: Expr) -> Parsed {
        Parsed { expr, refs: self.refs, has_status: self.has_status }
    }

    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn peek_byte(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    /// Skips white space, then consumes `token` if it comes next.
    fn eat(&mut self, token: &str) -> bool {
        self.skip_ws();
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    /// Describes what stands at the current position, for error messages.
    fn found(&self) -> String {
        let rest = self.rest();
        if rest.is_empty() {
            "the end of the expression".into()
        } else if rest.starts_with(CLOSE) {
            "'}}'".into()
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            format!("'{c}'")
        }
    }

    fn error_at(&self, offset: usize, message: impl Into<String>) -> ExprError {
        ExprError { offset, message: message.into() }
    }

    fn error_here(&self, message: impl Into<String>) -> ExprError {
        self.error_at(self.pos, message)
    }

    fn count_operator(&mut self) -> Result<(), ExprError> {
        self.operators += 1;
        if self.operators > MAX_OPERATORS {
            return Err(self
                .error_here(format!("expression too long: more than {MAX_OPERATORS} operators")));
        }
        Ok(())
    }

    fn parse_or(&mut self) -> Result<Expr, ExprError> {
        let mut lhs = self.parse_and()?;
        while self.eat("||") {
            self.count_operator()?;
            let rhs = self.parse_and()?;
            lhs = Expr::Or(Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn parse_and(&mut self) -> Result<Expr, ExprError> {
        let mut lhs = self.parse_eq()?;
        while self.eat("&&") {
            self.count_operator()?;
            let rhs = self.parse_eq()?;
            lhs = Expr::And(Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn parse_eq(&mut self) -> Result<Expr, ExprError> {
        let mut lhs = self.parse_cmp()?;
        loop {
            let op = if self.eat("==") {
                CmpOp::Eq
            } else if self.eat("!=") {
                CmpOp::Ne
            } else {
                break;
            };
            self.count_operator()?;
            let rhs = self.parse_cmp()?;
            lhs = Expr::Cmp(op, Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn parse_cmp(&mut self) -> Result<Expr, ExprError> {
        let mut lhs = self.parse_unary()?;
        loop {
            let op = if self.eat("<=") {
                CmpOp::Le
            } else if self.eat(">=") {
                CmpOp::Ge
            } else if self.eat("<") {
                CmpOp::Lt
            } else if self.eat(">") {
                CmpOp::Gt
            } else {
                break;
            };
            self.count_operator()?;
            let rhs = self.parse_unary()?;
            lhs = Expr::Cmp(op, Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn parse_unary(&mut self) -> Result<Expr, ExprError> {
        self.skip_ws();
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error_here(format!(
                "expression nested too deeply (more than {MAX_DEPTH} levels)"
            )));
        }
        let result = if self.rest().starts_with('!') && !self.rest().starts_with("!=") {
            self.pos += 1;
            self.parse_unary().map(|e| Expr::Not(Box::new(e)))
        } else {
            self.parse_primary()
        };
        self.depth -= 1;
        result
    }

    fn parse_primary(&mut self) -> Result<Expr, ExprError> {
        self.skip_ws();
        let start = self.pos;
        let bytes = self.text.as_bytes();
        let next = |i: usize| bytes.get(i).copied();
        match self.peek_byte() {
            Some(b'(') => {
                self.pos += 1;
                let inner = self.parse_or()?;
                if !self.eat(")") {
                    return Err(self
                        .error_here(format!("expected ')' to close '(', found {}", self.found())));
                }
                Ok(inner)
            }
            Some(b'\'') => self.parse_string().map(|s| Expr::Lit(Value::String(s))),
            Some(b) if b.is_ascii_digit() => self.parse_number(),
            Some(b'-' | b'+' | b'.') if next(start + 1).is_some_and(|c| c.is_ascii_digit()) => {
                self.parse_number()
            }
            Some(b'-') if next(start + 1) == Some(b'.') => self.parse_number(),
            Some(b) if b.is_ascii_alphabetic() || b == b'_' => self.parse_name(),
            Some(b'=') if !self.rest().starts_with("==") => {
                Err(self.error_here("expected a value, found '=': compare with '=='"))
            }
            _ => Err(self.error_here(format!(
                "expected a value (a 'string', a number, true, false, null, a function call \
                 or a params, jobs or matrix reference), found {}",
                self.found()
            ))),
        }
    }

    /// Parses `'text'`, where `''` stands for one quote. The cursor is on the opening quote.
    fn parse_string(&mut self) -> Result<String, ExprError> {
        let start = self.pos;
        let mut out = String::new();
        let mut i = self.pos + 1;
        loop {
            let Some(rel) = self.text[i..].find('\'') else {
                return Err(self.error_at(
                    start,
                    "unterminated string: expected a closing quote ' (write '' for a quote \
                     inside a string)",
                ));
            };
            out.push_str(&self.text[i..i + rel]);
            i += rel + 1;
            if self.text[i..].starts_with('\'') {
                out.push('\'');
                i += 1;
            } else {
                self.pos = i;
                return Ok(out);
            }
        }
    }

    /// Parses `-12`, `3.5`, `1e3`. The cursor is on the sign or first digit.
    fn parse_number(&mut self) -> Result<Expr, ExprError> {
        let start = self.pos;
        let bytes = self.text.as_bytes();
        let mut i = start;
        if matches!(bytes.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if bytes.get(i) == Some(&b'.') {
            i += 1;
            while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        if matches!(bytes.get(i), Some(b'e' | b'E')) {
            let mut j = i + 1;
            if matches!(bytes.get(j), Some(b'-' | b'+')) {
                j += 1;
            }
            if bytes.get(j).is_some_and(u8::is_ascii_digit) {
                while bytes.get(j).is_some_and(u8::is_ascii_digit) {
                    j += 1;
                }
                i = j;
            }
        }
        if bytes.get(i).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_') {
            return Err(self.error_at(
                start,
                "expected a number; to write text, quote it like 'text'".to_string(),
            ));
        }
        let literal = &self.text[start..i];
        match literal.parse::<f64>() {
            Ok(n) => {
                self.pos = i;
                Ok(Expr::Lit(Value::Number(n)))
            }
            Err(_) => Err(self.error_at(start, format!("expected a number, found '{literal}'"))),
        }
    }

    /// Reads `[A-Za-z0-9_-]*` at the cursor.
    fn take_name(&mut self) -> &'a str {
        let rest = self.rest();
        let len = rest
            .bytes()
            .position(|b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
            .unwrap_or(rest.len());
        self.pos += len;
        &rest[..len]
    }

    /// A keyword literal, a function call or a context path.
    fn parse_name(&mut self) -> Result<Expr, ExprError> {
        let start = self.pos;
        let name = self.take_name();
        match name {
            "true" => return Ok(Expr::Lit(Value::Bool(true))),
            "false" => return Ok(Expr::Lit(Value::Bool(false))),
            "null" => return Ok(Expr::Lit(Value::Null)),
            _ => {}
        }
        let after_name = self.pos;
        self.skip_ws();
        if self.peek_byte() == Some(b'(') {
            return self.parse_call(name, start);
        }
        self.pos = after_name;
        if !matches!(name, "params" | "jobs" | "matrix") {
            return Err(self.error_at(
                start,
                format!("unknown context '{name}': expected params, jobs or matrix"),
            ));
        }
        let parts = self.parse_accessors()?;
        let end = self.pos;
        let reference = resolve_path(name, &parts, end)?;
        self.refs.push(Located { reference: reference.clone(), offset: start });
        Ok(Expr::Ref(reference))
    }

    /// Parses the arguments of a call; the cursor is on `(`.
    fn parse_call(&mut self, name: &str, start: usize) -> Result<Expr, ExprError> {
        let Some(func) = Func::by_name(name) else {
            return Err(self.error_at(
                start,
                format!(
                    "unknown function '{name}': expected success, failure, always, cancelled, \
                     canceled, contains, startsWith or endsWith"
                ),
            ));
        };
        self.pos += 1; // '('
        let mut args = Vec::new();
        if !self.eat(")") {
            loop {
                args.push(self.parse_or()?);
                if self.eat(",") {
                    continue;
                }
                if self.eat(")") {
                    break;
                }
                return Err(self.error_here(format!(
                    "expected ')' after arguments of {name}, found {}",
                    self.found()
                )));
            }
        }
        if args.len() != func.arity() {
            return Err(self.error_at(
                start,
                format!(
                    "{name}() takes {} argument{}, found {}",
                    func.arity(),
                    if func.arity() == 1 { "" } else { "s" },
                    args.len()
                ),
            ));
        }
        if func.is_status() {
            self.has_status = true;
        }
        Ok(Expr::Call(func, args))
    }

    /// Parses `.name` and `['name']` accessors after a context name.
    fn parse_accessors(&mut self) -> Result<Vec<(String, usize)>, ExprError> {
        let mut parts = Vec::new();
        loop {
            match self.peek_byte() {
                Some(b'.') => {
                    self.pos += 1;
                    let at = self.pos;
                    let name = self.take_name();
                    if name.is_empty() {
                        return Err(self.error_here(format!(
                            "expected a name after '.', found {}",
                            self.found()
                        )));
                    }
                    parts.push((name.to_owned(), at));
                }
                Some(b'[') => {
                    self.pos += 1;
                    self.skip_ws();
                    let at = self.pos;
                    if self.peek_byte() != Some(b'\'') {
                        return Err(self.error_here(format!(
                            "expected a quoted name such as ['name'] inside '[ ]', found {}",
                            self.found()
                        )));
                    }
                    let name = self.parse_string()?;
                    if !self.eat("]") {
                        return Err(self.error_here(format!(
                            "expected ']' after the name, found {}",
                            self.found()
                        )));
                    }
                    parts.push((name, at));
                }
                _ => return Ok(parts),
            }
        }
    }
}

/// Turns `context` and its accessors into a [`Reference`], or says what was expected.
fn resolve_path(
    context: &str,
    parts: &[(String, usize)],
    end: usize,
) -> Result<Reference, ExprError> {
    let err = |offset: usize, message: String| ExprError { offset, message };
    let extra = |i: usize, what: &str| {
        err(parts[i].1, format!("unexpected '{}' after {what}: it has no properties", parts[i].0))
    };
    match context {
        "params" | "matrix" => match parts {
            [] => Err(err(end, format!("expected '.NAME' after '{context}'"))),
            [(name, _)] => Ok(if context == "params" {
                Reference::Param(name.clone())
            } else {
                Reference::Matrix(name.clone())
            }),
            [(name, _), ..] => Err(extra(1, &format!("{context}.{name}"))),
        },
        _ => match parts {
            [] => Err(err(end, "expected '.ID' after 'jobs'".into())),
            [(job, _)] => {
                Err(err(end, format!("expected '.outputs.KEY' or '.result' after 'jobs.{job}'")))
            }
            [(job, _), (prop, _)] if prop == "outputs" => {
                Err(err(end, format!("expected '.KEY' after 'jobs.{job}.outputs'")))
            }
            [(job, _), (prop, _), (key, _)] if prop == "outputs" => {
                Ok(Reference::Output { job: job.clone(), key: key.clone() })
            }
            [(job, _), (prop, _), ..] if prop == "outputs" => {
                Err(extra(3, &format!("jobs.{job}.outputs.{}", parts[2].0)))
            }
            [(job, _), (prop, _)] if prop == "result" => Ok(Reference::Result(job.clone())),
            [(job, _), (prop, _), ..] if prop == "result" => {
                Err(extra(2, &format!("jobs.{job}.result")))
            }
            [_, (prop, at), ..] => {
                Err(err(*at, format!("unknown job property '{prop}': expected outputs or result")))
            }
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation

fn eval(expr: &Expr, scope: &dyn Scope) -> Value {
    match expr {
        Expr::Lit(v) => v.clone(),
        Expr::Ref(r) => match r {
            Reference::Param(name) => scope.param(name).unwrap_or(Value::Null),
            Reference::Output { job, key } => {
                scope.output(job, key).map_or(Value::Null, Value::String)
            }
            Reference::Result(job) => scope.result(job).map_or(Value::Null, Value::String),
            Reference::Matrix(key) => scope.matrix(key).map_or(Value::Null, Value::String),
        },
        Expr::Not(e) => Value::Bool(!eval(e, scope).is_truthy()),
        // Like GitHub, `&&` and `||` yield an operand, so `a || 'default'` works in templates.
        Expr::And(a, b) => {
            let left = eval(a, scope);
            if left.is_truthy() { eval(b, scope) } else { left }
        }
        Expr::Or(a, b) => {
            let left = eval(a, scope);
            if left.is_truthy() { left } else { eval(b, scope) }
        }
        Expr::Cmp(op, a, b) => {
            let (a, b) = (eval(a, scope), eval(b, scope));
            Value::Bool(match op {
                CmpOp::Eq => loose_eq(&a, &b),
                CmpOp::Ne => !loose_eq(&a, &b),
                CmpOp::Lt => compare(&a, &b) == Some(Ordering::Less),
                CmpOp::Le => matches!(compare(&a, &b), Some(Ordering::Less | Ordering::Equal)),
                CmpOp::Gt => compare(&a, &b) == Some(Ordering::Greater),
                CmpOp::Ge => {
                    matches!(compare(&a, &b), Some(Ordering::Greater | Ordering::Equal))
                }
            })
        }
        Expr::Call(func, args) => {
            let text = |i: usize| args.get(i).map(|a| eval(a, scope).to_string());
            let pair = || (text(0).unwrap_or_default(), text(1).unwrap_or_default());
            Value::Bool(match func {
                Func::Success => !scope.failed() && !scope.canceled(),
                Func::Failure => scope.failed(),
                Func::Always => true,
                Func::Cancelled => scope.canceled(),
                Func::Contains => {
                    let (a, b) = pair();
                    a.contains(&b)
                }
                Func::StartsWith => {
                    let (a, b) = pair();
                    a.starts_with(&b)
                }
                Func::EndsWith => {
                    let (a, b) = pair();
                    a.ends_with(&b)
                }
            })
        }
    }
}

/// Reads text as a number when it looks like one (`12`, `-1.5`, `1e3`, surrounding spaces).
fn parse_number(s: &str) -> Option<f64> {
    let t = s.trim();
    let looks_numeric = t.bytes().any(|b| b.is_ascii_digit())
        && t.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
    if looks_numeric { t.parse().ok() } else { None }
}

/// `==`: same kinds compare naturally (text case-sensitively); a number equals text that
/// reads as the same number; a boolean equals `'true'`/`'false'` and `1`/`0`; `null` equals
/// only `null` and `''`.
fn loose_eq(a: &Value, b: &Value) -> bool {
    use Value::*;
    match (a, b) {
        (Null, Null) => true,
        (Null, String(s)) | (String(s), Null) => s.is_empty(),
        (Null, _) | (_, Null) => false,
        (Bool(x), Bool(y)) => x == y,
        (Number(x), Number(y)) => x == y,
        (String(x), String(y)) => x == y,
        (Number(n), String(s)) | (String(s), Number(n)) => parse_number(s) == Some(*n),
        (Bool(b), String(s)) | (String(s), Bool(b)) => s == if *b { "true" } else { "false" },
        (Bool(b), Number(n)) | (Number(n), Bool(b)) => f64::from(u8::from(*b)) == *n,
    }
}

/// Ordering for `<`, `<=`, `>`, `>=`: numbers (and numeric text against a number) as numbers,
/// text against text by bytes; anything else is unordered, so every comparison is false.
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    use Value::*;
    match (a, b) {
        (Number(x), Number(y)) => x.partial_cmp(y),
        (String(x), String(y)) => Some(x.as_str().cmp(y.as_str())),
        (Number(x), String(s)) => parse_number(s).and_then(|y| x.partial_cmp(&y)),
        (String(s), Number(y)) => parse_number(s).and_then(|x| x.partial_cmp(y)),
        (Bool(x), Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A scope over fixed maps.
    #[derive(Default)]
    struct TestScope {
        params: BTreeMap<String, Value>,
        outputs: BTreeMap<(String, String), String>,
        results: BTreeMap<String, String>,
        matrix: BTreeMap<String, String>,
        failed: bool,
        canceled: bool,
    }

    impl Scope for TestScope {
        fn param(&self, name: &str) -> Option<Value> {
            self.params.get(name).cloned()
        }
        fn output(&self, job: &str, key: &str) -> Option<String> {
            self.outputs.get(&(job.to_owned(), key.to_owned())).cloned()
        }
        fn result(&self, job: &str) -> Option<String> {
            self.results.get(job).cloned()
        }
        fn matrix(&self, key: &str) -> Option<String> {
            self.matrix.get(key).cloned()
        }
        fn failed(&self) -> bool {
            self.failed
        }
        fn canceled(&self) -> bool {
            self.canceled
        }
    }

    fn scope() -> TestScope {
        let mut s = TestScope::default();
        s.params.insert("version".into(), Value::String("1.2".into()));
        s.params.insert("replicas".into(), Value::Number(3.0));
        s.params.insert("dry_run".into(), Value::Bool(false));
        s.params.insert("target".into(), Value::String("prod".into()));
        s.outputs.insert(("build".into(), "version".into()), "1.2.3".into());
        s.outputs.insert(("build".into(), "count".into()), "10".into());
        s.results.insert("build".into(), "success".into());
        s.matrix.insert("os".into(), "linux".into());
        s.matrix.insert("go".into(), "1.22".into());
        s
    }

    fn r(template: &str) -> String {
        match render(template, &scope()) {
            Ok(s) => s,
            Err(e) => format!("ERR@{}: {}", e.offset, e.message),
        }
    }

    fn c(cond: &str) -> String {
        c_in(cond, &scope())
    }

    fn c_in(cond: &str, s: &TestScope) -> String {
        match eval_condition(cond, s) {
            Ok(b) => b.to_string(),
            Err(e) => format!("ERR@{}: {}", e.offset, e.message),
        }
    }

    #[test]
    fn render_plain_text_is_unchanged() {
        assert_eq!(r("echo hello"), "echo hello");
        assert_eq!(r(""), "");
        assert_eq!(r("a $ { { b }} $}"), "a $ { { b }} $}");
    }

    #[test]
    fn render_values_as_text() {
        assert_eq!(r("v=${{ params.version }}"), "v=1.2");
        assert_eq!(r("${{ params.replicas }}"), "3");
        assert_eq!(r("${{ 2.5 }}|${{ -0 }}|${{ 1e3 }}"), "2.5|0|1000");
        assert_eq!(r("${{ params.dry_run }}"), "false");
        assert_eq!(r("[${{ null }}]"), "[]");
        assert_eq!(r("[${{ params.missing }}]"), "[]");
        assert_eq!(r("${{ true }}"), "true");
        assert_eq!(r("${{matrix.os}}-${{ matrix['go'] }}"), "linux-1.22");
        assert_eq!(r("${{ jobs.build.outputs.version }}"), "1.2.3");
        assert_eq!(r("${{ jobs['build'].outputs['version'] }}"), "1.2.3");
        assert_eq!(r("${{ jobs.build.result }}"), "success");
        assert_eq!(r("é${{ 'ü' }}é"), "éüé");
    }

    #[test]
    fn render_string_literals() {
        assert_eq!(r("${{ 'it''s' }}"), "it's");
        assert_eq!(r("${{ '}}' }}"), "}}");
        assert_eq!(r("${{ '${{' }}"), "${{");
        assert_eq!(r("${{ '' }}x"), "x");
    }

    #[test]
    fn render_or_yields_operand() {
        assert_eq!(r("${{ params.missing || 'default' }}"), "default");
        assert_eq!(r("${{ params.version || 'default' }}"), "1.2");
        assert_eq!(r("${{ params.version && 'set' }}"), "set");
        assert_eq!(r("${{ params.dry_run && 'set' }}"), "false");
    }

    #[test]
    fn render_errors_have_offsets() {
        assert_eq!(
            r("a ${{ params.version "),
            "ERR@21: expected '}}' to close '${{', found the end of the expression"
        );
        assert_eq!(
            r("${{ foo.bar }}"),
            "ERR@4: unknown context 'foo': expected params, jobs or matrix"
        );
        assert_eq!(
            r("${{ }}"),
            "ERR@4: expected a value (a 'string', a number, true, false, null, a function call or \
             a params, jobs or matrix reference), found '}}'"
        );
        assert_eq!(
            r("${{ 'abc }}"),
            "ERR@4: unterminated string: expected a closing quote ' (write '' for a quote inside a \
             string)"
        );
    }

    #[test]
    fn comparisons() {
        let cases = [
            ("params.replicas == 3", true),
            ("params.replicas == '3'", true),
            ("params.replicas == ' 3.0 '", true),
            ("'3' == 3", true),
            ("params.replicas == 'three'", false),
            ("params.replicas != 'three'", true),
            ("params.target == 'prod'", true),
            ("params.target == 'PROD'", false),
            ("params.target != 'prod'", false),
            ("params.dry_run == false", true),
            ("params.dry_run == 'false'", true),
            ("params.dry_run == 0", true),
            ("true == 1", true),
            ("null == ''", true),
            ("null == 0", false),
            ("null == null", true),
            ("params.missing == ''", true),
            ("jobs.build.outputs.count > 9", true),
            ("jobs.build.outputs.count > '9'", false),
            ("jobs.build.outputs.count >= 10", true),
            ("jobs.build.outputs.count <= 10", true),
            ("jobs.build.outputs.count < 10", false),
            ("matrix.go >= '1.21'", true),
            ("'a' < 'b'", true),
            ("'B' < 'a'", true),
            ("'abc' < 1", false),
            ("'abc' > 1", false),
            ("null < 1", false),
            ("false < true", true),
            ("1.5 < 2", true),
            ("-1 < 0", true),
        ];
        for (expr, want) in cases {
            assert_eq!(c(&format!("always() && ({expr})")), want.to_string(), "{expr}");
        }
    }

    #[test]
    fn precedence() {
        // `!` binds tightest, then comparisons, then equality, then &&, then ||.
        assert_eq!(c("always() && (true || false && false)"), "true");
        assert_eq!(c("always() && ((true || false) && false)"), "false");
        assert_eq!(c("always() && !false == true"), "true");
        assert_eq!(c("always() && 1 < 2 == true"), "true");
        assert_eq!(c("always() && !(1 < 2)"), "false");
        assert_eq!(c("always() && !!'x'"), "true");
    }

    #[test]
    fn functions() {
        assert_eq!(c("contains(params.target, 'ro')"), "true");
        assert_eq!(c("contains(params.target, 'RO')"), "false");
        assert_eq!(c("startsWith(params.version, '1.')"), "true");
        assert_eq!(c("endsWith(jobs.build.outputs.version, '.3')"), "true");
        assert_eq!(c("endswith(jobs.build.outputs.version, '.4')"), "false");
        assert_eq!(c("contains(params.replicas, 3)"), "true");
    }

    #[test]
    fn truthiness() {
        for (expr, want) in [
            ("false", false),
            ("0", false),
            ("''", false),
            ("null", false),
            ("'false'", true),
            ("'0'", true),
            ("1", true),
            ("-0.5", true),
            ("params.missing", false),
        ] {
            assert_eq!(c(expr), want.to_string(), "{expr}");
        }
    }

    #[test]
    fn implicit_success_and_status_functions() {
        let mut failed = scope();
        failed.failed = true;
        let mut canceled = scope();
        canceled.canceled = true;
        // (condition, ok scope, failed scope, canceled scope)
        let table = [
            ("true", "true", "false", "false"),
            ("${{ true }}", "true", "false", "false"),
            ("", "ERR", "ERR", "ERR"),
            ("success()", "true", "false", "false"),
            ("failure()", "false", "true", "false"),
            ("always()", "true", "true", "true"),
            ("cancelled()", "false", "false", "true"),
            ("canceled()", "false", "false", "true"),
            ("${{ always() && params.target == 'prod' }}", "true", "true", "true"),
            ("params.target == 'prod'", "true", "false", "false"),
            ("failure() || params.target == 'dev'", "false", "true", "false"),
            ("!cancelled()", "true", "true", "false"),
        ];
        for (cond, ok, f, x) in table {
            let short = |s: String| if s.starts_with("ERR") { "ERR".to_string() } else { s };
            assert_eq!(short(c(cond)), ok, "{cond} ok");
            assert_eq!(short(c_in(cond, &failed)), f, "{cond} failed");
            assert_eq!(short(c_in(cond, &canceled)), x, "{cond} canceled");
        }
    }

    #[test]
    fn condition_wrapping() {
        assert_eq!(c("  ${{ params.target == 'prod' }}  "), "true");
        assert_eq!(
            c("${{ true }} && ${{ false }}"),
            "ERR@12: unexpected text after '}}': a condition is one expression; write it inside \
             a single '${{ }}' or without '${{ }}'"
        );
        assert_eq!(
            c("${{ true "),
            "ERR@9: expected '}}' to close '${{', found the end of the expression"
        );
        assert_eq!(condition_body(" ${{ params.a == 'b' }} "), "params.a == 'b'");
        assert_eq!(condition_body("success()"), "success()");
        assert_eq!(condition_body("${{ '}}' }}"), "'}}'");
        assert_eq!(condition_body("${{ a }} && ${{ b }}"), "${{ a }} && ${{ b }}");
    }

    #[test]
    fn syntax_errors() {
        let cases = [
            (
                "contains('a', 'b'",
                "ERR@17: expected ')' after arguments of contains, found the end of the expression",
            ),
            ("contains('a' 'b')", "ERR@13: expected ')' after arguments of contains, found '''"),
            ("contains('a')", "ERR@0: contains() takes 2 arguments, found 1"),
            ("success(1)", "ERR@0: success() takes 0 arguments, found 1"),
            (
                "frobnicate()",
                "ERR@0: unknown function 'frobnicate': expected success, failure, always, cancelled, canceled, contains, startsWith or endsWith",
            ),
            ("env.HOME", "ERR@0: unknown context 'env': expected params, jobs or matrix"),
            ("params", "ERR@6: expected '.NAME' after 'params'"),
            ("params.", "ERR@7: expected a name after '.', found the end of the expression"),
            ("params.a.b", "ERR@9: unexpected 'b' after params.a: it has no properties"),
            ("matrix.os.x", "ERR@10: unexpected 'x' after matrix.os: it has no properties"),
            ("jobs", "ERR@4: expected '.ID' after 'jobs'"),
            ("jobs.a", "ERR@6: expected '.outputs.KEY' or '.result' after 'jobs.a'"),
            ("jobs.a.outputs", "ERR@14: expected '.KEY' after 'jobs.a.outputs'"),
            (
                "jobs.a.outputs.k.z",
                "ERR@17: unexpected 'z' after jobs.a.outputs.k: it has no properties",
            ),
            ("jobs.a.result.z", "ERR@14: unexpected 'z' after jobs.a.result: it has no properties"),
            ("jobs.a.status", "ERR@7: unknown job property 'status': expected outputs or result"),
            ("jobs[a]", "ERR@5: expected a quoted name such as ['name'] inside '[ ]', found 'a'"),
            ("jobs['a'.result", "ERR@8: expected ']' after the name, found '.'"),
            ("(true", "ERR@5: expected ')' to close '(', found the end of the expression"),
            ("true false", "ERR@5: expected an operator or the end of the condition, found 'f'"),
            ("a = b", "ERR@0: unknown context 'a': expected params, jobs or matrix"),
            ("1 = 2", "ERR@2: expected an operator or the end of the condition, found '='"),
            ("1 == = 2", "ERR@5: expected a value, found '=': compare with '=='"),
            ("1 & 2", "ERR@2: expected an operator or the end of the condition, found '&'"),
            ("12abc", "ERR@0: expected a number; to write text, quote it like 'text'"),
            (
                "!",
                "ERR@1: expected a value (a 'string', a number, true, false, null, a function call or a params, jobs or matrix reference), found the end of the expression",
            ),
        ];
        for (cond, want) in cases {
            assert_eq!(c(cond), want, "{cond}");
        }
    }

    #[test]
    fn hostile_input_is_bounded() {
        let deep = format!("{}true{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(c(&deep).contains("nested too deeply"));
        let nots = format!("{}true", "!".repeat(10_000));
        assert!(c(&nots).contains("nested too deeply"));
        let long = vec!["true"; 10_000].join(" || ");
        assert!(c(&long).contains("too long"));
        let ok = vec!["true"; 200].join(" || ");
        assert_eq!(c(&ok), "true");
    }

    #[test]
    fn references_are_located() {
        let t = "x ${{ params.a }} y ${{ jobs.b.outputs.c == matrix['os'] || jobs.d.result }}";
        let refs = references(t).map_err(|e| e.message);
        assert_eq!(
            refs,
            Ok(vec![
                Located { reference: Reference::Param("a".into()), offset: 6 },
                Located {
                    reference: Reference::Output { job: "b".into(), key: "c".into() },
                    offset: 24
                },
                Located { reference: Reference::Matrix("os".into()), offset: 44 },
                Located { reference: Reference::Result("d".into()), offset: 60 },
            ])
        );
        assert_eq!(&t[6..12], "params");
        assert_eq!(&t[24..28], "jobs");
        assert_eq!(&t[44..50], "matrix");
        assert_eq!(&t[60..64], "jobs");
        assert_eq!(references("no templates"), Ok(vec![]));
        assert_eq!(
            references("${{ null"),
            Err(ExprError {
                offset: 8,
                message: "expected '}}' to close '${{', found the end of the expression".into()
            })
        );
        assert_eq!(
            condition_references("${{ params.x }}"),
            Ok(vec![Located { reference: Reference::Param("x".into()), offset: 4 }])
        );
        assert_eq!(
            condition_references("jobs['my-job'].result == 'failure'"),
            Ok(vec![Located { reference: Reference::Result("my-job".into()), offset: 0 }])
        );
        assert_eq!(condition_has_status_check("always() || true"), Ok(true));
        assert_eq!(condition_has_status_check("contains('a', 'b')"), Ok(false));
    }

    #[test]
    fn dotted_output_keys_in_index_form() {
        let mut s = scope();
        s.outputs.insert(("build".into(), "image.tag".into()), "v1".into());
        assert_eq!(render("${{ jobs.build.outputs['image.tag'] }}", &s).ok(), Some("v1".into()));
        assert!(render("${{ jobs.build.outputs.image.tag }}", &s).is_err());
    }

    #[test]
    fn job_ids_with_dashes_and_digits() {
        let mut s = scope();
        s.outputs.insert(("1-build_x".into(), "k-1".into()), "v".into());
        assert_eq!(render("${{ jobs.1-build_x.outputs.k-1 }}", &s).ok(), Some("v".into()));
    }

    #[test]
    fn render_is_fast_enough() {
        // The engine renders every field of 10,000 jobs; keep this far below its budget.
        let s = scope();
        let started = std::time::Instant::now();
        for _ in 0..10_000 {
            let _ = render("echo ${{ params.version }} ${{ matrix.os }}", &s);
            let _ = render("plain text without templates", &s);
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in ".{0,80}") {
            let _ = render(&text, &scope());
            let _ = eval_condition(&text, &scope());
            let _ = references(&text);
            let _ = condition_body(&text);
        }

        #[test]
        fn never_panics_on_expression_soup(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    "${{", "}}", "(", ")", "'", "''", "params", ".", "a", "[", "]", "jobs",
                    "outputs", "result", "matrix", "!", "&&", "||", "==", "<", ">=", "1", "-",
                    "1e", ",", "contains", " ", "é", "true", "null",
                ]),
                0..40,
            )
        ) {
            let text: String = parts.concat();
            let _ = render(&text, &scope());
            let _ = eval_condition(&text, &scope());
            let _ = references(&text);
            let _ = condition_body(&text);
        }
    }
}
