//! The session layer: tower-sessions' [`Session`] on every request, its
//! cookie read from and written to the headers directly.
//!
//! It stands in for tower-sessions' `SessionManagerLayer`, which does the
//! same through tower-cookies: that parses and percent-decodes every cookie
//! of the request into a jar (a hashed set), and opens a span, on every
//! request, when one cookie is asked for (callgrind: 4.6k instructions of a
//! 53k signed-in `GET /auth/user`). The session itself (loading, saving,
//! cycling the id at sign-in, flushing at sign-out, the idle expiry) is
//! still tower-sessions' [`Session`] on our store; what this layer decides
//! is tower-sessions' own rule (`tower_sessions::service`, 0.14), kept:
//! - a request whose cookie names no live session (none, malformed, expired
//!   or ended) gets a fresh, unsaved session; nothing is stored or sent
//!   unless the request puts something in it;
//! - a session changed by the request is saved after the handler, and its
//!   cookie sent again (the idle deadline moves with it), unless the answer
//!   is a server error; a save that fails is a 500, never a cookie for a
//!   session the store does not hold;
//! - a cookie whose session is gone or emptied is removed. Unlike
//!   tower-sessions, the removal carries the cookie's own attributes
//!   (`Secure` on https), which browsers require before they let a
//!   response remove a `__Host-` cookie.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use axum::{
    extract::Request,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::Response,
};
use tower::{Layer, Service};
use tower_sessions::{
    cookie::{
        time::{Duration, OffsetDateTime},
        Cookie, SameSite,
    },
    session::Id,
    Expiry, Session,
};

use crate::server::store::AnyStore;

/// Puts a [`Session`] in every request's extensions (see the module).
#[derive(Clone)]
pub struct SessionLayer {
    store: Arc<AnyStore>,
    cookie: Arc<CookieRules>,
}

/// The session cookie: an opaque id in an `HttpOnly`, `SameSite=Lax`,
/// `Path=/` cookie without `Domain`; `Secure` (and named `__Host-…`) on https.
struct CookieRules {
    name: &'static str,
    secure: bool,
    expiry: Expiry,
}

impl SessionLayer {
    pub fn new(store: AnyStore, name: &'static str, secure: bool, expiry: Expiry) -> Self {
        Self {
            store: Arc::new(store),
            cookie: Arc::new(CookieRules {
                name,
                secure,
                expiry,
            }),
        }
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct SessionService<S> {
    inner: S,
    layer: SessionLayer,
}

impl<S> Service<Request> for SessionService<S>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        // The service that was made ready, not its clone (tower's
        // "be careful when cloning inner services").
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let SessionLayer { store, cookie } = self.layer.clone();
        let value = cookie.value_in(request.headers());
        let had_cookie = value.is_some();
        let id = value.and_then(|value| {
            value
                .parse::<Id>()
                .map_err(|_| tracing::warn!("possibly suspicious activity: malformed session id"))
                .ok()
        });
        let session = Session::new(id, store, Some(cookie.expiry));
        request.extensions_mut().insert(session.clone());
        Box::pin(async move {
            let mut response = inner.call(request).await?;
            let modified = session.is_modified();
            // No id left: none came, it named no live session, or the
            // request ended it (`flush`); and nothing was put in since.
            let empty = session.is_empty().await;
            if had_cookie && empty {
                set_cookie(&mut response, cookie.removal());
            } else if modified && !empty && !response.status().is_server_error() {
                if let Err(e) = session.save().await {
                    tracing::error!(error = %e, "failed to save session");
                    return Ok(server_error());
                }
                let Some(id) = session.id() else {
                    tracing::error!("a saved session without an id");
                    return Ok(server_error());
                };
                set_cookie(&mut response, cookie.carrying(id, session.expiry()));
            }
            Ok(response)
        })
    }
}

