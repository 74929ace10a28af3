//! Structured logs: one line per request with its request id, method, path
//! (never the query string: it carries authorization codes), status and time.
//! Tokens and cookie values are never logged anywhere.

use std::time::Instant;

use axum::{extract::Request, middleware::Next, response::Response};
use tracing_subscriber::{fmt, prelude::*, EnvFilter};

/// `RUST_LOG` filters (default `info`); `LOG_FORMAT=json` switches to JSON lines.
pub fn init() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tower_sessions=warn,sqlx=warn,hyper=warn"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = if std::env::var("LOG_FORMAT").is_ok_and(|f| f == "json") {
        registry
            .with(fmt::layer().json().flatten_event(true))
            .try_init()
    } else {
        registry.with(fmt::layer().compact()).try_init()
    };
    // A second init (tests start several apps in one process) is harmless.
    let _ = result;
}

/// Logs the request once it is answered, inside a span that carries the
/// request id, so every line the handler logs carries it too.
pub async fn log_request(request: Request, next: Next) -> Response {
    use tracing::Instrument;
    let start = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let span = tracing::info_span!("request", id = %request_id);
    async move {
        let response = next.run(request).await;
        tracing::info!(
            %method,
            %path,
            status = response.status().as_u16(),
            ms = start.elapsed().as_secs_f64() * 1000.0,
            "request"
        );
        response
    }
    .instrument(span)
    .await
}
