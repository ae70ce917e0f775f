//! Errors as HTTP responses: `{"error":{"kind":…,"message":…,…}}` with a status that
//! follows the kind.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use stowage_core::{Error, ErrorKind};

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    // Boxed so that results carrying an ApiError stay small.
    details: Option<Box<Details>>,
}

#[derive(Debug, Default)]
struct Details {
    current_version: Option<u64>,
    index: Option<String>,
    holder: Option<String>,
    op: Option<usize>,
    current_value: Option<(String, serde_json::Value)>,
}

impl ApiError {
    fn plain(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
            details: None,
        }
    }

    /// 400 invalid_input.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::plain(StatusCode::BAD_REQUEST, "invalid_input", message)
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::plain(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::plain(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 413.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::plain(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    /// 404 for a route that does not exist.
    pub fn no_route() -> Self {
        Self::plain(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such route: see /openapi.json",
        )
    }

    /// 501 for a feature the backend lacks.
    pub fn not_implemented(message: impl Into<String>) -> Self {
        Self::plain(StatusCode::NOT_IMPLEMENTED, "unsupported", message)
    }

    /// Names the batch op the error is about.
    pub(crate) fn at_op(mut self, i: usize) -> Self {
        self.details.get_or_insert_with(Box::default).op = Some(i);
        self.message = format!("batch op {i}: {}", self.message);
        self
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let (status, kind) = match e.kind() {
            // A mutation refused by its bound: the state, not a precondition, said no.
            ErrorKind::Conflict if e.current_value().is_some() => {
                (StatusCode::CONFLICT, "conflict")
            }
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ErrorKind::AlreadyExists => (StatusCode::CONFLICT, "already_exists"),
            ErrorKind::Conflict => (StatusCode::PRECONDITION_FAILED, "conflict"),
            ErrorKind::InvalidInput => (StatusCode::BAD_REQUEST, "invalid_input"),
            ErrorKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ErrorKind::Unsupported => (StatusCode::NOT_IMPLEMENTED, "unsupported"),
            ErrorKind::Corrupted => (StatusCode::INTERNAL_SERVER_ERROR, "corrupted"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        if status.is_server_error() {
            tracing::warn!(error = %e, "request failed");
        }
        ApiError {
            status,
            kind,
            message: e.to_string(),
            details: Some(Box::new(Details {
                current_version: e.current_version(),
                index: e.index().map(str::to_owned),
                holder: e.holder().map(str::to_owned),
                op: e.batch_op(),
                current_value: e.current_value().map(|(p, v)| (p.to_owned(), v.clone())),
            })),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"kind": self.kind, "message": self.message});
        let d = self.details.map(|d| *d).unwrap_or_default();
        if self.kind == "conflict" {
            body["current_version"] = json!(d.current_version);
        }
        if let Some((path, value)) = d.current_value {
            body["current_value"] = json!({"path": path, "value": value});
        }
        if let Some(i) = d.index {
            body["index"] = json!(i);
        }
        if let Some(h) = d.holder {
            body["holder"] = json!(h);
        }
        if let Some(op) = d.op {
            body["op"] = json!(op);
        }
        (self.status, axum::Json(json!({ "error": body }))).into_response()
    }
}
