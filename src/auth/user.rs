//! Who is signed in: the `CurrentUser` extractor and the JSON endpoints
//! `GET /auth/user` and `GET /auth/userinfo`. Neither ever returns a token.

use axum::{
    extract::{FromRef, FromRequestParts, State},
    http::{request::Parts, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::state::AuthState;
use super::{
    error::json_error,
    provider::IdpError,
    refresh::{refresh_if_needed, RefreshError},
    session::{AuthSession, SessionError, SessionRecord},
};
use crate::types::UserView;

/// A signed-in session, or a 401 JSON rejection. Use it as a handler argument
/// wherever a route needs a user; the handler body never re-checks.
/// Extracting it also keeps the session alive (moves the idle deadline).
pub struct CurrentUser {
    pub session: AuthSession,
    pub record: SessionRecord,
    pub idle_deadline: OffsetDateTime,
}

impl<S> FromRequestParts<S> for CurrentUser
where
    S: Send + Sync,
    AuthState: FromRef<S>,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = &AuthState::from_ref(state);
        let session = AuthSession::from_request_parts(parts, state)
            .await
            .map_err(|_| unauthenticated())?;
        match session.signed_in(state).await {
            Ok(Some((record, idle_deadline))) => Ok(Self {
                session,
                record,
                idle_deadline,
            }),
            Ok(None) => Err(unauthenticated()),
            Err(SessionError::IdpUnavailable) => Err(json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "idp_unavailable",
                "The identity provider cannot be reached to confirm the session.",
            )),
            Err(e) => {
                tracing::error!(error = %e, "session store unavailable");
                Err(json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "session_store_unavailable",
                    "The session store cannot be reached.",
                ))
            }
        }
    }
}

fn session_ended() -> Response {
    json_error(
        StatusCode::UNAUTHORIZED,
        "session_ended",
        "Your session has ended — sign in again.",
    )
}

fn unauthenticated() -> Response {
    json_error(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "Not signed in, or the session has ended.",
    )
}

/// `GET /auth/user`: 200 with the user and the session's deadlines.
pub async fn user(State(state): State<AuthState>, user: CurrentUser) -> Json<UserView> {
    let idle = state.config.session.idle_timeout;
    Json(user.session.view(&user.record, user.idle_deadline, idle))
}

/// `GET /auth/userinfo`: the user as the IdP's userinfo endpoint returns it
/// now, fetched server-side with the session's access token.
pub async fn userinfo(State(state): State<AuthState>, user: CurrentUser) -> Response {
    let access_token = match refresh_if_needed(&state, &user.session, &user.record).await {
        Ok(token) => token,
        Err(RefreshError::SessionEnded) => return session_ended(),
        Err(RefreshError::IdpUnavailable(detail)) => {
            tracing::warn!(%detail, "token refresh unavailable");
            return json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "idp_unreachable",
                "The identity provider cannot be reached right now; you are still signed in.",
            );
        }
    };
    let Some(oidc) = state.idps.of(user.record.idp.as_deref()) else {
        return session_ended();
    };
    match oidc.userinfo(&access_token, &user.record.sub).await {
        Ok(claims) => {
            let roles = oidc.config().roles_claim.roles(&claims);
            let body = json!({ "claims": Value::Object(claims), "roles": roles });
            (StatusCode::OK, Json(body)).into_response()
        }
        Err(IdpError::Rejected(detail)) => {
            tracing::info!(%detail, "userinfo rejected the access token");
            json_error(
                StatusCode::UNAUTHORIZED,
                "access_token_rejected",
                "The identity provider no longer accepts this session's access token.",
            )
        }
        Err(IdpError::Unreachable(detail)) => {
            tracing::warn!(%detail, "userinfo unreachable");
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "idp_unreachable",
                "The identity provider cannot be reached right now.",
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "userinfo failed");
            json_error(
                StatusCode::BAD_GATEWAY,
                "userinfo_invalid",
                "The identity provider's userinfo answer failed verification.",
            )
        }
    }
}
