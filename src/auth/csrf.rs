//! Anti-forgery for everything that rides on the session cookie.
//!
//! The rule (DESIGN.md contract, IETF browser-based-apps BFF §6.1.3.2): a
//! request that changes state, or reads JSON with the cookie, must carry
//! `X-CSRF: 1` — a custom header a cross-origin page cannot send without a CORS
//! preflight, which we never grant — or, for a plain HTML form post, an `Origin`
//! (or `Sec-Fetch-Site`) proving it came from our own origin. Requests with a
//! bearer (or DPoP) token and no cookie, and the IdP's back-channel logout,
//! are exempt.

use std::{
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
};

use axum::{
    extract::Request,
    http::{header, HeaderMap, HeaderName, Method},
    response::{IntoResponse, Response},
};
use futures::future::{Either, Ready};
use tower::{Layer, Service};

use super::api_error::ApiError;
use super::state::AuthState;

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny(&'static str),
}

/// What a route group asks of the anti-forgery check. Every route of the
/// router is in a group that names one of these (`tests/api/policy.rs` checks
/// it route by route).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// JSON with the session cookie (`/api/*`, server functions, `/auth/user`):
    /// reads need `X-CSRF: 1` too, since a cross-site page could otherwise
    /// have the browser fetch them (the answer would stay unreadable, but the
    /// request's side effects — a refresh, a relayed call — would happen).
    Json,
    /// Top-level navigations (pages, sign-in, the callback, the event
    /// stream): a link from anywhere may GET them; anything else needs the
    /// header or same-origin proof.
    Navigation,
    /// Server-to-server calls that never carry the session cookie and prove
    /// themselves otherwise (the IdP's back-channel logout posts a signed
    /// logout token, OpenID Back-Channel Logout 1.0 §2.5): the one exemption.
    ServerToServer,
}

// Named once (a `&str` name is parsed again on every lookup).
const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");
const X_CSRF: HeaderName = HeaderName::from_static("x-csrf");

/// The pure decision, kept free of I/O so it can be tested and fuzzed.
pub fn decide(method: &Method, rule: Rule, headers: &HeaderMap, app_origin: &str) -> Verdict {
    if rule == Rule::ServerToServer {
        return Verdict::Allow;
    }
    let unsafe_method = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !unsafe_method && rule == Rule::Navigation {
        return Verdict::Allow;
    }
    let has_cookie = headers.contains_key(header::COOKIE);
    // A token in `Authorization` (`Bearer`, or `DPoP` with its proof,
    // RFC 9449 §7.1) is a credential the browser never attaches by itself.
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .is_some_and(|(scheme, _)| {
            scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("dpop")
        });
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
        .get(SEC_FETCH_SITE)
        .is_some_and(|v| matches!(v.as_bytes(), b"cross-site" | b"same-site"))
    {
        return Verdict::Deny("cross-origin request");
    }
    if headers.get(X_CSRF).is_some_and(|v| v.as_bytes() == b"1") {
        return Verdict::Allow;
    }
    if unsafe_method {
        let same_origin = origin.is_some()
            || headers
                .get(SEC_FETCH_SITE)
                .is_some_and(|v| v.as_bytes() == b"same-origin");
        if same_origin {
            return Verdict::Allow;
        }
        return Verdict::Deny("missing X-CSRF header or same-origin proof");
    }
    Verdict::Deny("missing X-CSRF header")
}

/// The anti-forgery check as a layer for one route group:
/// `router.route_layer(csrf::layer(&auth, Rule::Json))`. It decides before
/// the request reaches the handler and answers a refusal itself (403 `csrf`).
pub fn layer(state: &AuthState, rule: Rule) -> AntiForgery {
    AntiForgery {
        origin: state.config.base_url.origin().into(),
        rule,
    }
}

#[derive(Clone)]
pub struct AntiForgery {
    origin: Arc<str>,
    rule: Rule,
}

impl<S> Layer<S> for AntiForgery {
    type Service = AntiForgeryService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AntiForgeryService {
            inner,
            policy: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AntiForgeryService<S> {
    inner: S,
    policy: AntiForgery,
}

impl<S> Service<Request> for AntiForgeryService<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, Ready<Result<Response, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match decide(
            request.method(),
            self.policy.rule,
            request.headers(),
            &self.policy.origin,
        ) {
            Verdict::Allow => Either::Left(self.inner.call(request)),
            Verdict::Deny(why) => {
                tracing::warn!(method = %request.method(), path = request.uri().path(), why, "anti-forgery check failed");
                Either::Right(futures::future::ready(Ok(refusal(why))))
            }
        }
    }
}

