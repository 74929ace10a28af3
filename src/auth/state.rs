//! What the BFF core needs, and all it needs. The app that mounts the core
//! keeps an `AuthState` in its own state and says how to reach it
//! (`impl FromRef<AppState> for AuthState`); every handler, extractor and
//! function here takes an `AuthState`, never the app's state.

use std::sync::Arc;

use super::{
    idps::Idps,
    limits::{LoginBudget, StreamLimits},
    session::{DecodedRecords, Renewals},
};
use crate::server::{clock::Clock, config::Config, db::AppDb, store::AnyStore};

/// Cloned by every extractor on every request, so it is one `Arc`.
#[derive(Clone)]
pub struct AuthState(Arc<AuthShared>);

/// The parts of the core's state (reached through `AuthState`'s `Deref`).
pub struct AuthShared {
    pub config: Arc<Config>,
    /// What time it is, for every expiry decision (the system clock, except in tests).
    pub clock: Clock,
    /// Every configured identity provider.
    pub idps: Arc<Idps>,
    pub store: AnyStore,
    pub db: AppDb,
    /// The HTTP client for relayed API calls (no redirects followed).
    pub relay_http: reqwest::Client,
    /// The DPoP nonces relayed APIs gave (RFC 9449 §9), by URL.
    pub relay_nonces: super::dpop::Nonces,
    /// The cap on login transactions this instance starts.
    pub login_budget: Arc<LoginBudget>,
    /// The caps on open `/auth/events` streams.
    pub event_streams: Arc<StreamLimits>,
    /// Session records already decoded, by the bytes they came from.
    pub decoded: DecodedRecords,
    /// Which sessions' idle renewals a request of this process is storing.
    pub renewals: Renewals,
}

impl AuthState {
    pub fn new(shared: AuthShared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AuthState {
    type Target = AuthShared;

    fn deref(&self) -> &AuthShared {
        &self.0
    }
}
