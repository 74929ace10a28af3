//! `POST /auth/backchannel-logout`: OpenID Connect Back-Channel Logout 1.0.
//! The IdP calls it server-to-server (no cookie, no anti-forgery header) with a
//! signed `logout_token`; every session of that `sid` (or of that `sub` when
//! there is no `sid`) ends. 200 on success, 400 on any failure (§2.8).

use axum::{
    extract::{rejection::FormRejection, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    Form,
};
use serde::Deserialize;

use super::error::json_error;
use crate::server::{state::AppState, store::Owner};

#[derive(Debug, Deserialize)]
pub struct LogoutRequest {
    logout_token: Option<String>,
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
    // With several providers, the token's (unverified) `iss` picks whose keys
    // verify it; that provider then checks `iss` exactly.
    let Some(oidc) = state.idps.for_jwt(&token) else {
        return rejected("logout_token: unknown issuer");
    };
    let claims = match oidc.verify_logout_token(&token).await {
        Ok(claims) => claims,
        Err(e) => return rejected(&e.to_string()),
    };
    // §2.6 step 10: a `jti` is accepted once (shared by all instances on Redis).
    match state.store.first_use_of_jti(&claims.jti, claims.exp).await {
        Ok(true) => {}
        Ok(false) => return rejected("logout_token was already used"),
        Err(e) => {
            tracing::error!(error = %e, "back-channel logout could not reach the session store");
            return json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "session store unavailable",
            );
        }
    }
    // Only this provider's sessions: another IdP may use the same sub or sid.
    let owner = match (claims.sid, claims.sub) {
        (Some(sid), _) => Owner::Sid(oidc.owner_key(&sid)),
        (None, Some(sub)) => Owner::Sub(oidc.owner_key(&sub)),
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