fn refusal(why: &'static str) -> Response {
    ApiError::Csrf(why).into_response()
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

    fn check(method: Method, rule: Rule, pairs: &[(&'static str, &'static str)]) -> Verdict {
        decide(&method, rule, &headers(pairs), ORIGIN)
    }

    #[test]
    fn navigations_need_nothing_but_their_writes_need_proof() {
        assert_eq!(check(Method::GET, Rule::Navigation, &[]), Verdict::Allow);
        assert_eq!(
            check(Method::GET, Rule::Navigation, &[("cookie", "s=1")]),
            Verdict::Allow
        );
        assert_eq!(check(Method::HEAD, Rule::Navigation, &[]), Verdict::Allow);
        assert_eq!(
            check(Method::POST, Rule::Navigation, &[("cookie", "s=1")]),
            Verdict::Deny("missing X-CSRF header or same-origin proof")
        );
    }

    #[test]
    fn json_reads_need_the_header() {
        assert!(matches!(
            check(Method::GET, Rule::Json, &[("cookie", "s=1")]),
            Verdict::Deny(_)
        ));
        assert_eq!(
            check(Method::GET, Rule::Json, &[("x-csrf", "1")]),
            Verdict::Allow
        );
        assert!(matches!(
            check(Method::GET, Rule::Json, &[("x-csrf", "0")]),
            Verdict::Deny(_)
        ));
        assert!(matches!(
            check(Method::GET, Rule::Json, &[]),
            Verdict::Deny(_)
        ));
    }

    #[test]
    fn posts_need_the_header_or_same_origin_proof() {
        assert!(matches!(
            check(Method::POST, Rule::Json, &[("cookie", "s=1")]),
            Verdict::Deny(_)
        ));
        assert_eq!(
            check(Method::POST, Rule::Json, &[("x-csrf", "1")]),
            Verdict::Allow
        );
        assert_eq!(
            check(
                Method::POST,
                Rule::Navigation,
                &[("origin", "http://localhost:3000")]
            ),
            Verdict::Allow
        );
        assert_eq!(
            check(
                Method::POST,
                Rule::Navigation,
                &[("sec-fetch-site", "same-origin")]
            ),
            Verdict::Allow
        );
        assert!(matches!(
            check(
                Method::POST,
                Rule::Navigation,
                &[("sec-fetch-site", "same-site")]
            ),
            Verdict::Deny(_)
        ));
        assert!(matches!(
            check(Method::POST, Rule::Navigation, &[("origin", "null")]),
            Verdict::Deny(_)
        ));
        assert!(matches!(
            check(Method::DELETE, Rule::Json, &[]),
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
                    decide(&Method::POST, Rule::Navigation, &h, ORIGIN),
                    Verdict::Deny(_)
                ),
                "{origin}"
            );
        }
    }

    #[test]
    fn fetch_metadata_naming_another_origin_is_refused_even_with_the_header() {
        for site in ["cross-site", "same-site"] {
            for (method, rule) in [
                (Method::POST, Rule::Navigation),
                (Method::GET, Rule::Json),
                (Method::PUT, Rule::Json),
                (Method::POST, Rule::Json),
            ] {
                assert!(
                    matches!(
                        check(
                            method.clone(),
                            rule,
                            &[("x-csrf", "1"), ("sec-fetch-site", site)]
                        ),
                        Verdict::Deny(_)
                    ),
                    "{site} {method} {rule:?}"
                );
            }
        }
        // Links from other sites still lead to sign-in, and the IdP's
        // redirect back (a cross-site navigation) still reaches the callback.
        assert_eq!(
            check(
                Method::GET,
                Rule::Navigation,
                &[("sec-fetch-site", "cross-site"), ("cookie", "s=1")]
            ),
            Verdict::Allow
        );
    }

    #[test]
    fn bearer_without_cookie_is_exempt_but_not_with_a_cookie() {
        for token in ["Bearer abc", "DPoP abc"] {
            assert_eq!(
                check(Method::POST, Rule::Json, &[("authorization", token)]),
                Verdict::Allow
            );
        }
        assert!(matches!(
            check(Method::POST, Rule::Json, &[("authorization", "Basic abc")]),
            Verdict::Deny(_)
        ));
        assert!(matches!(
            check(
                Method::POST,
                Rule::Json,
                &[("authorization", "Bearer abc"), ("cookie", "s=1")]
            ),
            Verdict::Deny(_)
        ));
    }

    #[test]
    fn backchannel_logout_is_server_to_server() {
        assert_eq!(
            check(Method::POST, Rule::ServerToServer, &[]),
            Verdict::Allow
        );
    }
}
