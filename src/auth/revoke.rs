//! Revocation at sign-out (RFC 7009): when a session ends (logout, ending a
//! session from `/sessions` or `/admin`, back-channel logout), its refresh
//! token is revoked at the IdP's `revocation_endpoint`, when discovery names
//! one, so a copy of the token taken before the sign-out is worthless after
//! it (RFC 9700 §4.14.2 asks for refresh tokens to be revocable; the IETF
//! browser-based-apps draft §6.1 has the BFF revoke what it holds at logout).
//!
//! Best effort and never in the way: the session has already ended in the
//! store when this starts; the calls run on their own task, each bounded by
//! [`REVOKE_WITHIN`], and a failure is logged (the user and provider, never
//! the token) without touching the response.

use std::time::Duration;

use tower_sessions::session_store;

use super::{
    session::{record_from_data, SessionRecord},
    state::AuthState,
};
use crate::server::store::Owner;

/// How long one revocation call may take before it is given up.
pub const REVOKE_WITHIN: Duration = Duration::from_secs(5);

/// Ends every session of `owner` (on every instance: the store's index is
/// shared) and revokes their refresh tokens; how many ended. The records are
/// read first, as ending them deletes them. A refresh of one of them that is
/// at the IdP meanwhile revokes the token it gets (`refresh.rs`).
///
/// With records sealed with their own cookie's key (`SESSION_KEY_IN_COOKIE`)
/// the server cannot read them, so nothing is revoked: the tokens go with
/// the records, and no copy of the store can recover them.
pub async fn end_sessions_of(state: &AuthState, owner: &Owner) -> session_store::Result<usize> {
    let listed = state.store.listed_of(owner).await?;
    let ended = state.store.end_sessions_of(owner).await?;
    revoke_in_background(
        state,
        listed
            .iter()
            .filter_map(|l| l.record.as_ref())
            .filter_map(|r| record_from_data(&r.data))
            .collect(),
    );
    Ok(ended)
}

/// Revokes, in the background, the refresh tokens of sessions that have
/// just ended.
pub fn revoke_in_background(state: &AuthState, ended: Vec<SessionRecord>) {
    let ended: Vec<_> = ended
        .into_iter()
        .filter(|record| record.tokens.refresh_token.is_some())
        .collect();
    if ended.is_empty() {
        return;
    }
    let state = state.clone();
    tokio::spawn(async move {
        for record in ended {
            revoke(&state, &record).await;
        }
    });
}

async fn revoke(state: &AuthState, record: &SessionRecord) {
    let (Some(token), Some(oidc)) = (
        &record.tokens.refresh_token,
        state.idps.of(record.idp.as_deref()),
    ) else {
        return;
    };
    let idp = oidc.config().name.as_str();
    match tokio::time::timeout(REVOKE_WITHIN, oidc.revoke_refresh_token(token)).await {
        Ok(Ok(true)) => tracing::info!(sub = %record.sub, idp, "refresh token revoked"),
        Ok(Ok(false)) => {}
        Ok(Err(e)) => {
            tracing::warn!(sub = %record.sub, idp, error = %e, "refresh token not revoked")
        }
        Err(_) => tracing::warn!(
            sub = %record.sub,
            idp,
            "refresh token not revoked: the revocation endpoint did not answer in time"
        ),
    }
}
