//! Server assembly (zero2prod's `startup`): configuration → state → router → serve.

pub mod config;
pub mod db;
pub mod headers;
pub mod health;
pub mod limits;
pub mod notes;
pub mod state;
pub mod store;
pub mod telemetry;

use std::sync::Arc;

use axum::{middleware, routing::get, Router};
use leptos::config::LeptosOptions;
use leptos_axum::{generate_route_list, LeptosRoutes};
use tokio::net::TcpListener;
use tower_http::{
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
};

use crate::{
    app::{shell, App},
    auth::{self, csrf, state::AuthState},
};
use config::Config;
use state::AppState;

/// Builds the whole application for `config`. Fails only on problems the
/// operator must fix (e.g. an unusable session store); an unreachable IdP is
/// not one of them: discovery is retried on the first login.
pub async fn build(config: Config, leptos_options: LeptosOptions) -> Result<Router, String> {
    let config = Arc::new(config);
    let auth_state = AuthState::open(config.clone()).await?;
    let state = AppState::new(state::Shared {
        leptos_options: leptos_options.clone(),
        auth: auth_state.clone(),
        page_policy: Arc::new(headers::PagePolicy::new(
            &config,
            // cargo-leptos' live reload (`cargo leptos watch` sets LEPTOS_WATCH).
            // Its script connects to the page's own host name on the reload port.
            std::env::var_os("LEPTOS_WATCH").map(|_| {
                let port = leptos_options
                    .reload_external_port
                    .unwrap_or(leptos_options.reload_port);
                format!("ws://*:{port} wss://*:{port}")
            }),
        )),
    });

    let sessions = auth_state.session_layer()?;

    let routes = generate_route_list(App);
    // Server functions and pages (the 404 page too) reach the BFF core through context.
    let provide_auth = {
        let auth = auth_state.clone();
        move || leptos::prelude::provide_context(auth.clone())
    };
    let router = Router::new()
        .merge(auth::routes(auth::limits::auth_rate_limit(&config.limits)))
        .merge(auth::api_routes())
        .merge(notes::routes())
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .leptos_routes_with_context(&state, routes, provide_auth.clone(), {
            let options = leptos_options.clone();
            move || shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler_with_context::<
            AppState,
            _,
        >(provide_auth, shell))
        .layer(sessions)
        .layer(middleware::from_fn_with_state(auth_state, csrf::guard))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            headers::security_headers,
        ))
        .layer(RequestBodyLimitLayer::new(limits::BODY_LIMIT))
        .layer(middleware::from_fn(limits::explain_too_large))
        .layer(middleware::from_fn(telemetry::log_request))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state);
    Ok(router)
}

/// Serves `router` on `listener` until Ctrl-C or SIGTERM.
pub async fn serve(listener: TcpListener, router: Router) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
}
