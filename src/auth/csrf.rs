//! Anti-forgery for everything that rides on the session cookie.
//!
//! The rule (DESIGN.md contract, IETF browser-based-apps BFF §6.1.3.2): a
//! request that changes state, or reads JSON with the cookie, must carry
//! `X-CSRF: 1` — a custom header a cross-origin page cannot send without a CORS
//! preflight, which we never grant — or, for a plain HTML form post, an `Origin`
//! (or `Sec-Fetch-Site`) proving it came from our own origin. Requests with a
//! bearer token and no cookie, and the IdP's back-channel logout, are exempt.

use axum::{
    extract::{Request, State},
    http::{header, HeaderMap, Method},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::api_error::ApiError;
use super::state::AuthState;

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny(&'static str),
}

/// Paths that return user data as JSON on a plain GET.
fn is_json_read(path: &str) -> bool {
    matches!(path, "/auth/user" | "/auth/userinfo") || path == "/api" || path.starts_with("/api/")
}

/// The pure decision, kept free of I/O so it can be tested and fuzzed.
pub fn decide(method: &Method, path: &str, headers: &HeaderMap, app_origin: &str) -> Verdict {
    if path == "/auth/backchannel-logout" {
        return Verdict::Allow;
    }
    let unsafe_method = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !unsafe_method && !is_json_read(path) {
        return Verdict::Allow;
    }
    let has_cookie = headers.contains_key(header::COOKIE);
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer "));
    if bearer && !has_cookie {
        return Verdict::Allow;
    }
    let origin = headers.get(header::ORIGIN).map(|v| v.as_bytes());
    // A request that names a foreign origin is refused whatever else it carries;
    // so is one the browser itself marks as coming from another origin (Fetch
    // Metadata: `same-site` is a sibling subdomain, still another origin).
    if origin.is_some_and(|o| o != app_origin.as_bytes()) {
        return Verdict::Deny("cross-origin request");
    }
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| matches!(v.as_bytes(), b"cross-site" | b"same-site"))
    {
        return Verdict::Deny("cross-origin request");
    }
    if headers.get("x-csrf").is_some_and(|v| v.as_bytes() == b"1") {
        return Verdict::Allow;
    }
    if unsafe_method {
        let same_origin = origin.is_some()
            || headers
                .get("sec-fetch-site")
                .is_some_and(|v| v.as_bytes() == b"same-origin");
        if same_origin {
            return Verdict::Allow;
        }
        return Verdict::Deny("missing X-CSRF header or same-origin proof");
    }
    Verdict::Deny("missing X-CSRF header")
}

