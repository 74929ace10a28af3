//! The typed session: the one place that knows the session's keys and what is
//! stored under them (zero2prod's `TypedSession`). Handlers never call
//! `session.get("...")` themselves.
//!
//! Two things live in a session:
//! - pending logins, keyed by `state`, so two tabs signing in at once each keep
//!   their own (state, nonce, PKCE verifier, return_to), for at most 10 minutes;
//! - once signed in, the [`SessionRecord`]: the user's verified claims and the
//!   [`TokenSet`], which never leaves the server.

use super::state::AuthState;
use std::{
    collections::{BTreeMap, HashMap},
    fmt,
};

use axum::{extract::FromRequestParts, http::request::Parts};
use openidconnect::{AccessToken, Nonce, PkceCodeVerifier, RefreshToken};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use tower_sessions::{Session, SessionStore};

use super::{return_to::ReturnTo, subject::owner_key};
use crate::{
    server::store::{AnyStore, Change, OwnerEntry},
    types::{ClaimRow, SessionTimes, UserView},
};

const PENDING_KEY: &str = "gatehouse.pending_logins";
/// When the idle deadline was last pushed back (Unix seconds).
const ACTIVE_KEY: &str = "gatehouse.active_at";
/// Where a signed-in session keeps its [`SessionRecord`] in the session data.
pub const RECORD_KEY: &str = "gatehouse.user";

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
}

impl fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingLogin")
            .field("return_to", &self.return_to)
            .field("issued_at", &self.issued_at)
            .finish_non_exhaustive()
    }
}

/// The raw ID token, kept only for `id_token_hint` at logout. Never printed.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawIdToken(String);

impl RawIdToken {
    pub fn new(raw: String) -> Self {
        Self(raw)
    }
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RawIdToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RawIdToken([redacted])")
    }
}

/// Every token the IdP gave us. `Debug` is redacted by the openidconnect types.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenSet {
    pub access_token: AccessToken,
    pub refresh_token: Option<RefreshToken>,
    pub id_token: RawIdToken,
    #[serde(with = "time::serde::timestamp::option")]
    pub access_token_expires_at: Option<OffsetDateTime>,
    /// When this access token was obtained (caps the refresh leeway).
    #[serde(default, with = "time::serde::timestamp::option")]
    pub issued_at: Option<OffsetDateTime>,
}

impl TokenSet {
    /// The same access and refresh tokens (compared by value: a refresh
    /// replaces them, so this tells whether one happened since).
    pub fn same_as(&self, other: &TokenSet) -> bool {
        self.access_token.secret() == other.access_token.secret()
            && self.refresh_token.as_ref().map(RefreshToken::secret)
                == other.refresh_token.as_ref().map(RefreshToken::secret)
    }
}

/// What a signed-in session holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The provider that signed this user in (`None`: the default one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp: Option<String>,
    pub sub: String,
    /// The IdP's session id (`sid`), used by back-channel logout.
    pub sid: Option<String>,
    pub name: String,
    pub preferred_username: Option<String>,
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    pub picture: Option<String>,
    pub roles: Vec<String>,
    /// The verified ID token claims, for display.
    pub id_token_claims: Map<String, Value>,
    pub tokens: TokenSet,
    #[serde(with = "time::serde::timestamp")]
    pub created_at: OffsetDateTime,
    /// Set once at login; activity never moves it.
    #[serde(with = "time::serde::timestamp")]
    pub absolute_expires_at: OffsetDateTime,
    /// A random name for this session that the browser may see (to end it
    /// from `/sessions`); the session id itself is a credential and never shown.
    #[serde(default)]
    pub handle: String,
    /// Where the login came from, for the session list.
    #[serde(default)]
    pub user_agent: Option<String>,
    #[serde(default)]
    pub ip: Option<String>,
}

impl SessionRecord {
    /// This user's key in the session index and in `/admin`'s user list.
    pub fn subject_key(&self) -> String {
        owner_key(self.idp.as_deref(), &self.sub)
    }
}

