//! Server assembly (zero2prod's `startup`): configuration → state → router → serve.

pub mod clock;
pub mod config;
pub mod db;
pub mod headers;
pub mod health;
pub mod limits;
pub mod notes;
pub mod scrape;
pub mod server_fns;
pub mod state;
pub mod store;
pub mod telemetry;

use std::sync::Arc;

use axum::http::StatusCode;
use axum::{body::Body, extract::Request, middleware, routing::get, Router};
use leptos::config::LeptosOptions;
use leptos_axum::{
    file_and_error_handler_with_context, generate_route_list_with_exclusions, AxumRouteListing,
    LeptosRoutes,
};
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::{limit::RequestBodyLimitLayer, timeout::TimeoutLayer};

use crate::{
    app::{shell, App},
    auth::{
        self,
        csrf::{self, Rule},
        state::AuthState,
    },
};
use clock::Clock;
use config::Config;
use state::AppState;

/// The app's page routes, walked once per process. Walking them runs the app
/// under leptos' process-wide `SuppressResourceLoad` flag, and a resource
/// first polled while it is set never resolves (leptos-rs/leptos#4773): a
/// second walk while another router in the same process renders a page
/// (the test suite builds one app per test, in parallel) left that page
/// hanging forever. The list depends only on the compiled app. Anything in
/// the process that needs the list (tests, the bench) takes it from here.
pub fn page_routes() -> Vec<AxumRouteListing> {
    static ROUTES: std::sync::OnceLock<Vec<AxumRouteListing>> = std::sync::OnceLock::new();
    ROUTES
        .get_or_init(|| {
            generate_route_list_with_exclusions(
                App,
                Some(
                    leptos::server_fn::axum::server_fn_paths()
                        .map(|(path, _)| path.to_string())
                        .collect(),
                ),
            )
        })
        .clone()
}

/// Builds the whole application for `config`. Fails only on problems the
/// operator must fix (e.g. an unusable session store); an unreachable IdP is
/// not one of them: discovery is retried on the first login.
///
/// Every route is in a policy group, and the group's layers carry its
/// security policy (anti-forgery rule, caching, CSP): the BFF's `/auth` and
/// `/api` groups ([`auth::routes`], [`auth::api_routes`]), the app's JSON API
/// ([`notes::routes`]) and server functions (JSON), the probes, static files,
/// and the pages with the 404 fallback (navigations, CSP nonce).
/// `tests/api/policy.rs` checks every route of the router against its rule.
pub async fn build(config: Config, leptos_options: LeptosOptions) -> Result<Built, String> {
    build_with_clock(config, leptos_options, Clock::system()).await
}

/// The application, and how to shut it down.
pub struct Built {
    /// Every request's service: the layers every request passes, around the
    /// routes. Serve it with `into_make_service_with_connect_info` (from
    /// `axum::ServiceExt`), as [`serve`] does.
    pub router: AppService,
    pub shutdown: Shutdown,
    /// The BFF core the router serves (for `/metrics`, `scrape.rs`).
    pub auth: AuthState,
}

/// The application as one service. Not wrapped in a `Router` of its own
/// (`Router::fallback_service`): that routed every request through two more
/// path routers and cloned the boxed stack each time, about 2k instructions
/// per request of nothing.
pub type AppService =
    tower::util::BoxCloneSyncService<Request, axum::response::Response, std::convert::Infallible>;

/// What [`serve`] does on SIGTERM besides refusing new connections: ends
/// the `/auth/events` streams (each with a `restart` event, so the tabs
/// reconnect elsewhere), and how long it lets the requests in flight finish.
#[derive(Clone)]
pub struct Shutdown {
    streams: Arc<auth::limits::StreamLimits>,
    grace: std::time::Duration,
}

