//! Pending logins: a [`PendingLogin`] for each login that went to the IdP and
//! has not come back, keyed by its `state` (at most [`MAX_PENDING_LOGINS`],
//! each for at most [`PENDING_LOGIN_TTL`]), and how [`AuthSession`] begins
//! and takes one.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
};

use openidconnect::{Nonce, PkceCodeVerifier};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use super::{AuthSession, SessionError};
use crate::{
    auth::return_to::ReturnTo,
    server::store::{AnyStore, Change},
};

const PENDING_KEY: &str = "gatehouse.pending_logins";

/// How long a started login may take at the IdP.
pub const PENDING_LOGIN_TTL: time::Duration = time::Duration::minutes(10);
/// At most this many logins may be pending in one browser; the oldest is dropped.
pub const MAX_PENDING_LOGINS: usize = 8;

/// A login that went to the IdP and has not come back yet.
#[derive(Serialize, Deserialize)]
pub struct PendingLogin {
    /// The provider this login was sent to (`None`: the default one). The
    /// callback talks to it and accepts its `iss` only (RFC 9700 §4.4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp: Option<String>,
    pub nonce: Nonce,
    pub pkce_verifier: PkceCodeVerifier,
    pub return_to: ReturnTo,
    #[serde(with = "time::serde::timestamp")]
    pub issued_at: OffsetDateTime,
    /// A step-up: what the sign-in was asked to meet, checked at the callback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_up: Option<StepUpAsk>,
}

/// What a step-up sign-in asked of the IdP (OIDC Core §3.1.2.1), and whose
/// session it is for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepUpAsk {
    /// `max_age` sent, in seconds: the ID token must carry an `auth_time`
    /// at most this old.
    #[serde(default)]
    pub max_age: Option<u64>,
    /// `acr_values` sent: the ID token's `acr` must be one of them.
    #[serde(default)]
    pub acr_values: Option<String>,
    /// The signed-in user (subject key) this step-up is for: the new sign-in
    /// must be the same user, or it is refused and the session stays as it was.
    #[serde(default)]
    pub of: Option<String>,
    /// `prompt=login` was sent too (the IdP had ignored `max_age` once).
    #[serde(default)]
    pub prompted_login: bool,
}

impl fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingLogin")
            .field("return_to", &self.return_to)
            .field("issued_at", &self.issued_at)
            .finish_non_exhaustive()
    }
}

fn pending_in(data: &HashMap<String, Value>) -> BTreeMap<String, PendingLogin> {
    data.get(PENDING_KEY)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default()
}

fn put_pending(data: &mut HashMap<String, Value>, pending: &BTreeMap<String, PendingLogin>) {
    if pending.is_empty() {
        data.remove(PENDING_KEY);
    } else {
        data.insert(
            PENDING_KEY.to_string(),
            serde_json::to_value(pending).expect("pending logins always serialize"),
        );
    }
}

/// Adds `login` under `state`, dropping expired logins and, past
/// [`MAX_PENDING_LOGINS`], the oldest.
fn add_pending(pending: &mut BTreeMap<String, PendingLogin>, state: &str, login: PendingLogin) {
    // The login being added was issued now.
    let now = login.issued_at;
    pending.retain(|_, p| now - p.issued_at < PENDING_LOGIN_TTL);
    while pending.len() >= MAX_PENDING_LOGINS {
        let oldest = pending
            .iter()
            .min_by_key(|(_, p)| p.issued_at)
            .map(|(k, _)| k.clone())
            .expect("non-empty");
        pending.remove(&oldest);
    }
    pending.insert(state.to_string(), login);
}

impl AuthSession {
    /// Remembers a login that is about to go to the IdP, under its `state`.
    /// An existing session is updated in the store at once (compare-and-set,
    /// so two tabs starting a login at the same moment both keep theirs); a
    /// new one is created with the response.
    pub async fn begin_login(
        &self,
        store: &AnyStore,
        state: &str,
        login: PendingLogin,
    ) -> Result<(), SessionError> {
        let mut login = Some(login);
        if let Some(id) = self.live_id().await? {
            let updated = store
                .update(&id, |record| {
                    let mut pending = pending_in(&record.data);
                    if let Some(login) = login.take() {
                        add_pending(&mut pending, state, login);
                    }
                    put_pending(&mut record.data, &pending);
                    Change::Write(())
                })
                .await
                .map_err(tower_sessions::session::Error::Store)?;
            if updated.is_some() {
                return self.adopt().await;
            }
            // Ended meanwhile: start a new session instead of writing to a dead id.
            self.0.cycle_id().await?;
        }
        let Some(login) = login else {
            return Ok(());
        };
        let mut pending: BTreeMap<String, PendingLogin> =
            self.0.get(PENDING_KEY).await?.unwrap_or_default();
        add_pending(&mut pending, state, login);
        self.0.insert(PENDING_KEY, pending).await?;
        Ok(())
    }

    /// Takes (and so consumes: a replayed `state` finds nothing) the pending
    /// login for `state`, if it exists and has not expired. The consumption is
    /// written to the store before this returns, so the `state` is spent even
    /// if the callback then fails (and its response is never saved), and two
    /// callbacks racing with one `state` cannot both take it. `now` decides
    /// which pending logins have expired.
    pub async fn take_login(
        &self,
        store: &AnyStore,
        state: &str,
        now: OffsetDateTime,
    ) -> Result<Option<PendingLogin>, SessionError> {
        let Some(id) = self.live_id().await? else {
            return Ok(None);
        };
        let taken = store
            .update(&id, |record| {
                let mut pending = pending_in(&record.data);
                let found = pending.remove(state);
                if found.is_none() {
                    return Change::Keep(None);
                }
                pending.retain(|_, p| now - p.issued_at < PENDING_LOGIN_TTL);
                put_pending(&mut record.data, &pending);
                Change::Write(found)
            })
            .await
            .map_err(tower_sessions::session::Error::Store)?
            .flatten();
        self.adopt().await?;
        Ok(taken.filter(|p| now - p.issued_at < PENDING_LOGIN_TTL))
    }
}