/// How a record sits in the session data: as one JSON string, not a tree of
/// JSON values. The memory store clones the session data on every request and
/// tower-sessions deserializes the record from it; a string is one allocation
/// to clone and parses straight into the record, where a value tree is a
/// hundred allocations to clone, convert and drop (`make bench` measured the
/// difference: see the README's Performance section).
pub fn encode_record(record: &SessionRecord) -> Value {
    Value::String(serde_json::to_string(record).expect("a session record always serializes"))
}

/// Reads a record written by [`encode_record`].
pub fn decode_record(value: &Value) -> Option<SessionRecord> {
    serde_json::from_str(value.as_str()?).ok()
}

/// The signed-in record inside a stored session's data, if there is one.
pub fn record_from_data(data: &HashMap<String, Value>) -> Option<SessionRecord> {
    decode_record(data.get(RECORD_KEY)?)
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("session store error: {0}")]
    Store(#[from] tower_sessions::session::Error),
    /// The access token expired and the IdP could not be asked for fresh
    /// claims: the request cannot be authorized now (the session stays).
    #[error("identity provider unavailable")]
    IdpUnavailable,
}

/// The idle deadline is pushed back at most this often (or a tenth of the idle
/// timeout, if shorter), so an active user costs one session write per minute,
/// not one per request.
const KEEP_ALIVE_EVERY: time::Duration = time::Duration::minutes(1);

/// What the store indexes a signed-in session by: `(sub, sid)`. `None` for a
/// session that is not signed in (e.g. one holding only pending logins).
pub fn index_entry(data: &HashMap<String, Value>) -> Option<OwnerEntry> {
    let record = record_from_data(data)?;
    let sid = record
        .sid
        .as_deref()
        .map(|sid| owner_key(record.idp.as_deref(), sid));
    Some(OwnerEntry {
        sub: record.subject_key(),
        sid,
    })
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
    let now = OffsetDateTime::now_utc();
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

/// The request's session, typed.
#[derive(Clone, Debug)]
pub struct AuthSession(Session);

impl<S: Send + Sync> FromRequestParts<S> for AuthSession {
    type Rejection = <Session as FromRequestParts<S>>::Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Session::from_request_parts(parts, state).await.map(Self)
    }
}

impl AuthSession {
    /// The id of this request's session if it exists in the store (loading
    /// it first: a cookie naming an ended session has no id).
    async fn live_id(&self) -> Result<Option<tower_sessions::session::Id>, SessionError> {
        self.0.get_value(RECORD_KEY).await?;
        Ok(self.0.id())
    }

