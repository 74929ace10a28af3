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
pub mod dpop;
pub mod error;
pub mod es256;
pub mod events;
pub mod flow;
pub mod idp;
pub mod idp_http;
pub mod idps;
pub mod limits;
pub mod logout;
pub mod refresh;
pub mod relay;
pub mod return_to;
pub mod revoke;
pub mod session;
pub mod sessions;
pub mod setup;
pub mod state;
pub mod step_up;
pub mod subject;
pub mod user;

use axum::{
    extract::FromRef,
    http::{header, HeaderValue},
    routing::{any, get, post},
    Router,
};
use tower::ServiceBuilder;
use tower_http::set_header::SetResponseHeaderLayer;

use csrf::Rule;
use state::AuthState;

/// The `/auth/*` routes of the contract, in their policy groups: navigations
/// (sign-in, the callback, sign-out, the event stream), JSON reads (the user),
/// and what the IdP calls server to server: back-channel logout, and the
/// client's public keys for `private_key_jwt`. Nothing they answer
/// may be cached (redirects carry one-time values, JSON carries the user) and
/// their URLs are never sent on as a referrer (they carry codes and state).
/// The routes that start or finish a login are rate-limited per client IP.
///
/// Each group's policy is one layer: axum boxes every layer it wraps a route
/// in, and clones and boxes it again on each request.
pub fn routes<S>(state: &AuthState) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    AuthState: FromRef<S>,
{
    let group = |rule| {
        ServiceBuilder::new()
            .layer(no_store())
            .layer(SetResponseHeaderLayer::overriding(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ))
            .layer(csrf::layer(state, rule))
    };
    let navigation = Router::new()
        .route("/auth/login", get(flow::login))
        .route("/auth/signup", get(flow::signup))
        .route("/auth/callback", get(flow::callback))
        .route("/auth/callback/{idp}", get(flow::callback_of))
        .route_layer(limits::auth_rate_limit(&state.config.limits))
        .route("/auth/logout", post(logout::logout))
        .route("/auth/logged-out", get(logout::logged_out))
        .route("/auth/events", get(events::events))
        .route_layer(group(Rule::Navigation));
    let json = Router::new()
        .route("/auth/user", get(user::user))
        .route("/auth/userinfo", get(user::userinfo))
        .route_layer(group(Rule::Json));
    let server_to_server = Router::new()
        .route(
            "/auth/backchannel-logout",
            post(backchannel::backchannel_logout),
        )
        .route("/auth/jwks.json", get(idps::client_jwks))
        .route_layer(group(Rule::ServerToServer));
    navigation.merge(json).merge(server_to_server)
}

/// `Cache-Control: no-store`, whatever the handler said.
fn no_store() -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::overriding(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))
}

/// The BFF's own `/api/*` routes: token relay to the allow-listed remote APIs
/// (`API_REMOTES`) and the admin's JSON view of the users. JSON: every method
/// needs the anti-forgery header when the cookie rides along, nothing cached.
pub fn api_routes<S>(state: &AuthState) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    AuthState: FromRef<S>,
{
    json_group(
        state,
        Router::new()
            .route("/api/remote/{name}/", any(relay::relay_root))
            .route("/api/remote/{name}/{*rest}", any(relay::relay))
            .route("/api/admin/users", get(admin::users)),
    )
}

/// The policy of a JSON API group, for the app's own API routes too: the
/// anti-forgery check on every method, and `Cache-Control: no-store`.
pub fn json_group<S>(state: &AuthState, routes: Router<S>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    routes.route_layer(
        ServiceBuilder::new()
            .layer(no_store())
            .layer(csrf::layer(state, Rule::Json)),
    )
}
