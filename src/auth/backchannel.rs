//! `POST /auth/backchannel-logout`: OpenID Connect Back-Channel Logout 1.0.
//! The IdP calls it server-to-server (no cookie, no anti-forgery header) with a
//! signed `logout_token`; every session of that `sid` (or of that `sub` when
//! there is no `sid`) ends. 200 on success, 400 on any failure (§2.8).

use std::collections::HashMap;

use axum::{
    extract::{rejection::FormRejection, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    Form,
};
use serde::Deserialize;
use time::OffsetDateTime;

use super::error::json_error;
use crate::server::{state::AppState, store::Owner};

#[derive(Debug, Deserialize)]
pub struct LogoutRequest {
    logout_token: Option<String>,
}

/// `jti`s already accepted, kept until their token expires (§2.6 step 10:
/// a logout token must not be replayed).
#[derive(Default)]
pub struct SeenTokens(std::sync::Mutex<HashMap<String, i64>>);

/// More than this many live `jti`s means something is wrong; refuse rather than grow.
const MAX_SEEN: usize = 100_000;

impl SeenTokens {
    /// True the first time `jti` is presented before `exp`.
    fn first_use(&self, jti: &str, exp: i64) -> bool {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let mut seen = self.0.lock().expect("seen-token lock");
        seen.retain(|_, until| *until >= now - 60);
        if seen.contains_key(jti) || seen.len() >= MAX_SEEN {
            return false;
        }
        seen.insert(jti.to_string(), exp);
        true
    }
}

fn rejected(why: &str) -> Response {
    tracing::warn!(why, "back-channel logout rejected");
    json_error(StatusCode::BAD_REQUEST, "invalid_request", why)
}

pub async fn backchannel_logout(
    State(state): State<AppState>,
    form: Result<Form<LogoutRequest>, FormRejection>,
) -> Response {
    let Some(token) = form
        .ok()
        .and_then(|Form(f)| f.logout_token)
        .filter(|t| !t.is_empty())
    else {
        return rejected("missing logout_token");
    };
    let claims = match state.oidc.verify_logout_token(&token).await {
        Ok(claims) => claims,
        Err(e) => return rejected(&e.to_string()),
    };
    if !state.seen_logout_tokens.first_use(&claims.jti, claims.exp) {
        return rejected("logout_token was already used");
    }
    let owner = match (claims.sid, claims.sub) {
        (Some(sid), _) => Owner::Sid(sid),
        (None, Some(sub)) => Owner::Sub(sub),
        (None, None) => return rejected("neither sub nor sid"),
    };
    match state.store.end_sessions_of(&owner).await {
        Ok(ended) => {
            tracing::info!(?owner, ended, "back-channel logout");
            StatusCode::OK.into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "back-channel logout could not reach the session store");
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "session store unavailable",
            )
        }
    }
}
