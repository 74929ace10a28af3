//! Structured logs: one line per request with its request id, method, path
//! (never the query string: it carries authorization codes), status and time.
//! Tokens and cookie values are never logged anywhere.

mod line;
pub mod metrics;

use std::time::Instant;

use axum::{
    extract::Request,
    http::{HeaderName, HeaderValue},
    middleware::Next,
    response::Response,
};
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::{fmt, prelude::*, EnvFilter};

/// Keeps the log writer's thread running; dropping it writes out what is
/// still queued. Hold it for the life of the process.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard(#[allow(dead_code)] WorkerGuard);

/// `RUST_LOG` filters (default `info`); lines are text (`line.rs`), or
/// JSON with `LOG_FORMAT=json`. Lines go to stdout through a thread of their
/// own, so a request never waits on the terminal or the pipe (the synchronous write was about
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
        registry
            .with(
                fmt::layer()
                    .fmt_fields(line::Fields)
                    .event_format(line::Line)
                    .with_writer(writer),
            )
            .try_init()
    };
    // A second init (tests start several apps in one process) is harmless.
    let _ = result;
    LogGuard(guard)
}

/// The header carrying a request's id.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Gives the request an id and logs it once it is answered, inside a span
/// that carries the id, so every line the handler logs carries it too.
///
/// The id is the caller's `X-Request-Id` (a proxy in front may set one) or
/// a fresh UUID v4; the handler (and the API relay, which passes it on)
/// sees it in the request's headers, and the response carries it back.
/// (This is tower-http's `SetRequestId` + `PropagateRequestId` folded into
/// the layer that logs: two layers fewer on every request was 4% of a
/// signed-in `GET /auth/user`'s instructions.)
pub async fn log_request(mut request: Request, next: Next) -> Response {
    use tracing::Instrument;
    let start = Instant::now();
    let id = match request.headers().get(&X_REQUEST_ID) {
        Some(id) => id.clone(),
        None => {
            let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
            let fresh = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
            let id = HeaderValue::from_str(fresh).expect("a UUID is a header value");
            request.headers_mut().insert(X_REQUEST_ID, id.clone());
            id
        }
    };
    let method = request.method().clone();
    // A clone of the URI shares its bytes (no copy of the path).
    let uri = request.uri().clone();
    let span = tracing::info_span!("request", id = id.to_str().unwrap_or("-"));
    async move {
        let mut response = next.run(request).await;
        let took = start.elapsed();
        tracing::info!(
            method = method.as_str(),
            path = uri.path(),
            status = response.status().as_u16(),
            ms = took.as_secs_f64() * 1000.0,
            "request"
        );
        metrics::request(uri.path(), response.status().as_u16(), took);
        response.headers_mut().entry(X_REQUEST_ID).or_insert(id);
        response
    }
    .instrument(span)
    .await
}
