//! Who is signed in: the `CurrentUser` extractor and the JSON endpoints
//! `GET /auth/user` and `GET /auth/userinfo`. Neither ever returns a token.

use std::sync::Arc;

use axum::{
    body::{Body, Bytes},
    extract::{FromRef, FromRequestParts, State},
    http::{header, request::Parts, HeaderValue},
    response::Response,
    Json,
};
use serde_json::{json, value::RawValue, Value};
use time::OffsetDateTime;

use super::state::AuthState;
use super::{
    api_error::ApiError,
    idp::IdpError,
    refresh::{refresh_if_needed, RefreshError},
    session::{AuthSession, SessionRecord},
};
use crate::types::SignedInUser;

/// A signed-in session, or a 401 JSON rejection (503 when the session store
/// or, for an expired access token, the IdP cannot be reached). Use it as a handler argument
/// wherever a route needs a user; the handler body never re-checks.
/// Extracting it also keeps the session alive (moves the idle deadline).
pub struct CurrentUser {
    pub session: AuthSession,
    /// Shared with other requests reading the same stored session.
    pub record: Arc<SessionRecord>,
    pub idle_deadline: OffsetDateTime,
}

impl<S> FromRequestParts<S> for CurrentUser
where
    S: Send + Sync,
    AuthState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = &AuthState::from_ref(state);
        let session = AuthSession::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotSignedIn)?;
        match session.signed_in(state).await? {
            Some((record, idle_deadline)) => Ok(Self {
                session,
                record,
                idle_deadline,
            }),
            None => Err(ApiError::NotSignedIn),
        }
    }
}

/// `GET /auth/user`: 200 with the user and the session's deadlines. The
/// JSON is made once per record and idle deadline (`DecodedRecords`).
pub async fn user(State(state): State<AuthState>, user: CurrentUser) -> Response {
    json_answer(Some(&user.session.user(
        &state,
        &user.record,
        user.idle_deadline,
    )))
}

/// A 200 with the user's JSON as it is kept (no copy, no serializing), or
/// `null` for nobody: `GET /auth/user`'s answer, and `current_user`'s as
/// server_fn's JSON encoding writes an `Ok(Option<SignedInUser>)`.
pub fn json_answer(user: Option<&SignedInUser>) -> Response {
    let body = match user {
        Some(user) => {
            let json = user.json().expect("made on the server with its JSON");
            Bytes::from_owner(JsonBody(json.clone()))
        }
        None => Bytes::from_static(b"null"),
    };
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    // Room for the headers the layers add on the way out (length, caching,
    // the security headers, the request id) in one allocation: grown one
    // at a time, the map was allocated twice and rehashed (callgrind).
    headers.reserve(12);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A kept JSON value as a response body, without copying it.
struct JsonBody(Arc<RawValue>);

impl AsRef<[u8]> for JsonBody {
    fn as_ref(&self) -> &[u8] {
        self.0.get().as_bytes()
    }
}

/// `GET /auth/userinfo`: the user as the IdP's userinfo endpoint returns it
/// now, fetched server-side with the session's access token.
pub async fn userinfo(
    State(state): State<AuthState>,
    user: CurrentUser,
) -> Result<Json<Value>, ApiError> {
    let credential = match refresh_if_needed(&state, &user.session, &user.record).await {
        Ok(credential) => credential,
        Err(RefreshError::SessionEnded) => return Err(ApiError::SessionEnded),
        Err(RefreshError::IdpUnavailable(detail) | RefreshError::Refused(detail)) => {
            tracing::warn!(%detail, "token refresh unavailable");
            return Err(ApiError::IdpUnreachable);
        }
    };
    let Some(oidc) = state.idps.of(user.record.idp.as_deref()) else {
        return Err(ApiError::SessionEnded);
    };
    match oidc
        .userinfo(
            &credential.token,
            &user.record.sub,
            credential.dpop.as_ref(),
        )
        .await
    {
        Ok(claims) => {
            let roles = oidc.config().roles_claim.roles(&claims);
            Ok(Json(
                json!({ "claims": Value::Object(claims), "roles": roles }),
            ))
        }
        Err(IdpError::Rejected(detail)) => {
            tracing::info!(%detail, "userinfo rejected the access token");
            Err(ApiError::AccessTokenRejected)
        }
        Err(IdpError::Unreachable(detail)) => {
            tracing::warn!(%detail, "userinfo unreachable");
            Err(ApiError::IdpUnreachable)
        }
        Err(e) => {
            tracing::warn!(error = %e, "userinfo failed");
            Err(ApiError::UserinfoInvalid)
        }
    }
}
