//! What every handler can reach.

use std::sync::Arc;

use axum::extract::FromRef;
use leptos::config::LeptosOptions;

use super::{config::Config, db::AppDb, store::AnyStore};
use crate::auth::idps::Idps;

/// Cloned by every layer and extractor on every request, so it is one `Arc`:
/// cloning the fields themselves (`LeptosOptions` alone is a dozen `Arc<str>`)
/// was a tenth of the CPU of a `GET /auth/user` under load (perf).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What every handler can reach (through `AppState`'s `Deref`).
pub struct Shared {
    pub leptos_options: LeptosOptions,
    pub config: Arc<Config>,
    /// Every configured identity provider.
    pub idps: Arc<Idps>,
    pub store: AnyStore,
    pub db: AppDb,
    /// The HTTP client for relayed API calls (no redirects followed).
    pub relay_http: reqwest::Client,
    /// The pages' Content-Security-Policy around the per-response nonce.
    pub page_policy: Arc<super::headers::PagePolicy>,
    /// The cap on login transactions this instance starts.
    pub login_budget: Arc<super::limits::LoginBudget>,
    /// The caps on open `/auth/events` streams.
    pub event_streams: Arc<crate::auth::events::StreamLimits>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}
