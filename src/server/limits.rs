//! Request bodies over [`BODY_LIMIT`] get 413 on every route, explained in
//! JSON. (The sign-in limits are the BFF core's: `auth::limits`.)

use axum::{
    body::{Body, Bytes},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    BoxError,
};

use crate::auth::api_error::ApiError;

/// Request bodies are small here (forms, JSON); anything bigger is refused (413).
pub const BODY_LIMIT: usize = 64 * 1024;

/// Makes the body limit's 413 say what happened, in the JSON shape of the
/// other API errors (tower-http answers it with an empty or plain-text body).
/// A plain function of the response (the body limit's, whose body type is
/// tower-http's), for `ServiceBuilder::map_response`.
pub fn explain_too_large<B>(response: axum::http::Response<B>) -> Response
where
    B: axum::body::HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_none_or(|v| v.as_bytes().starts_with(b"text/plain"));
    // A relayed upstream's own JSON 413 passes through untouched.
    if response.status() != StatusCode::PAYLOAD_TOO_LARGE || !plain {
        return response.map(Body::new);
    }
    ApiError::PayloadTooLarge { limit: BODY_LIMIT }.into_response()
}
