//! `GET /healthz` (the process is up) and `GET /readyz` (the session store
//! and an identity provider answer).

use axum::{extract::State, http::StatusCode, response::IntoResponse, Json};
use serde_json::json;

use crate::auth::state::AuthState;

pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz(State(state): State<AuthState>) -> impl IntoResponse {
    // Anyone may call this: the answer says what is down, never why (the
    // reason names internal URLs and store errors); the log has the reason.
    let check = |r: &Result<(), String>| match r {
        Ok(()) => json!({ "ok": true }),
        Err(_) => json!({ "ok": false, "error": "unavailable" }),
    };
    // All providers are asked at once; each check has its own short timeout.
    let results = futures::future::join_all(state.idps.all().iter().map(|oidc| async move {
        let result = oidc
            .reachable_provider()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
        (oidc.config().name.clone(), result)
    }))
    .await;
    let store = state.store.ping().await;
    // With several providers, one IdP being down must not take every instance
    // out of the load balancer: the others still sign people in. So the app
    // is ready when the store answers and at least one provider does; `idp`
    // says whether all do, `providers` which.
    let any_idp = results.iter().any(|(_, r)| r.is_ok());
    let first_error = results
        .iter()
        .find_map(|(name, r)| r.as_ref().err().map(|e| (name, e)));
    let idp = match first_error {
        None => Ok(()),
        Some((name, e)) if results.len() > 1 => Err(format!("{name}: {e}")),
        Some((_, e)) => Err(e.clone()),
    };
    for (name, result) in &results {
        if let Err(e) = result {
            tracing::warn!(idp = %name, error = %e, "readiness: identity provider unavailable");
        }
    }
    if let Err(e) = &store {
        tracing::warn!(error = %e, "readiness: session store unavailable");
    }
    let ready = any_idp && store.is_ok();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let providers: serde_json::Map<String, serde_json::Value> = results
        .iter()
        .map(|(name, r)| (name.clone(), check(r)))
        .collect();
    (
        status,
        Json(json!({
            "ready": ready,
            "idp": check(&idp),
            "providers": providers,
            "session_store": check(&store),
        })),
    )
}
