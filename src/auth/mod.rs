//! The BFF core (server-only). Everything that touches a token is in this
//! folder: the IdP ([`provider`]), the login flow ([`flow`]), the typed session
//! that stores tokens ([`session`]), who is signed in ([`user`]) and the
//! anti-forgery layer ([`csrf`]).

pub mod admin;
pub mod api_error;
pub mod authz;
pub mod backchannel;
pub mod chooser;
pub mod claims;
pub mod csrf;
pub mod error;
pub mod events;
pub mod flow;
pub mod idp_http;
pub mod idps;
pub mod limits;
pub mod provider;
pub mod refresh;
pub mod relay;
pub mod return_to;
pub mod session;
pub mod sessions;
pub mod setup;
pub mod state;
pub mod subject;
pub mod user;

use axum::{
    extract::FromRef,
    http::{header, HeaderValue},
    routing::{any, get, post},
    Router,
};
use tower_http::set_header::SetResponseHeaderLayer;

use limits::AuthRateLimit;
use state::AuthState;

/// The `/auth/*` routes of the contract. Nothing they answer may be cached:
/// redirects carry one-time values and JSON carries the user.
/// The routes that start or finish a login are rate-limited per client IP.
pub fn routes<S>(login_limit: AuthRateLimit) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    AuthState: FromRef<S>,
{
    let login = Router::new()
        .route("/auth/login", get(flow::login))
        .route("/auth/signup", get(flow::signup))
        .route("/auth/callback", get(flow::callback))
        .route("/auth/callback/{idp}", get(flow::callback_of))
        .layer(login_limit);
    Router::new()
        .merge(login)
        .route("/auth/logout", post(flow::logout))
        .route("/auth/user", get(user::user))
        .route("/auth/userinfo", get(user::userinfo))
        .route(
            "/auth/backchannel-logout",
            post(backchannel::backchannel_logout),
        )
        .route("/auth/events", get(events::events))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
}

/// The BFF's own `/api/*` routes: token relay to the allow-listed remote APIs
/// (`API_REMOTES`) and the admin's JSON view of the users.
pub fn api_routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    AuthState: FromRef<S>,
{
    Router::new()
        .route("/api/remote/{name}/", any(relay::relay_root))
        .route("/api/remote/{name}/{*rest}", any(relay::relay))
        .route("/api/admin/users", get(admin::users))
}