/// The layer: applies [`decide`] to every request.
pub async fn guard(State(state): State<AuthState>, request: Request, next: Next) -> Response {
    match decide(
        request.method(),
        request.uri().path(),
        request.headers(),
        state.config.base_url.origin(),
    ) {
        Verdict::Allow => next.run(request).await,
        Verdict::Deny(why) => {
            tracing::warn!(method = %request.method(), path = request.uri().path(), why, "anti-forgery check failed");
            ApiError::Csrf(why).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const ORIGIN: &str = "http://localhost:3000";

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn check(method: Method, path: &str, pairs: &[(&'static str, &'static str)]) -> Verdict {
        decide(&method, path, &headers(pairs), ORIGIN)
    }

    #[test]
    fn pages_and_login_need_nothing() {
        assert_eq!(check(Method::GET, "/", &[]), Verdict::Allow);
        assert_eq!(
            check(Method::GET, "/profile", &[("cookie", "s=1")]),
            Verdict::Allow
        );
        assert_eq!(check(Method::GET, "/auth/login", &[]), Verdict::Allow);
        assert_eq!(check(Method::GET, "/auth/callback", &[]), Verdict::Allow);
    }

    #[test]
    fn json_reads_need_the_header() {
        assert!(matches!(
            check(Method::GET, "/auth/user", &[("cookie", "s=1")]),
            Verdict::Deny(_)
        ));
        assert_eq!(
            check(Method::GET, "/auth/user", &[("x-csrf", "1")]),
            Verdict::Allow
        );
        assert!(matches!(
            check(Method::GET, "/auth/userinfo", &[("x-csrf", "0")]),
            Verdict::Deny(_)
        ));
        assert!(matches!(
            check(Method::GET, "/api/notes", &[]),
            Verdict::Deny(_)
        ));
    }

    #[test]
    fn posts_need_the_header_or_same_origin_proof() {
        let server_fn = "/api/current_user123";
        assert!(matches!(
            check(Method::POST, server_fn, &[("cookie", "s=1")]),
            Verdict::Deny(_)
        ));
        assert_eq!(
            check(Method::POST, server_fn, &[("x-csrf", "1")]),
            Verdict::Allow
        );
        assert_eq!(
            check(
                Method::POST,
                "/auth/logout",
                &[("origin", "http://localhost:3000")]
            ),
            Verdict::Allow
        );
        assert_eq!(
            check(
                Method::POST,
                "/auth/logout",
                &[("sec-fetch-site", "same-origin")]
            ),
            Verdict::Allow
        );
        assert!(matches!(
            check(
                Method::POST,
                "/auth/logout",
                &[("sec-fetch-site", "same-site")]
            ),
            Verdict::Deny(_)
        ));
        assert!(matches!(
            check(Method::POST, "/auth/logout", &[("origin", "null")]),
            Verdict::Deny(_)
        ));
        assert!(matches!(
            check(Method::DELETE, "/api/notes/1", &[]),
            Verdict::Deny(_)
        ));
    }

    #[test]
    fn a_foreign_origin_is_refused_even_with_the_header() {
        for origin in [
            "https://evil.example",
            "http://localhost:3001",
            "http://localhost:3000.evil.example",
        ] {
            let mut h = headers(&[("x-csrf", "1")]);
            h.insert("origin", HeaderValue::from_str(origin).unwrap());
            assert!(
                matches!(
                    decide(&Method::POST, "/auth/logout", &h, ORIGIN),
                    Verdict::Deny(_)
                ),
                "{origin}"
            );
        }
    }

    #[test]
    fn fetch_metadata_naming_another_origin_is_refused_even_with_the_header() {
        for site in ["cross-site", "same-site"] {
            for (method, path) in [
                (Method::POST, "/auth/logout"),
                (Method::GET, "/auth/user"),
                (Method::PUT, "/api/notes/1"),
                (Method::POST, "/api/current_user"),
            ] {
                assert!(
                    matches!(
                        check(
                            method.clone(),
                            path,
                            &[("x-csrf", "1"), ("sec-fetch-site", site)]
                        ),
                        Verdict::Deny(_)
                    ),
                    "{site} {method} {path}"
                );
            }
        }
        // Links from other sites still lead to sign-in, and the IdP's
        // redirect back (a cross-site navigation) still reaches the callback.
        for path in ["/auth/login", "/auth/callback", "/"] {
            assert_eq!(
                check(Method::GET, path, &[("sec-fetch-site", "cross-site")]),
                Verdict::Allow,
                "{path}"
            );
        }
    }

    #[test]
    fn bearer_without_cookie_is_exempt_but_not_with_a_cookie() {
        assert_eq!(
            check(
                Method::POST,
                "/api/notes",
                &[("authorization", "Bearer abc")]
            ),
            Verdict::Allow
        );
        assert!(matches!(
            check(
                Method::POST,
                "/api/notes",
                &[("authorization", "Bearer abc"), ("cookie", "s=1")]
            ),
            Verdict::Deny(_)
        ));
    }

    #[test]
    fn backchannel_logout_is_server_to_server() {
        assert_eq!(
            check(Method::POST, "/auth/backchannel-logout", &[]),
            Verdict::Allow
        );
    }
}
