//! `GET /healthz` (the process is up) and `GET /readyz` (the IdP and the
//! session store both answer).

use axum::{extract::State, http::StatusCode, response::IntoResponse, Json};
use serde_json::json;

use super::state::AppState;

pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    // Ready only when every configured provider answers.
    let mut idp: Result<(), String> = Ok(());
    for oidc in state.idps.all() {
        if let Err(e) = oidc.reachable_provider().await {
            idp = Err(format!("{}: {e}", oidc.config().name));
            break;
        }
    }
    let store = state.store.ping().await;
    let ready = idp.is_ok() && store.is_ok();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let check = |r: &Result<(), String>| match r {
        Ok(()) => json!({ "ok": true }),
        Err(e) => json!({ "ok": false, "error": e }),
    };
    (
        status,
        Json(json!({ "ready": ready, "idp": check(&idp), "session_store": check(&store) })),
    )
}
