//! `/api/notes`: a small real resource behind the BFF. The browser reaches it
//! with its session cookie (and `X-CSRF: 1`), other clients with a bearer JWT
//! for `API_AUDIENCE`; [`ApiAccess`] decides who may call, the handlers only
//! decide whose notes: your own, or everyone's for an `admin`.

use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{delete, get},
    Json, Router,
};
use serde::Deserialize;

use super::db::MAX_NOTE_CHARS;
use crate::auth::state::AuthState;
use crate::auth::{
    api_error::ApiError,
    authz::{missing_role, Admin, ApiAccess, NotesRead, NotesWrite, Role},
};

/// `/api/notes`, in the JSON API group (anti-forgery on every method, not cached).
pub fn routes<S>(state: &AuthState) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    AuthState: axum::extract::FromRef<S>,
{
    crate::auth::json_group(
        state,
        Router::new()
            .route("/api/notes", get(list).post(create))
            .route("/api/notes/{id}", delete(remove)),
    )
}

#[derive(Deserialize)]
pub struct ListQuery {
    /// `?all=true`: everyone's notes (admins only).
    #[serde(default)]
    all: bool,
}

async fn list(
    State(state): State<AuthState>,
    access: ApiAccess<NotesRead>,
    Query(query): Query<ListQuery>,
) -> Response {
    let caller = access.caller;
    let owner = if query.all {
        if let Some(forbidden) = missing_role::<Admin>(&caller) {
            return forbidden.into_response();
        }
        None
    } else {
        Some(caller.owner.as_str())
    };
    match state.db.notes(owner).await {
        Ok(notes) => Json(notes).into_response(),
        Err(e) => database_error(e),
    }
}

#[derive(Deserialize)]
pub struct NewNote {
    text: String,
}

async fn create(
    State(state): State<AuthState>,
    access: ApiAccess<NotesWrite>,
    body: Result<Json<NewNote>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let note = match body {
        Ok(Json(note)) => note,
        // Over the body limit while reading: the limits layer explains the 413.
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return rejection.into_response()
        }
        Err(_) => return ApiError::InvalidRequest("Send JSON: {\"text\": \"…\"}.").into_response(),
    };
    let text = note.text.trim();
    if text.is_empty() || text.chars().count() > MAX_NOTE_CHARS {
        return ApiError::InvalidNote {
            max_chars: MAX_NOTE_CHARS,
        }
        .into_response();
    }
    let caller = access.caller;
    match state
        .db
        .add_note(caller.owner.as_str(), &caller.name, text)
        .await
    {
        Ok(note) => (StatusCode::CREATED, Json(note)).into_response(),
        Err(e) => database_error(e),
    }
}

async fn remove(
    State(state): State<AuthState>,
    access: ApiAccess<NotesWrite>,
    Path(id): Path<i64>,
) -> Response {
    let caller = access.caller;
    let owner = (!caller.has_role(Admin::NAME)).then_some(caller.owner.as_str());
    match state.db.delete_note(id, owner).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        // Someone else's note looks exactly like a missing one.
        Ok(false) => ApiError::NotFound("No such note of yours.").into_response(),
        Err(e) => database_error(e),
    }
}

fn database_error(e: sqlx::Error) -> Response {
    tracing::error!(error = %e, "notes database error");
    ApiError::DatabaseUnavailable.into_response()
}