    /// Makes this request's copy of the session the stored one (after a
    /// write made with [`AnyStore::update`], so the end-of-response save
    /// starts from it).
    async fn adopt(&self) -> Result<(), SessionError> {
        self.0.load().await?;
        Ok(())
    }

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
    /// callbacks racing with one `state` cannot both take it.
    pub async fn take_login(
        &self,
        store: &AnyStore,
        state: &str,
    ) -> Result<Option<PendingLogin>, SessionError> {
        let Some(id) = self.live_id().await? else {
            return Ok(None);
        };
        let now = OffsetDateTime::now_utc();
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

    /// Signs the session in. The session id is rotated first, so an id an
    /// attacker planted before login is worthless after it (session fixation,
    /// OWASP ASVS 5.0 V7.2.4).
    pub async fn sign_in(&self, record: SessionRecord) -> Result<(), SessionError> {
        self.0.cycle_id().await?;
        self.0
            .insert_value(
                ACTIVE_KEY,
                OffsetDateTime::now_utc().unix_timestamp().into(),
            )
            .await?;
        self.put_record(&record).await
    }

    /// The signed-in record, if any and not past its absolute lifetime. An
    /// expired record is removed on the spot: no half-logged-in state.
    pub async fn record(&self) -> Result<Option<SessionRecord>, SessionError> {
        let Some(record) = self.stored_record().await? else {
            return Ok(None);
        };
        if OffsetDateTime::now_utc() >= record.absolute_expires_at {
            self.0.flush().await?;
            return Ok(None);
        }
        Ok(Some(record))
    }

    pub fn id(&self) -> Option<String> {
        self.0.id().map(|id| id.to_string())
    }

    /// The record as the store holds it now (another request may have changed
    /// it since this request loaded the session).
    pub async fn reload_record(
        &self,
        store: &AnyStore,
    ) -> Result<Option<SessionRecord>, SessionError> {
        let Some(id) = self.0.id() else {
            return Ok(None);
        };
        let Some(stored) = store
            .load(&id)
            .await
            .map_err(tower_sessions::session::Error::Store)?
        else {
            return Ok(None);
        };
        Ok(record_from_data(&stored.data))
    }

    /// Replaces the stored record with `refreshed` (new tokens), unless the
    /// stored tokens are no longer `previous` (then they are newer: keep
    /// them). Written before this returns, so requests waiting for the
    /// refresh read it from the store. `false` when the session has ended
    /// meanwhile: the new tokens are then dropped, not stored.
    pub async fn store_refreshed(
        &self,
        store: &AnyStore,
        previous: &TokenSet,
        refreshed: &SessionRecord,
    ) -> Result<bool, SessionError> {
        let Some(id) = self.0.id() else {
            return Ok(false);
        };
        let encoded = encode_record(refreshed);
        let written = store
            .update(&id, |stored| {
                let current = record_from_data(&stored.data);
                if current.is_some_and(|c| !c.tokens.same_as(previous)) {
                    return Change::Keep(());
                }
                stored.data.insert(RECORD_KEY.to_string(), encoded.clone());
                Change::Write(())
            })
            .await
            .map_err(tower_sessions::session::Error::Store)?;
        self.adopt().await?;
        Ok(written.is_some())
    }

    /// This request's copy of the record, as stored (no lifetime check).
    async fn stored_record(&self) -> Result<Option<SessionRecord>, SessionError> {
        Ok(self
            .0
            .get_value(RECORD_KEY)
            .await?
            .as_ref()
            .and_then(decode_record))
    }

    /// Replaces this request's copy of the record (saved with the response).
    async fn put_record(&self, record: &SessionRecord) -> Result<(), SessionError> {
        self.0
            .insert_value(RECORD_KEY, encode_record(record))
            .await?;
        Ok(())
    }

    /// Ends the session: the record is deleted from the store and the cookie removed.
    pub async fn sign_out(&self) -> Result<Option<SessionRecord>, SessionError> {
        let record = self.stored_record().await?;
        self.0.flush().await?;
        Ok(record)
    }

    /// Activity keeps a signed-in session alive: when the idle deadline was
    /// last pushed back more than a minute ago (or a tenth of the idle
    /// timeout), push it back to now + idle. That is a change to this
    /// request's copy, saved with the response (and its cookie renewed) by a
    /// compare-and-set: if the session ended or another write landed while
    /// the request ran, nothing is written back. Returns the idle deadline.
    pub async fn keep_alive(&self, idle: time::Duration) -> Result<OffsetDateTime, SessionError> {
        let now = OffsetDateTime::now_utc();
        let active_at = self
            .0
            .get_value(ACTIVE_KEY)
            .await?
            .and_then(|v| v.as_i64())
            .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok());
        if let Some(at) = active_at.filter(|at| now - *at < KEEP_ALIVE_EVERY.min(idle / 10)) {
            return Ok(at + idle);
        }
        self.0
            .insert_value(ACTIVE_KEY, now.unix_timestamp().into())
            .await?;
        Ok(now + idle)
    }

