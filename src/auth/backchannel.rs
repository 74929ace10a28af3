//! `POST /auth/backchannel-logout`: OpenID Connect Back-Channel Logout 1.0.
//! The IdP calls it server-to-server (no cookie, no anti-forgery header) with a
//! signed `logout_token`; every session of that `sid` (or of that `sub` when
//! there is no `sid`) ends. 200 on success, 400 on any refused token (§2.8).
//! A session store that cannot be reached is 503 `session_store_unavailable`:
//! that answer is ours, not the specification's (§2.8 has only 200 and 400),
//! so that an IdP which retries failed deliveries tries again rather than
//! taking "400: your token is bad" for a final answer.

use crate::server::telemetry::metrics;
use axum::{
    extract::{rejection::FormRejection, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    Form,
};
use serde::Deserialize;

use super::api_error::ApiError;
use super::revoke;
use super::state::AuthState;
use crate::server::store::Owner;

#[derive(Debug, Deserialize)]
pub struct LogoutRequest {
    logout_token: Option<String>,
}

/// 400 with `error` (§2.8). The caller is anonymous: the reason is logged,
/// the answer is the same for every refusal (a verification error can name
/// internal URLs, e.g. the JWKS address behind `OIDC_BACKCHANNEL_BASE_URL`).
/// `reason` is the metric's label (`missing_token`, `unknown_issuer`,
/// `invalid_token`, `replayed`, `no_subject`); `why`, the log's detail.
fn rejected(reason: &'static str, why: &str) -> Response {
    tracing::warn!(why, "back-channel logout rejected");
    metrics::backchannel_logout(reason);
    ApiError::InvalidRequest("The logout_token was refused.").into_response()
}

pub async fn backchannel_logout(
    State(state): State<AuthState>,
    form: Result<Form<LogoutRequest>, FormRejection>,
) -> Response {
    let Some(token) = form
        .ok()
        .and_then(|Form(f)| f.logout_token)
        .filter(|t| !t.is_empty())
    else {
        return rejected("missing_token", "missing logout_token");
    };
    // With several providers, the token's (unverified) `iss` picks whose keys
    // verify it; that provider then checks `iss` exactly.
    let Some(oidc) = state.idps.for_jwt(&token) else {
        return rejected("unknown_issuer", "logout_token: unknown issuer");
    };
    let claims = match oidc.verify_logout_token(&token).await {
        Ok(claims) => claims,
        Err(e) => return rejected("invalid_token", &e.to_string()),
    };
    // §2.6 step 10: a `jti` is accepted once (shared by all instances on
    // Redis) — once carried out: it is burned only after its sessions ended.
    let issuer = oidc.config().issuer.as_str();
    match state.store.jti_used(issuer, &claims.jti).await {
        Ok(false) => {}
        Ok(true) => return rejected("replayed", "logout_token was already used"),
        Err(e) => return store_unavailable(e),
    }
    // Only this provider's sessions: another IdP may use the same sub or sid.
    let owner = match (claims.sid, claims.sub) {
        (Some(sid), _) => Owner::Sid(oidc.owner_key(&sid).into_string()),
        (None, Some(sub)) => Owner::Sub(oidc.owner_key(&sub).into_string()),
        (None, None) => return rejected("no_subject", "neither sub nor sid"),
    };
    let ended = match revoke::end_sessions_of(&state, &owner).await {
        Ok(ended) => ended,
        Err(e) => return store_unavailable(e),
    };
    if let Err(e) = state.store.burn_jti(issuer, &claims.jti, claims.exp).await {
        // The sessions did end; only a replay of this token would be accepted.
        tracing::warn!(error = %e, "logout_token jti could not be recorded");
    }
    tracing::info!(?owner, ended, "back-channel logout");
    metrics::backchannel_logout("accepted");
    metrics::sessions_ended("backchannel", ended);
    StatusCode::OK.into_response()
}

/// 503 `session_store_unavailable`: our answer, not §2.8's (see the module
/// comment), so the IdP may retry; the store's error is logged, not echoed.
fn store_unavailable(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "back-channel logout could not reach the session store");
    metrics::backchannel_logout("store_unavailable");
    ApiError::SessionStoreUnavailable.into_response()
}
