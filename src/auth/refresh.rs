//! Keeping the access token fresh: `refresh_if_needed` refreshes it with the
//! refresh token when it expires within the leeway, once per session however
//! many requests ask at the same moment (single-flight within this process),
//! and stores the rotated refresh token together with the new access token.
//!
//! Outcomes: a fresh token; `SessionEnded` when the IdP refuses the refresh
//! token (`invalid_grant`: revoked, expired, rotated elsewhere) — the session is
//! then ended, never left half-alive; `IdpUnavailable` on a network error — the
//! session stays, the call fails with 503.
//!
//! The same single flight gets the access tokens of the relayed APIs that
//! name a resource (RFC 8707): `resource_token` refreshes with `resource=`
//! and keeps that token beside the session's own, and the refresh token
//! the IdP rotates on the way. A refusal of the resource alone
//! (`invalid_target`, `invalid_scope`) is `Refused`: that API gets no token,
//! the session stays.

use crate::server::telemetry::metrics;
use std::{sync::Arc, time::Duration};

use openidconnect::{AccessToken, OAuth2TokenResponse, TokenResponse};
use time::OffsetDateTime;

use super::state::AuthState;
use super::{
    dpop::DpopKey,
    idp::{dpop_bound, Idp, IdpError},
    session::{AuthSession, RawIdToken, ResourceToken, SessionRecord, TokenSet},
};
use crate::server::store::Owner;

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("the session has ended")]
    SessionEnded,
    #[error("identity provider unavailable: {0}")]
    IdpUnavailable(String),
    /// The IdP would not issue a token for this resource (or the session
    /// has no refresh token to ask with); the session stays.
    #[error("no access token for this resource: {0}")]
    Refused(String),
}

/// An access token as it must be presented: as a bearer token, or, when the
/// IdP bound it to the session's DPoP key (RFC 9449), with a fresh proof of
/// that key on every request.
#[derive(Clone, Debug)]
pub struct Credential {
    pub token: AccessToken,
    pub dpop: Option<DpopKey>,
}

impl Credential {
    fn session(record: &SessionRecord) -> Self {
        Self {
            token: record.tokens.access_token.clone(),
            dpop: record.dpop_key.clone().filter(|_| record.tokens.dpop),
        }
    }

    fn resource(record: &SessionRecord, resource: &str) -> Result<Self, RefreshError> {
        let held = record
            .tokens
            .for_resource(resource)
            .ok_or_else(|| RefreshError::Refused("the session has no refresh token".into()))?;
        Ok(Self {
            token: held.access_token.clone(),
            dpop: record.dpop_key.clone().filter(|_| held.dpop),
        })
    }
}

/// What a refresh is for: the session's own access token, or the token of
/// one API (a resource indicator).
#[derive(Clone, Copy)]
enum Target<'a> {
    Session,
    Resource(&'a str),
}

/// How long a request waits for another request's refresh of the same session.
const WAIT_FOR_REFRESH: Duration = Duration::from_secs(15);

/// Does this token set need a refresh now? The leeway is capped at half the
/// token's remaining lifetime at issue, so short-lived tokens are not refreshed
/// on every request.
fn needs_refresh(tokens: &TokenSet, leeway: time::Duration, now: OffsetDateTime) -> bool {
    due(
        tokens.access_token_expires_at,
        tokens.issued_at,
        leeway,
        now,
    )
}

/// The same for the token held for `resource`; one not held yet is due.
fn resource_due(
    tokens: &TokenSet,
    resource: &str,
    leeway: time::Duration,
    now: OffsetDateTime,
) -> bool {
    tokens
        .for_resource(resource)
        .is_none_or(|t| due(t.expires_at, Some(t.issued_at), leeway, now))
}

fn due(
    expires_at: Option<OffsetDateTime>,
    issued_at: Option<OffsetDateTime>,
    leeway: time::Duration,
    now: OffsetDateTime,
) -> bool {
    let Some(expires_at) = expires_at else {
        return false;
    };
    let lifetime = expires_at - issued_at.unwrap_or(expires_at);
    let leeway = if lifetime > time::Duration::ZERO {
        leeway.min(lifetime / 2)
    } else {
        leeway
    };
    now >= expires_at - leeway
}

