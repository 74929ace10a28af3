//! Security headers on every response, from one layer (OWASP ASVS 5.0 §3.4;
//! the IETF browser-based-apps BFF section asks the BFF to protect its own
//! origin, since the session cookie is the credential).
//!
//! - `X-Content-Type-Options: nosniff`: no MIME sniffing of JSON or uploads.
//! - `Content-Security-Policy: frame-ancestors 'none'` and `X-Frame-Options:
//!   DENY` (for old browsers): no page of the app can be framed (clickjacking
//!   the "Sign out" or "End all sessions" buttons).
//! - `Referrer-Policy`: `no-referrer` on `/auth/*`, whose URLs carry codes and
//!   state; `strict-origin-when-cross-origin` elsewhere.
//! - `Strict-Transport-Security` when `APP_BASE_URL` is https.
//!
//! A script-src policy with a per-request nonce for the hydration script is
//! not here yet; a handler that sets its own `Content-Security-Policy` keeps it.

use axum::{
    extract::{Request, State},
    http::{header, HeaderValue},
    middleware::Next,
    response::Response,
};

use super::state::AppState;

pub async fn security_headers(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let auth_route = request.uri().path().starts_with("/auth/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static("frame-ancestors 'none'"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static(if auth_route {
            "no-referrer"
        } else {
            "strict-origin-when-cross-origin"
        }),
    );
    if state.config.base_url.is_https() {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    response
}
