//! What every handler can reach: the BFF core's state and what the pages need.

use std::sync::Arc;

use axum::extract::FromRef;
use leptos::config::LeptosOptions;

use crate::auth::state::AuthState;

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
    /// The BFF core's state: configuration, providers, store, database.
    pub auth: AuthState,
    /// The pages' Content-Security-Policy around the per-response nonce.
    pub page_policy: Arc<super::headers::PagePolicy>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

impl FromRef<AppState> for AuthState {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}