/// Has the access token expired (so the claims it stood for may be stale)?
fn expired(tokens: &TokenSet, now: OffsetDateTime) -> bool {
    tokens.access_token_expires_at.is_some_and(|at| now >= at)
}

/// Whether [`current_claims`] would answer the record as it is at `now`:
/// its access token has not expired, or there is no refresh token to renew
/// the claims with.
pub fn claims_current(tokens: &TokenSet, now: OffsetDateTime) -> bool {
    tokens.refresh_token.is_none() || !expired(tokens, now)
}

/// The record with claims no older than one access-token lifetime: once the
/// access token has expired, it is refreshed (single-flight) and the roles
/// are taken from the new ID token, so a role removed at the IdP stops
/// counting here within one token lifetime; a refused refresh ends the
/// session. While the token is fresh (the common case) this is one
/// comparison and no call. A session without a refresh token keeps the
/// claims it signed in with until its own deadlines.
pub async fn current_claims(
    state: &AuthState,
    session: &AuthSession,
    record: Arc<SessionRecord>,
) -> Result<Arc<SessionRecord>, RefreshError> {
    if claims_current(&record.tokens, state.clock.now()) {
        return Ok(record);
    }
    // Boxed: the refresh (IdP call, locks, store writes) is a future many
    // times the size of the rest of a signed-in read, and every request's
    // future would otherwise carry (and move) room for it.
    Box::pin(refresh_where(
        state,
        session,
        &record,
        Target::Session,
        |tokens| expired(tokens, state.clock.now()),
    ))
    .await
    .map(Arc::new)
}

/// The session's access token, refreshed first if it is about to expire.
pub async fn refresh_if_needed(
    state: &AuthState,
    session: &AuthSession,
    record: &SessionRecord,
) -> Result<Credential, RefreshError> {
    let leeway = state.config.default_idp.refresh_leeway;
    refresh_where(state, session, record, Target::Session, |tokens| {
        needs_refresh(tokens, leeway, state.clock.now())
    })
    .await
    .map(|record| Credential::session(&record))
}

/// The session's access token for `resource` (RFC 8707), got or refreshed
/// first when there is none yet or it is about to expire — or, when the API
/// refused `rejected` with 401, a new one, unless a concurrent request
/// already replaced it.
pub async fn resource_token(
    state: &AuthState,
    session: &AuthSession,
    record: &SessionRecord,
    resource: &str,
    rejected: Option<&AccessToken>,
) -> Result<Credential, RefreshError> {
    let leeway = state.config.default_idp.refresh_leeway;
    let record = refresh_where(
        state,
        session,
        record,
        Target::Resource(resource),
        |tokens| {
            let held = tokens.for_resource(resource);
            held.zip(rejected)
                .is_some_and(|(t, r)| t.access_token.secret() == r.secret())
                || resource_due(tokens, resource, leeway, state.clock.now())
        },
    )
    .await?;
    // None held after a refresh: there was nothing to refresh with.
    Credential::resource(&record, resource)
}

/// A downstream API refused `rejected` with 401: refresh once, unless a
/// concurrent request already replaced that token (then use its new one).
pub async fn refresh_rejected(
    state: &AuthState,
    session: &AuthSession,
    record: &SessionRecord,
    rejected: &AccessToken,
) -> Result<Credential, RefreshError> {
    let leeway = state.config.default_idp.refresh_leeway;
    refresh_where(state, session, record, Target::Session, |tokens| {
        tokens.access_token.secret() == rejected.secret()
            || needs_refresh(tokens, leeway, state.clock.now())
    })
    .await
    .map(|record| Credential::session(&record))
}