/// [`build`] with every expiry decided by `clock`: the test suite moves an
/// adjustable clock forward instead of sleeping.
pub async fn build_with_clock(
    config: Config,
    leptos_options: LeptosOptions,
    clock: Clock,
) -> Result<Built, String> {
    let config = Arc::new(config);
    let auth = AuthState::open_with_clock(config.clone(), clock).await?;
    let state = AppState::new(state::Shared {
        leptos_options: leptos_options.clone(),
        auth: auth.clone(),
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

    // Server functions and pages (the 404 page too) reach the BFF core through context.
    let provide_auth = {
        let auth = auth.clone();
        move || leptos::prelude::provide_context(auth.clone())
    };

    // Server functions are JSON endpoints under `/api`: registered here, in
    // the JSON group, rather than by `leptos_routes` beside the pages.
    let server_fns = server_fns::routes(&auth);

    let pages = Router::new()
        .leptos_routes_with_context(&state, page_routes(), provide_auth.clone(), {
            let options = leptos_options.clone();
            move || shell(options.clone())
        })
        .fallback(file_and_error_handler_with_context::<AppState, _>(
            provide_auth.clone(),
            shell,
        ))
        // A page whose data never comes (a store or IdP that accepts the
        // connection and never answers) is a 503 page by this deadline, not
        // a connection held forever. It is longer than every timeout inside
        // (an IdP call 15 s, waiting for another request's refresh 15 s), so
        // those answer first with their own clear errors.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            config.page_deadline,
        ))
        .layer(middleware::from_fn(headers::explain_page_timeout))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            headers::page_headers,
        ))
        .layer(csrf::layer(&auth, Rule::Navigation));
    let static_files = Router::new()
        .route(
            "/pkg/{*file}",
            get(file_and_error_handler_with_context::<AppState, _>(
                provide_auth,
                shell,
            )),
        )
        .route_layer(csrf::layer(&auth, Rule::Navigation));
    let probes = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route_layer(csrf::layer(&auth, Rule::Navigation));

    let shutdown = Shutdown {
        streams: auth.event_streams.clone(),
        grace: config.shutdown_grace,
    };
    let routes = Router::new()
        .merge(auth::routes(&auth))
        .merge(auth::api_routes(&auth))
        .merge(notes::routes(&auth))
        .merge(auth::json_group(&auth, server_fns))
        .merge(probes)
        .merge(static_files)
        .merge(pages)
        .with_state(state.clone());
    // The layers every request passes, outermost first, wrapped once around
    // the routes. (`Router::layer` would wrap every route in each of them,
    // and axum clones a route's whole boxed stack for each request: callgrind
    // counted 61 boxed-service clones and 75 allocations per `/auth/user`.)
    let every_request = ServiceBuilder::new()
        .layer(telemetry::LogRequests)
        .map_response(limits::explain_too_large)
        .layer(RequestBodyLimitLayer::new(limits::BODY_LIMIT))
        .map_request(|request: Request<_>| request.map(Body::new))
        .map_response(headers::security_headers(config.base_url.is_https()))
        .layer(auth.session_layer())
        .service(routes);
    Ok(Built {
        router: AppService::new(every_request),
        shutdown,
        auth,
    })
}

/// Serves `built` on `listener` until Ctrl-C or SIGTERM, then shuts down
/// gracefully: no new connection is accepted, the `/auth/events` streams end
/// with a `restart` event, and the requests in flight get `SHUTDOWN_GRACE` to
/// finish. Returns once they have, or when the grace is over (what is still
/// open then is cut).
pub async fn serve(listener: TcpListener, built: Built) -> std::io::Result<()> {
    serve_until(listener, built, shutdown_signal()).await
}

/// [`serve`], shutting down when `signal` completes.
pub async fn serve_until(
    listener: TcpListener,
    built: Built,
    signal: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Built {
        router, shutdown, ..
    } = built;
    let (began, mut begun) = tokio::sync::watch::channel(false);
    let streams = shutdown.streams.clone();
    use axum::ServiceExt as _;
    let server = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        signal.await;
        tracing::info!(
            open_streams = streams.open(),
            grace_secs = shutdown.grace.as_secs_f64(),
            "shutting down: no new connections; requests in flight may finish"
        );
        streams.drain();
        began.send_replace(true);
    });
    let grace_over = async {
        let _ = begun.wait_for(|on| *on).await;
        tokio::time::sleep(shutdown.grace).await;
    };
    tokio::select! {
        served = server => {
            tracing::info!("shut down: every request finished");
            served
        }
        () = grace_over => {
            tracing::warn!("shut down: SHUTDOWN_GRACE is over, the requests still in flight are cut");
            Ok(())
        }
    }
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
