//! Errors of the distribution API, answered in the spec's shape:
//! `{"errors": [{"code", "message", "detail"}]}` with the status the spec gives each code.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An error code of the distribution spec (plus the few a registry needs beyond it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The blob is not in the repository.
    BlobUnknown,
    /// The upload failed or its chunk is out of order.
    BlobUploadInvalid,
    /// No such upload session.
    BlobUploadUnknown,
    /// The content does not match its digest, or the digest is malformed.
    DigestInvalid,
    /// A blob a manifest names is not in the repository.
    ManifestBlobUnknown,
    /// The manifest is malformed.
    ManifestInvalid,
    /// No such manifest (or tag).
    ManifestUnknown,
    /// The repository name is malformed.
    NameInvalid,
    /// No such repository.
    NameUnknown,
    /// A length does not match the content.
    SizeInvalid,
    /// Authentication is required.
    Unauthorized,
    /// The caller may not do this.
    Denied,
    /// The operation is not supported.
    Unsupported,
    /// A server-side failure.
    Internal,
}

impl Code {
    /// The code's text.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BlobUnknown => "BLOB_UNKNOWN",
            Code::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Code::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Code::DigestInvalid => "DIGEST_INVALID",
            Code::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Code::ManifestInvalid => "MANIFEST_INVALID",
            Code::ManifestUnknown => "MANIFEST_UNKNOWN",
            Code::NameInvalid => "NAME_INVALID",
            Code::NameUnknown => "NAME_UNKNOWN",
            Code::SizeInvalid => "SIZE_INVALID",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::Denied => "DENIED",
            Code::Unsupported => "UNSUPPORTED",
            Code::Internal => "INTERNAL_ERROR",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Code::BlobUnknown
            | Code::BlobUploadUnknown
            | Code::ManifestUnknown
            | Code::NameUnknown => StatusCode::NOT_FOUND,
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::Denied => StatusCode::FORBIDDEN,
            Code::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// A failed registry request.
#[derive(Debug, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct RegError {
    /// The spec's code.
    pub code: Code,
    /// What went wrong, for people.
    pub message: String,
    /// The HTTP status (the code's own unless overridden, e.g. 416 for an out-of-order chunk).
    pub status: StatusCode,
    /// `WWW-Authenticate` challenge, for 401 answers.
    pub challenge: Option<String>,
}

impl RegError {
    /// An error with the code's status.
    pub fn new(code: Code, message: impl Into<String>) -> RegError {
        RegError { code, message: message.into(), status: code.status(), challenge: None }
    }

    /// The same error answered with `status`.
    pub fn with_status(mut self, status: StatusCode) -> RegError {
        self.status = status;
        self
    }
}

impl From<kiln_store::StoreError> for RegError {
    fn from(e: kiln_store::StoreError) -> RegError {
        match e {
            kiln_store::StoreError::NotFound(what) => {
                RegError::new(Code::NameUnknown, format!("{what} not found"))
            }
            kiln_store::StoreError::Invalid(what) => RegError::new(Code::NameInvalid, what),
            other => {
                tracing::error!("registry store failure: {other}");
                RegError::new(Code::Internal, format!("the registry's database failed: {other}"))
            }
        }
    }
}

impl From<std::io::Error> for RegError {
    fn from(e: std::io::Error) -> RegError {
        tracing::error!("registry storage failure: {e}");
        RegError::new(Code::Internal, format!("the registry's storage failed: {e}"))
    }
}

impl IntoResponse for RegError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "errors": [{"code": self.code.as_str(), "message": self.message, "detail": null}]
        });
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(c) = self.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, c);
        }
        resp.headers_mut()
            .insert("Docker-Distribution-API-Version", HeaderValue::from_static("registry/2.0"));
        resp
    }
}

/// Result of a registry operation.
pub type RegResult<T> = Result<T, RegError>;