/// Single-flight refresh of the session's tokens while `stale` says so;
/// returns the record as stored afterwards.
async fn refresh_where(
    state: &AuthState,
    session: &AuthSession,
    record: &SessionRecord,
    target: Target<'_>,
    stale: impl Fn(&TokenSet) -> bool,
) -> Result<SessionRecord, RefreshError> {
    if !stale(&record.tokens) {
        return Ok(record.clone());
    }
    let Some(key) = session.id() else {
        return Err(RefreshError::SessionEnded);
    };
    // Exactly one request refreshes (it holds the session lock, across
    // instances on Redis); the others watch the stored record and take the
    // refreshed tokens as soon as they are saved, instead of queueing.
    let deadline = tokio::time::Instant::now() + WAIT_FOR_REFRESH;
    let mut waited = false;
    let (_lock, current) = loop {
        let current = match session.reload_record(&state.store).await {
            Ok(Some(record)) => record,
            Ok(None) => return Err(RefreshError::SessionEnded),
            Err(e) => return Err(RefreshError::IdpUnavailable(e.to_string())),
        };
        if !stale(&current.tokens) {
            return Ok(current);
        }
        let lock = state
            .store
            .try_lock_session(&key)
            .await
            .map_err(|e| RefreshError::IdpUnavailable(format!("session lock: {e}")))?;
        if let Some(lock) = lock {
            // Re-read under the lock: the holder before us may have just saved.
            match session.reload_record(&state.store).await {
                Ok(Some(record)) if stale(&record.tokens) => break (lock, record),
                Ok(Some(record)) => return Ok(record),
                Ok(None) => return Err(RefreshError::SessionEnded),
                Err(e) => return Err(RefreshError::IdpUnavailable(e.to_string())),
            }
        }
        if !waited {
            waited = true;
            metrics::refresh_waited();
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(RefreshError::IdpUnavailable(
                "timed out waiting for a concurrent refresh".into(),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let Some(refresh_token) = current.tokens.refresh_token.clone() else {
        // No refresh token: the access token simply runs out; the session lives
        // on until its own deadlines (calls needing the token will get 401s).
        return Ok(current);
    };
    let Some(oidc) = state.idps.of(current.idp.as_deref()).cloned() else {
        // The provider this session came from is no longer configured.
        let _ = session.sign_out().await;
        return Err(RefreshError::SessionEnded);
    };
    let resource = match target {
        Target::Session => None,
        Target::Resource(resource) => Some(resource),
    };
    let dpop_key = current.dpop_key.clone();
    match oidc
        .refresh(&refresh_token, &current.sub, resource, dpop_key.as_ref())
        .await
    {
        Ok((response, claims)) => {
            let now = state.clock.now();
            let previous = current.tokens.clone();
            let mut record: SessionRecord = current;
            // A new (verified, same-sub) ID token carries the user's roles as
            // they are now: a role granted or revoked at the IdP takes effect
            // at the next refresh, not only at the next login.
            if let Some(serde_json::Value::Object(claims)) =
                claims.and_then(|c| serde_json::to_value(c).ok())
            {
                record.roles = oidc.config().roles_claim.roles(&claims);
                record.id_token_claims = claims;
            }
            let tokens = &mut record.tokens;
            // RFC 6749 §6: a new refresh token replaces the old; none means keep it.
            if let Some(rotated) = response.refresh_token() {
                tokens.refresh_token = Some(rotated.clone());
            }
            if let Some(id_token) = response.id_token() {
                tokens.id_token = RawIdToken::new(id_token.to_string());
            }
            let expires_at = response
                .expires_in()
                .and_then(|d| time::Duration::try_from(d).ok())
                .map(|d| now + d);
            let bound = dpop_key.is_some() && dpop_bound(&response);
            match target {
                Target::Session => {
                    tokens.access_token = response.access_token().clone();
                    tokens.access_token_expires_at = expires_at;
                    tokens.issued_at = Some(now);
                    tokens.dpop = bound;
                }
                Target::Resource(resource) => {
                    tokens.resources.retain(|t| t.resource != resource);
                    tokens.resources.push(ResourceToken {
                        resource: resource.to_string(),
                        access_token: response.access_token().clone(),
                        expires_at,
                        issued_at: now,
                        dpop: bound,
                    });
                }
            }
            match session
                .store_refreshed(&state.store, &previous, &record)
                .await
            {
                Ok(true) => metrics::refresh("success"),
                // Ended while the IdP answered: it stays ended, and the new
                // tokens are not stored anywhere. Whoever ended it revoked the
                // refresh token it found; the one the IdP just issued is held
                // by no one but this request, so it is revoked here — unless
                // the same IdP session lives on in another session (a
                // step-up or a sign-in again replaced this one): the IdP may
                // keep both under one grant, and revoking would end it.
                Ok(false) => {
                    metrics::refresh("session_ended");
                    if response.refresh_token().is_some()
                        && !idp_session_lives_on(state, &oidc, &record).await
                    {
                        super::revoke::revoke_in_background(state, vec![record]);
                    }
                    return Err(RefreshError::SessionEnded);
                }
                Err(e) => {
                    metrics::refresh("store_error");
                    return Err(RefreshError::IdpUnavailable(format!("session store: {e}")));
                }
            }
            match resource {
                None => tracing::info!("access token refreshed"),
                Some(resource) => tracing::info!(%resource, "access token for a resource obtained"),
            }
            Ok(record)
        }
        // RFC 8707 §2.2: the resource is not this grant's to ask for (or
        // the IdP knows no such API) — that API gets no token; the grant
        // itself is fine, so the session stays.
        Err(IdpError::Rejected(code)) if resource.is_some() && code != "invalid_grant" => {
            tracing::warn!(%code, resource = resource.unwrap_or_default(), "the IdP refused a token for this resource");
            metrics::refresh("resource_refused");
            Err(RefreshError::Refused(code))
        }
        Err(IdpError::Rejected(code)) => {
            tracing::info!(%code, "refresh token refused; ending the session");
            metrics::refresh(if code == "invalid_grant" {
                "invalid_grant"
            } else {
                "refused"
            });
            let _ = session.sign_out().await;
            metrics::sessions_ended("refresh_refused", 1);
            Err(RefreshError::SessionEnded)
        }
        Err(IdpError::Unreachable(e)) => {
            metrics::refresh("network");
            Err(RefreshError::IdpUnavailable(e))
        }
        Err(e) => {
            // A refresh answer that fails verification (another iss or sub) is
            // an attack or a broken IdP: end the session (fail closed).
            tracing::warn!(error = %e, "refresh answer rejected; ending the session");
            metrics::refresh("answer_rejected");
            let _ = session.sign_out().await;
            metrics::sessions_ended("refresh_refused", 1);
            Err(RefreshError::SessionEnded)
        }
    }
}

/// Whether another live session holds `record`'s IdP session (its `sid`).
/// Without a `sid` it cannot be told: no. If the store cannot say: no (the
/// token is revoked; failing closed costs at most a sign-in again).
async fn idp_session_lives_on(state: &AuthState, oidc: &Idp, record: &SessionRecord) -> bool {
    let Some(sid) = &record.sid else {
        return false;
    };
    let owner = Owner::Sid(oidc.owner_key(sid).into_string());
    state
        .store
        .sessions_of(&owner)
        .await
        .is_ok_and(|ids| !ids.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(issued: i64, expires: i64) -> TokenSet {
        TokenSet {
            access_token: AccessToken::new("a".into()),
            refresh_token: None,
            id_token: RawIdToken::new("i".into()),
            access_token_expires_at: Some(OffsetDateTime::from_unix_timestamp(expires).unwrap()),
            issued_at: Some(OffsetDateTime::from_unix_timestamp(issued).unwrap()),
            resources: Vec::new(),
            dpop: false,
        }
    }

    fn at(t: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(t).unwrap()
    }

    #[test]
    fn refreshes_within_the_leeway_only() {
        let t = tokens(1000, 1300); // five minutes
        let leeway = time::Duration::seconds(30);
        assert!(!needs_refresh(&t, leeway, at(1200)));
        assert!(needs_refresh(&t, leeway, at(1270)));
        assert!(needs_refresh(&t, leeway, at(1400)));
    }

    #[test]
    fn leeway_is_capped_at_half_the_lifetime() {
        let t = tokens(1000, 1020); // twenty seconds
        let leeway = time::Duration::seconds(30);
        assert!(
            !needs_refresh(&t, leeway, at(1005)),
            "must not refresh a brand-new token"
        );
        assert!(needs_refresh(&t, leeway, at(1010)));
    }

    #[test]
    fn tokens_without_expiry_are_never_refreshed() {
        let mut t = tokens(0, 0);
        t.access_token_expires_at = None;
        assert!(!needs_refresh(&t, time::Duration::seconds(30), at(10_000)));
    }
}