    /// The session's deadlines: idle as the store holds it, absolute from the record.
    pub fn times(
        &self,
        record: &SessionRecord,
        idle_deadline: OffsetDateTime,
        idle_timeout: time::Duration,
    ) -> SessionTimes {
        SessionTimes {
            idle_timeout: idle_timeout.whole_seconds(),
            created_at: record.created_at.unix_timestamp(),
            idle_expires_at: idle_deadline
                .min(record.absolute_expires_at)
                .unix_timestamp(),
            absolute_expires_at: record.absolute_expires_at.unix_timestamp(),
            access_token_expires_at: record
                .tokens
                .access_token_expires_at
                .map(OffsetDateTime::unix_timestamp),
        }
    }

    pub fn view(
        &self,
        record: &SessionRecord,
        idle_deadline: OffsetDateTime,
        idle_timeout: time::Duration,
    ) -> UserView {
        UserView {
            sub: record.sub.clone(),
            name: record.name.clone(),
            preferred_username: record.preferred_username.clone(),
            email: record.email.clone(),
            email_verified: record.email_verified,
            picture: record.picture.clone(),
            roles: record.roles.clone(),
            session: self.times(record, idle_deadline, idle_timeout),
            id_token_claims: ClaimRow::rows(&record.id_token_claims),
        }
    }

    /// The signed-in record and its idle deadline, keeping the session alive;
    /// `None` when anonymous. Every "who is this?" goes through here.
    pub async fn signed_in(
        &self,
        state: &AuthState,
    ) -> Result<Option<(SessionRecord, OffsetDateTime)>, SessionError> {
        let Some(record) = self.record().await? else {
            return Ok(None);
        };
        let record = match super::refresh::current_claims(state, self, record).await {
            Ok(record) => record,
            Err(super::refresh::RefreshError::SessionEnded) => return Ok(None),
            Err(super::refresh::RefreshError::IdpUnavailable(why)) => {
                tracing::warn!(%why, "claims could not be refreshed");
                return Err(SessionError::IdpUnavailable);
            }
        };
        let deadline = self.keep_alive(state.config.session.idle_timeout).await?;
        Ok(Some((record, deadline)))
    }

    /// The view of the signed-in user, or `None` (also when the store fails:
    /// failing closed means treating the request as anonymous).
    pub async fn user_view(&self, state: &AuthState) -> Option<UserView> {
        match self.signed_in(state).await {
            Ok(found) => found.map(|(record, deadline)| {
                self.view(&record, deadline, state.config.session.idle_timeout)
            }),
            Err(e) => {
                tracing::error!(error = %e, "session store unavailable; treating request as anonymous");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A record is stored as one JSON string and read back whole; its owner
    /// is what the store indexes.
    #[test]
    fn records_round_trip_as_one_string() {
        let record: SessionRecord = serde_json::from_value(json!({
            "sub": "alice", "sid": "s1", "name": "Alice", "preferred_username": null,
            "email": null, "email_verified": null, "picture": null, "roles": ["user"],
            "id_token_claims": {}, "created_at": 1_700_000_000,
            "absolute_expires_at": 1_700_043_200,
            "tokens": {
                "access_token": "at", "refresh_token": "rt", "id_token": "it",
                "access_token_expires_at": 1_700_000_300,
            },
        }))
        .unwrap();
        let encoded = encode_record(&record);
        assert!(encoded.is_string());
        let again = decode_record(&encoded).expect("the string form reads");
        assert_eq!(again.sid.as_deref(), Some("s1"));
        assert_eq!(again.roles, vec!["user".to_string()]);
        assert!(
            decode_record(&serde_json::to_value(&record).unwrap()).is_none(),
            "the object form of earlier versions is no longer read"
        );
        let data = HashMap::from([(RECORD_KEY.to_string(), encoded)]);
        assert_eq!(
            index_entry(&data),
            Some(OwnerEntry {
                sub: "alice".to_string(),
                sid: Some("s1".to_string())
            })
        );
        assert!(decode_record(&json!("not a record")).is_none());
    }
}
