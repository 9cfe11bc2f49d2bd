//! Errors at the HTTP edge: every failure becomes a status, a stable code and a message.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kiln_api::{ApiError, Diagnostic, ErrorBody, codes};
use kiln_store::StoreError;

/// An API failure: status, stable code, message, and diagnostics for workflow errors.
#[derive(Debug)]
pub struct ApiErr {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code from [`kiln_api::codes`].
    pub code: &'static str,
    /// What was wrong and what was expected.
    pub message: String,
    /// Workflow problems with positions.
    pub diagnostics: Vec<Diagnostic>,
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiErr>;

impl ApiErr {
    /// An error with no diagnostics.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiErr {
        ApiErr { status, code, message: message.into(), diagnostics: Vec::new() }
    }

    /// 400 `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> ApiErr {
        ApiErr::new(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> ApiErr {
        ApiErr::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, message)
    }

    /// 409 `conflict`.
    pub fn conflict(message: impl Into<String>) -> ApiErr {
        ApiErr::new(StatusCode::CONFLICT, codes::CONFLICT, message)
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> ApiErr {
        ApiErr::new(StatusCode::FORBIDDEN, codes::FORBIDDEN, message)
    }

    /// 401 `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> ApiErr {
        ApiErr::new(StatusCode::UNAUTHORIZED, codes::UNAUTHORIZED, message)
    }

    /// A storage fault: 507 `insufficient_storage` when the disk is `full`, else 503
    /// `unavailable`; `message` names the cause.
    pub fn storage(full: bool, message: impl Into<String>) -> ApiErr {
        if full {
            ApiErr::new(StatusCode::INSUFFICIENT_STORAGE, codes::INSUFFICIENT_STORAGE, message)
        } else {
            ApiErr::new(StatusCode::SERVICE_UNAVAILABLE, codes::UNAVAILABLE, message)
        }
    }

    /// 500 `internal`.
    pub fn internal(message: impl Into<String>) -> ApiErr {
        ApiErr::new(StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL, message)
    }
}

impl From<StoreError> for ApiErr {
    fn from(e: StoreError) -> ApiErr {
        match &e {
            StoreError::NotFound(what) => ApiErr::not_found(format!("{what} does not exist")),
            StoreError::Conflict(m) | StoreError::Moved(m) => ApiErr::conflict(m.clone()),
            StoreError::Invalid(m) => ApiErr::bad_request(m.clone()),
            _ if e.fault().is_some() => {
                tracing::error!("store: {e}");
                ApiErr::storage(e.fault() == Some(kiln_store::Fault::Full), e.to_string())
            }
            _ => {
                tracing::error!("store: {e}");
                ApiErr::internal(e.to_string())
            }
        }
    }
}

impl From<kiln_logs::LogError> for ApiErr {
    fn from(e: kiln_logs::LogError) -> ApiErr {
        tracing::error!("logs: {e}");
        match &e {
            kiln_logs::LogError::Io { source, .. } => {
                storage_io(source, format!("log storage: {e}"))
            }
            _ => ApiErr::internal(format!("log storage: {e}")),
        }
    }
}

impl From<std::io::Error> for ApiErr {
    fn from(e: std::io::Error) -> ApiErr {
        tracing::error!("io: {e}");
        storage_io(&e, format!("blob storage: {e}"))
    }
}

/// An I/O error of the data directory as an answer: a full disk is 507, a read-only or
/// vanished directory 503, anything else 500.
fn storage_io(e: &std::io::Error, message: String) -> ApiErr {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded => ApiErr::storage(true, message),
        ErrorKind::ReadOnlyFilesystem | ErrorKind::NotFound => ApiErr::storage(false, message),
        _ => ApiErr::internal(message),
    }
}

/// Marks the answer of a storage fault (see [`ApiErr::storage`]) for the middleware that
/// names its cause ([`crate::storage::guard`]).
#[derive(Debug, Clone)]
pub struct StorageAnswer {
    /// 507 (the disk is full) rather than 503.
    pub full: bool,
    /// The message as the handler wrote it.
    pub message: String,
}

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        let storage = (self.code == codes::INSUFFICIENT_STORAGE || self.code == codes::UNAVAILABLE)
            .then(|| StorageAnswer {
                full: self.code == codes::INSUFFICIENT_STORAGE,
                message: self.message.clone(),
            });
        let body = ErrorBody {
            error: ApiError {
                code: self.code.to_string(),
                message: self.message,
                diagnostics: self.diagnostics,
            },
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(answer) = storage {
            resp.extensions_mut().insert(answer);
        }
        resp
    }
}

/// The longest free-text name accepted (a token's, an agent's), in characters.
pub const MAX_NAME_CHARS: usize = 128;

/// Checks a free-text name (`what` says whose, e.g. "token name"): not blank, at most
/// [`MAX_NAME_CHARS`] characters, no control character (a name is shown in tables, logs and
/// the UI, where an `ESC` or a line break would forge what people read).
pub fn check_name(what: &str, name: &str) -> ApiResult<()> {
    if name.trim().is_empty() {
        return Err(ApiErr::bad_request(format!("{what}: must not be empty")));
    }
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(ApiErr::bad_request(format!(
            "{what}: {chars} characters; at most {MAX_NAME_CHARS} are accepted"
        )));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(ApiErr::bad_request(format!(
            "{what} {name:?}: holds the control character {:?}; names are printable text",
            c
        )));
    }
    Ok(())
}

impl From<axum::extract::rejection::JsonRejection> for ApiErr {
    fn from(r: axum::extract::rejection::JsonRejection) -> ApiErr {
        // A body over the size cap is 413 (`too_large`), not a malformed one.
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiErr::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                codes::TOO_LARGE,
                format!("request body: {}", r.body_text()),
            );
        }
        ApiErr::bad_request(format!("request body: {}", r.body_text()))
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiErr {
    fn from(r: axum::extract::rejection::QueryRejection) -> ApiErr {
        ApiErr::bad_request(format!("query: {}", r.body_text()))
    }
}
