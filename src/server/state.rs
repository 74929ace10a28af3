//! What every handler can reach.

use std::sync::Arc;

use axum::extract::FromRef;
use leptos::config::LeptosOptions;

use super::{config::Config, db::AppDb, store::AnyStore};
use crate::auth::idps::Idps;

#[derive(Clone)]
pub struct AppState {
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
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}
