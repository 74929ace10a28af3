//! The BFF core (server-only). Everything that touches a token is in this
//! folder: the IdP ([`provider`]), the login flow ([`flow`]), the typed session
//! that stores tokens ([`session`]), who is signed in ([`user`]) and the
//! anti-forgery layer ([`csrf`]).

pub mod claims;
pub mod csrf;
pub mod error;
pub mod flow;
pub mod provider;
pub mod return_to;
pub mod session;
pub mod user;

use axum::{
    routing::{get, post},
    Router,
};

use crate::server::state::AppState;

/// The `/auth/*` routes of the contract.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/login", get(flow::login))
        .route("/auth/signup", get(flow::signup))
        .route("/auth/callback", get(flow::callback))
        .route("/auth/logout", post(flow::logout))
        .route("/auth/user", get(user::user))
        .route("/auth/userinfo", get(user::userinfo))
}
