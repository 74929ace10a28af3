//! What `/admin` does: list the users seen with their roles and live
//! sessions, and end every session of one user (on every instance: the
//! store's `sub` index is shared). Callers are already checked for `admin`.

use super::state::AuthState;
use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};

use super::{
    authz::{Admin, RequireRole},
    error::json_error,
    sessions::summaries_of,
    user::CurrentUser,
};
use crate::{
    server::store::Owner,
    types::{AppError, SeenUser},
};

/// `GET /api/admin/users`: `/admin`'s list as JSON, for admin tooling that
/// rides on an admin's session (401 anonymous, 403 without the role).
pub async fn users(State(state): State<AuthState>, admin: RequireRole<Admin>) -> Response {
    match overview(&state, &admin.user).await {
        Ok(users) => Json(users).into_response(),
        Err(e) => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            &e.to_string(),
        ),
    }
}

/// Every user seen, most recent sign-in first, with their live sessions.
pub async fn overview(state: &AuthState, admin: &CurrentUser) -> Result<Vec<SeenUser>, AppError> {
    let mut users = state.db.users_seen().await.map_err(unavailable)?;
    let current = admin.session.id();
    for user in &mut users {
        user.sessions = summaries_of(state, &user.sub, current.as_deref())
            .await
            .map_err(unavailable)?;
    }
    Ok(users)
}

/// Ends every session of user `sub`; how many ended.
pub async fn end_sessions_of(
    state: &AuthState,
    admin: &CurrentUser,
    sub: &str,
) -> Result<usize, AppError> {
    let ended = state
        .store
        .end_sessions_of(&Owner::Sub(sub.to_string()))
        .await
        .map_err(unavailable)?;
    if sub == admin.record.subject_key() {
        // Our own session was among them: make sure this response does not
        // save it back.
        admin.session.sign_out().await.map_err(unavailable)?;
    }
    tracing::info!(admin = %admin.record.sub, %sub, ended, "sessions ended by an admin");
    Ok(ended)
}

fn unavailable(e: impl std::fmt::Display) -> AppError {
    tracing::error!(error = %e, "admin action failed");
    AppError::Unavailable {
        message: "The session store or database cannot be reached.".into(),
    }
}