impl CookieRules {
    /// The value of the last of the request's cookies with our name (the
    /// one a cookie jar keeps, as tower-cookies did). Not percent-decoded:
    /// an id is base64url.
    fn value_in<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        let mut found = None;
        for line in headers.get_all(header::COOKIE) {
            let Ok(line) = line.to_str() else { continue };
            for pair in line.split(';') {
                let value = pair.trim_start().strip_prefix(self.name);
                if let Some(value) = value.and_then(|rest| rest.strip_prefix('=')) {
                    found = Some(value.trim_end().trim_matches('"'));
                }
            }
        }
        found
    }

    fn build(&self, value: String) -> Cookie<'static> {
        Cookie::build((self.name, value))
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(self.secure)
            .path("/")
            .build()
    }

    /// The cookie for session `id`, living as long as the session may idle.
    fn carrying(&self, id: Id, expiry: Option<Expiry>) -> Cookie<'static> {
        let mut cookie = self.build(id.to_string());
        match expiry {
            Some(Expiry::OnInactivity(idle)) => cookie.set_max_age(idle),
            Some(Expiry::AtDateTime(at)) => cookie.set_max_age(at - OffsetDateTime::now_utc()),
            Some(Expiry::OnSessionEnd) | None => {}
        }
        cookie
    }

    /// The cookie that removes ours: empty, expired, with the same attributes.
    fn removal(&self) -> Cookie<'static> {
        let mut cookie = self.build(String::new());
        cookie.make_removal();
        cookie.set_max_age(Duration::ZERO);
        cookie
    }
}

/// Adds `cookie` to the response's `Set-Cookie` headers (the session
/// cookie here, the pending sign-out's in `logout.rs`).
pub fn set_cookie(response: &mut Response, cookie: Cookie<'static>) {
    match HeaderValue::from_str(&cookie.to_string()) {
        Ok(value) => {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
        Err(_) => tracing::error!(name = cookie.name(), "a cookie that is not a header value"),
    }
}

fn server_error() -> Response {
    let mut response = Response::default();
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules_for(secure: bool) -> CookieRules {
        CookieRules {
            name: if secure {
                "__Host-gatehouse_session"
            } else {
                "gatehouse_session"
            },
            secure,
            expiry: Expiry::OnInactivity(Duration::minutes(30)),
        }
    }

    fn headers(cookies: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for c in cookies {
            headers.append(header::COOKIE, HeaderValue::from_str(c).unwrap());
        }
        headers
    }

    #[test]
    fn finds_its_own_cookie_among_others_and_only_by_its_exact_name() {
        let rules = rules_for(false);
        assert_eq!(rules.value_in(&headers(&[])), None);
        assert_eq!(
            rules.value_in(&headers(&["a=1; gatehouse_session=abc ; b=2"])),
            Some("abc")
        );
        // Prefixes, suffixes and values that merely contain the name do not count.
        assert_eq!(
            rules.value_in(&headers(&[
                "xgatehouse_session=1; gatehouse_session_x=2; a=gatehouse_session=3"
            ])),
            None
        );
        // Over several headers, the last one wins, as in a cookie jar.
        assert_eq!(
            rules.value_in(&headers(&[
                "gatehouse_session=one",
                "gatehouse_session=two"
            ])),
            Some("two")
        );
        assert_eq!(
            rules_for(true).value_in(&headers(&["gatehouse_session=plain"])),
            None,
            "on https only the __Host- cookie is ours"
        );
    }

    #[test]
    fn the_cookie_is_locked_down_and_its_removal_keeps_its_attributes() {
        let rules = rules_for(true);
        let id = Id::default();
        let set = rules.carrying(id, Some(rules.expiry)).to_string();
        assert!(
            set.starts_with(&format!("__Host-gatehouse_session={id};")),
            "{set}"
        );
        for attribute in [
            "HttpOnly",
            "SameSite=Lax",
            "Secure",
            "Path=/",
            "Max-Age=1800",
        ] {
            assert!(set.contains(attribute), "{set} lacks {attribute}");
        }
        assert!(!set.to_ascii_lowercase().contains("domain"), "{set}");
        let removal = rules.removal().to_string();
        assert!(
            removal.starts_with("__Host-gatehouse_session=;"),
            "{removal}"
        );
        for attribute in ["HttpOnly", "Secure", "Path=/", "Max-Age=0", "Expires="] {
            assert!(removal.contains(attribute), "{removal} lacks {attribute}");
        }
    }
}
