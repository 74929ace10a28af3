//! Gatehouse's BFF core in a plain axum app of its own: its own state, its
//! own pages, no Leptos. It mounts the `/auth/*` routes (with their own
//! anti-forgery and caching policy) and the session layer, and protects one handler with `CurrentUser`
//! and one with `RequireRole<Admin>`. Same environment as the app
//! (`OIDC_ISSUER_URL`, `SESSION_STORE`, `LEPTOS_SITE_ADDR`, …).
//!
//!     cargo run --example embed --features ssr

use axum::{extract::FromRef, response::Html, routing::get, Router};
use gatehouse::{
    auth::{
        self,
        authz::{Admin, RequireRole},
        csrf::{self, Rule},
        state::AuthState,
        user::CurrentUser,
    },
    server::config::Config,
};

/// This app's state: the core's, and whatever else the app needs.
#[derive(Clone)]
struct App {
    auth: AuthState,
    name: &'static str,
}

impl FromRef<App> for AuthState {
    fn from_ref(app: &App) -> Self {
        app.auth.clone()
    }
}

async fn home() -> Html<&'static str> {
    Html(r#"<a href="/auth/login?return_to=/me">Sign in</a>"#)
}

/// Anyone signed in (anonymous: 401).
async fn me(user: CurrentUser) -> String {
    format!("Hello, {}", user.record.name)
}

/// Admins only (anonymous: 401, others: 403).
async fn admin(
    axum::extract::State(app): axum::extract::State<App>,
    admin: RequireRole<Admin>,
) -> String {
    format!("{}: admin area for {}", app.name, admin.user.record.name)
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let config = Config::from_env().map_err(|e| e.to_string())?;
    let addr = config.site_addr;
    let auth = AuthState::open(config.into()).await?;
    let app = Router::new()
        .route("/", get(home))
        .route("/me", get(me))
        .route("/admin", get(admin))
        // This app's pages are navigations: links may GET them, anything
        // else needs the anti-forgery header. `/auth` brings its own policy.
        .route_layer(csrf::layer(&auth, Rule::Navigation))
        .merge(auth::routes(&auth))
        .layer(auth.session_layer())
        .with_state(App {
            auth,
            name: "embed",
        });
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    println!("listening on {addr}");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .await
    .map_err(|e| e.to_string())
}
