//! Sign-out. `POST /auth/logout[?return_to=/path]` ends the local session and
//! sends the browser to the IdP's end-session endpoint (RP-Initiated Logout
//! 1.0 §2) with a `state`; `GET /auth/logged-out` is where the IdP sends it
//! back (`post_logout_redirect_uri`, §3). The `state` is also kept in a
//! short-lived HttpOnly cookie, and only a return that carries the same value
//! goes on to that sign-out's `return_to`: a link to `/auth/logged-out` made
//! by someone else, or a return from a sign-out this browser did not start,
//! lands on `/`. Some providers return to the app only when `state` was sent.

use crate::server::telemetry::metrics;
use axum::{
    extract::{rejection::QueryRejection, Query, State},
    http::{header, HeaderMap, HeaderValue},
    response::{IntoResponse, Response},
};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use openidconnect::CsrfToken;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tower_sessions::cookie::{time::Duration, Cookie, SameSite};

use super::{
    flow::see_other,
    return_to::ReturnTo,
    revoke,
    session::{set_cookie, AuthSession},
    state::AuthState,
};
use crate::server::config::Config;

/// Long enough for an IdP that asks "sign out of all apps?" first.
const PENDING_FOR: Duration = Duration::minutes(10);

#[derive(Debug, Default, Deserialize)]
pub struct LogoutParams {
    /// Where to land after the IdP has signed the user out (a same-origin
    /// path, as for sign-in; anything else is `/`).
    return_to: Option<String>,
}

/// `POST /auth/logout` → 303 to the IdP's end-session endpoint with
/// `id_token_hint`, `client_id`, `post_logout_redirect_uri` and `state`, or
/// straight to `return_to` when there is no IdP session to end. The local
/// session is gone whatever the IdP does, and a malformed query never stops
/// a sign-out (it only loses its `return_to`).
///
/// The answer carries `Clear-Site-Data` (OWASP ASVS 5.0 §7.4) so nothing the
/// app left in the browser outlives the session. `"cookies"` is left out when
/// the answer is the redirect to the IdP: browsers clear cookies for the whole
/// registrable domain (every port of `localhost` in development, and e.g.
/// `sso.example.com` beside `app.example.com`), which would delete the IdP's
/// own session cookie before the end-session request reaches it: the IdP could
/// then neither end its SSO session nor tell the other apps (Back-Channel
/// Logout). Our own cookie is expired by the session layer either way.
pub async fn logout(
    State(state): State<AuthState>,
    session: AuthSession,
    params: Result<Query<LogoutParams>, QueryRejection>,
) -> Response {
    let return_to = ReturnTo::parse(params.unwrap_or_default().0.return_to.as_deref());
    let record = match session.sign_out().await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "logout could not reach the session store");
            return super::api_error::ApiError::SessionStoreUnavailable.into_response();
        }
    };
    let pending = Pending {
        state: CsrfToken::new_random_len(32).secret().clone(),
        return_to,
    };
    let end_session = match &record {
        Some(record) => {
            tracing::info!(sub = %record.sub, "signed out");
            metrics::sessions_ended("logout", 1);
            match state.idps.of(record.idp.as_deref()) {
                Some(oidc) => {
                    oidc.end_session_url(record.tokens.id_token.secret(), &pending.state)
                        .await
                }
                None => None,
            }
        }
        None => None,
    };
    revoke::revoke_in_background(&state, record.into_iter().collect());
    let mut response = match end_session {
        Some(url) => {
            let mut response = see_other(&url);
            set_cookie(&mut response, pending.cookie(&state.config));
            clear_site_data(&mut response, r#""storage""#);
            response
        }
        None => {
            let mut response = see_other(pending.return_to.as_str());
            clear_site_data(&mut response, r#""cookies", "storage""#);
            response
        }
    };
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("cookie"));
    response
}

#[derive(Debug, Deserialize)]
pub struct LoggedOutParams {
    state: Option<String>,
}

/// `GET /auth/logged-out?state=…` → 303 to the sign-out's `return_to` when
/// `state` is the one this browser's sign-out sent (compared in constant
/// time), to `/` otherwise; the pending cookie is cleared either way, so a
/// `state` serves once.
pub async fn logged_out(
    State(state): State<AuthState>,
    headers: HeaderMap,
    params: Result<Query<LoggedOutParams>, QueryRejection>,
) -> Response {
    let sent = Pending::from_headers(&headers, &state.config);
    let returned = params.ok().and_then(|Query(p)| p.state);
    let to = match (sent, returned) {
        (Some(sent), Some(returned))
            if bool::from(sent.state.as_bytes().ct_eq(returned.as_bytes())) =>
        {
            sent.return_to
        }
        (None, None) => ReturnTo::root(),
        _ => {
            tracing::warn!(
                "a return from an IdP's sign-out without the state this browser's sign-out sent: going to /"
            );
            ReturnTo::root()
        }
    };
    let mut response = see_other(to.as_str());
    let mut expired = Pending::cookie_named(&state.config, String::new());
    expired.make_removal();
    set_cookie(&mut response, expired);
    response
}

/// A sign-out on its way through the IdP: the `state` sent, and where to go
/// after. Kept in the browser, in a cookie only our server reads.
struct Pending {
    state: String,
    return_to: ReturnTo,
}

impl Pending {
    /// `__Host-` prefixed on https, like the session cookie.
    fn name(config: &Config) -> &'static str {
        if config.base_url.is_https() {
            "__Host-gatehouse_logout"
        } else {
            "gatehouse_logout"
        }
    }

    /// `<state>.<base64url(return_to)>`: neither part can hold a `.`, a `;`
    /// or a space.
    fn cookie(&self, config: &Config) -> Cookie<'static> {
        let value = format!(
            "{}.{}",
            self.state,
            URL_SAFE_NO_PAD.encode(self.return_to.as_str())
        );
        let mut cookie = Self::cookie_named(config, value);
        cookie.set_max_age(PENDING_FOR);
        cookie
    }

    fn cookie_named(config: &Config, value: String) -> Cookie<'static> {
        Cookie::build((Self::name(config), value))
            .http_only(true)
            // Lax: the IdP's redirect back is a top-level GET navigation.
            .same_site(SameSite::Lax)
            .path("/")
            .secure(config.base_url.is_https())
            .build()
    }

    /// The pending sign-out this browser holds, if its cookie is well formed.
    /// The `return_to` is parsed again: the cookie is ours, but it came back
    /// from the browser.
    fn from_headers(headers: &HeaderMap, config: &Config) -> Option<Self> {
        let name = Self::name(config);
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(Cookie::split_parse)
            .filter_map(Result::ok)
            .find(|c| c.name() == name)?;
        let (state, return_to) = cookie.value().split_once('.')?;
        let return_to = String::from_utf8(URL_SAFE_NO_PAD.decode(return_to).ok()?).ok()?;
        (!state.is_empty()).then(|| Self {
            state: state.to_string(),
            return_to: ReturnTo::parse(Some(&return_to)),
        })
    }
}

fn clear_site_data(response: &mut Response, what: &'static str) {
    response.headers_mut().insert(
        header::HeaderName::from_static("clear-site-data"),
        HeaderValue::from_static(what),
    );
}
