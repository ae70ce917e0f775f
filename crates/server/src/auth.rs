//! Bearer tokens, checked against the configured hashes.

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::config::{Right, TokenConfig};
use crate::error::ApiError;

/// The hex SHA-256 of a token: what the configuration holds instead of the token.
pub fn hash_token(token: &str) -> String {
    use std::fmt::Write;
    Sha256::digest(token.as_bytes())
        .iter()
        .fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Checks that the request's bearer token grants `right` in `ns`. Without configured
/// tokens every request passes (the server then listens on loopback only).
pub(crate) fn authorize(
    tokens: &[TokenConfig],
    headers: &HeaderMap,
    ns: &str,
    right: Right,
) -> Result<(), ApiError> {
    if tokens.is_empty() {
        return Ok(());
    }
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::unauthorized("a bearer token is required (Authorization: Bearer …)")
        })?;
    let hash = hash_token(presented.trim());
    let token = tokens
        .iter()
        .find(|t| constant_time_eq(t.sha256.to_ascii_lowercase().as_bytes(), hash.as_bytes()))
        .ok_or_else(|| ApiError::unauthorized("the bearer token is not valid"))?;
    if !token.namespaces.iter().any(|n| n == "*" || n == ns) {
        return Err(ApiError::forbidden(format!(
            "the token does not open namespace {ns:?}"
        )));
    }
    if token.right < right {
        return Err(ApiError::forbidden(format!(
            "the token grants {:?} in namespace {ns:?}; this needs {:?}",
            token.right, right
        )));
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
