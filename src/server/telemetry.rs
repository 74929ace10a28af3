//! Structured logs: one line per request with its request id, method, path
//! (never the query string: it carries authorization codes), status and time.
//! Tokens and cookie values are never logged anywhere.

use std::{io::IsTerminal, time::Instant};

use axum::{extract::Request, middleware::Next, response::Response};
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::{fmt, prelude::*, EnvFilter};

/// Keeps the log writer's thread running; dropping it writes out what is
/// still queued. Hold it for the life of the process.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard(#[allow(dead_code)] WorkerGuard);

/// `RUST_LOG` filters (default `info`); `LOG_FORMAT=json` switches to JSON
/// lines. Lines go to stdout through a thread of their own, so a request
/// never waits on the terminal or the pipe (the synchronous write was about
/// 8% of a signed-in request's CPU under `make bench`). Nothing is dropped:
/// when that thread falls far behind, logging waits instead.
pub fn init() -> LogGuard {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("gatehouse-log")
        .finish(std::io::stdout());
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tower_sessions=warn,sqlx=warn,hyper=warn"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = if std::env::var("LOG_FORMAT").is_ok_and(|f| f == "json") {
        registry
            .with(fmt::layer().json().flatten_event(true).with_writer(writer))
            .try_init()
    } else {
        // Colours only for a person at a terminal, not for a log collector.
        let colours = std::io::stdout().is_terminal();
        registry
            .with(
                fmt::layer()
                    .compact()
                    .with_ansi(colours)
                    .with_writer(writer),
            )
            .try_init()
    };
    // A second init (tests start several apps in one process) is harmless.
    let _ = result;
    LogGuard(guard)
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
