//! The typed session: the one place that knows the session's keys and what is
//! stored under them (zero2prod's `TypedSession`). Handlers never call
//! `session.get("...")` themselves.
//!
//! Two things live in a session:
//! - pending logins, keyed by `state`, so two tabs signing in at once each keep
//!   their own (state, nonce, PKCE verifier, return_to), for at most 10 minutes;
//! - once signed in, the [`SessionRecord`]: the user's verified claims and the
//!   [`TokenSet`], which never leaves the server.
//!
//! This file holds the [`AuthSession`] extractor and what its operations can
//! fail with ([`SessionError`]); the rest is in:
//! - `record`: [`SessionRecord`], [`TokenSet`], [`RawIdToken`], how a record is
//!   encoded in the session data, and the owner the store indexes it by;
//! - `pending`: [`PendingLogin`] and beginning and taking a login;
//! - `signed_in`: signing in, reading, refreshing, keeping alive, signing out;
//! - `decoded`: records kept decoded, by the bytes they were decoded from;
//! - `layer`: the layer that puts the session in each request, from its cookie;
//! - `view`: the [`UserView`](crate::types::UserView) and session deadlines
//!   the browser may see.
//!
//! Everything is re-exported here: callers name `session::X`.

mod decoded;
mod layer;
mod pending;
mod record;
mod renewals;
mod signed_in;
mod view;

pub use decoded::DecodedRecords;
pub use layer::{set_cookie, SessionLayer};
pub use pending::{PendingLogin, StepUpAsk, MAX_PENDING_LOGINS, PENDING_LOGIN_TTL};
#[cfg(test)]
pub(crate) use record::sample_record;
pub use record::{
    decode_record, encode_record, index_entry, record_from_data, RawIdToken, ResourceToken,
    SessionFacts, SessionRecord, TokenSet, RECORD_KEY,
};
pub use renewals::Renewals;

use axum::{extract::FromRequestParts, http::request::Parts};
use tower_sessions::Session;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("session store error: {0}")]
    Store(#[from] tower_sessions::session::Error),
    /// The access token expired and the IdP could not be asked for fresh
    /// claims: the request cannot be authorized now (the session stays).
    #[error("identity provider unavailable")]
    IdpUnavailable,
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
    /// The session the session layer put in a request's extensions.
    pub fn of_request(extensions: &axum::http::Extensions) -> Option<Self> {
        extensions.get::<Session>().cloned().map(Self)
    }

    /// The id of this request's session if it exists in the store (loading
    /// it first: a cookie naming an ended session has no id).
    async fn live_id(&self) -> Result<Option<tower_sessions::session::Id>, SessionError> {
        self.0.get_value(RECORD_KEY).await?;
        Ok(self.0.id())
    }

    /// Makes this request's copy of the session the stored one (after a
    /// write made with [`AnyStore::update`](crate::server::store::AnyStore::update),
    /// so the end-of-response save starts from it).
    async fn adopt(&self) -> Result<(), SessionError> {
        self.0.load().await?;
        Ok(())
    }

    pub fn id(&self) -> Option<String> {
        self.0.id().map(|id| id.to_string())
    }

    /// The session's id as the store knows it (`None` before it is stored).
    pub fn store_id(&self) -> Option<tower_sessions::session::Id> {
        self.0.id()
    }
}
