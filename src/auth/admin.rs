//! What `/admin` does: list the users seen with their roles and live
//! sessions, and end every session of one user (on every instance: the
//! store's `sub` index is shared). Callers are already checked for `admin`.

use super::state::AuthState;
use crate::server::telemetry::metrics;
use axum::{extract::State, Json};

use super::{
    api_error::ApiError,
    authz::{Admin, RequireRole},
    revoke,
    sessions::summaries_of,
    user::CurrentUser,
};
use crate::{server::store::Owner, types::SeenUser};

/// `GET /api/admin/users`: `/admin`'s list as JSON, for admin tooling that
/// rides on an admin's session (401 anonymous, 403 without the role).
pub async fn users(
    State(state): State<AuthState>,
    admin: RequireRole<Admin>,
) -> Result<Json<Vec<SeenUser>>, ApiError> {
    overview(&state, &admin.user).await.map(Json)
}

/// Every user seen, most recent sign-in first, with their live sessions.
pub async fn overview(state: &AuthState, admin: &CurrentUser) -> Result<Vec<SeenUser>, ApiError> {
    let mut users = state.db.users_seen().await.map_err(|e| {
        tracing::error!(error = %e, "admin: the database cannot be reached");
        ApiError::DatabaseUnavailable
    })?;
    let current = admin.session.id();
    for user in &mut users {
        user.sessions = summaries_of(state, &user.sub, current.as_deref()).await?;
    }
    Ok(users)
}

/// Ends every session of user `sub`; how many ended.
pub async fn end_sessions_of(
    state: &AuthState,
    admin: &CurrentUser,
    sub: &str,
) -> Result<usize, ApiError> {
    let unavailable = |e: tower_sessions::session_store::Error| {
        tracing::error!(error = %e, "admin: the session store cannot be reached");
        ApiError::SessionStoreUnavailable
    };
    let ended = revoke::end_sessions_of(state, &Owner::Sub(sub.to_string()))
        .await
        .map_err(unavailable)?;
    if sub == admin.record.subject_key().as_str() {
        // Our own session was among them: make sure this response does not
        // save it back.
        admin.session.sign_out().await?;
    }
    tracing::info!(admin = %admin.record.sub, %sub, ended, "sessions ended by an admin");
    metrics::sessions_ended("admin", ended);
    Ok(ended)
}
