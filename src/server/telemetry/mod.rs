//! Structured logs: one line per request with its request id, method, path
//! (never the query string: it carries authorization codes), status and time.
//! Tokens and cookie values are never logged anywhere. With an OTLP endpoint
//! set, traces too (`traces.rs`).

mod access;
mod batched;
#[cfg(test)]
mod captured;
mod json;
mod line;
pub mod metrics;
mod request;
pub mod traces;

use std::{
    convert::Infallible,
    future::Future,
    task::{Context, Poll},
    time::Instant,
};

use axum::{
    extract::Request,
    http::{HeaderName, HeaderValue},
    response::Response,
};
use batched::Flushed;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_subscriber::{
    fmt::{self, format::JsonFields, MakeWriter},
    prelude::*,
    registry::LookupSpan,
    EnvFilter, Layer,
};

/// Keeps the log writer's thread running, and the trace exporter's when
/// traces are on; dropping it exports the spans still queued, then writes
/// out the lines still queued. Hold it for the life of the process.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    traces: Option<SdkTracerProvider>,
    _log: Flushed,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.traces.take() {
            traces::shut_down(provider);
        }
    }
}

/// `RUST_LOG` filters (default `info`); lines are text (`line.rs`), or
/// JSON with `LOG_FORMAT=json`. Lines go to stdout through a thread of their
/// own, in batches (`batched.rs`), so a request never waits on the terminal
/// or the pipe, nor wakes a thread for its line. Nothing is dropped: when
/// that thread falls far behind, logging waits instead.
///
/// With `OTEL_EXPORTER_OTLP_ENDPOINT` (or `…_TRACES_ENDPOINT`) set, spans
/// are exported too (`traces.rs`); `RUST_LOG` then filters the log lines
/// only. A bad OpenTelemetry setting is an error here, naming the variable.
pub fn init() -> Result<LogGuard, String> {
    let traces = traces::Settings::from_env()?;
    let (writer, guard) = batched::to_stdout();
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tower_sessions=warn,sqlx=warn,hyper=warn"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f == "json");
    let Some(settings) = traces else {
        // Traces off: the subscriber as it always was, one filter for all.
        let registry = tracing_subscriber::registry().with(filter);
        let result = if json {
            registry.with(json_lines(writer.clone())).try_init()
        } else {
            registry.with(text_lines(writer.clone())).try_init()
        };
        // A second init (tests start several apps in one process) is
        // harmless; the request line is ours to write once ours logs.
        if result.is_ok() {
            access::install(writer, json);
        }
        return Ok(LogGuard {
            traces: None,
            _log: guard,
        });
    };
    // Traces on: the filter is the log lines' own, the spans have theirs.
    let provider = traces::start(settings)?;
    let registry = tracing_subscriber::registry();
    let result = if json {
        registry
            .with(json_lines(writer).with_filter(filter))
            .with(traces::layer(&provider))
            .try_init()
    } else {
        registry
            .with(text_lines(writer).with_filter(filter))
            .with(traces::layer(&provider))
            .try_init()
    };
    let _ = result;
    Ok(LogGuard {
        traces: Some(provider),
        _log: guard,
    })
}

fn text_lines<S, W>(writer: W) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    fmt::layer()
        .fmt_fields(line::Fields)
        .event_format(line::Line)
        .with_writer(writer)
}

fn json_lines<S, W>(writer: W) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    fmt::layer()
        .fmt_fields(JsonFields::new())
        .event_format(json::JsonLine)
        .with_writer(writer)
}

/// The header carrying a request's id.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Gives the request an id and logs it once it is answered, and every line
/// the handler logs carries the id: the request line and the id are
/// `access.rs`' (no span) when Gatehouse's own subscriber logs and traces
/// are off, or else a `request` span around the request and an event in it.
///
/// The id is the caller's `X-Request-Id` (a proxy in front may set one) or
/// a fresh UUID v4; the handler (and the API relay, which passes it on)
/// sees it in the request's headers, and the response carries it back.
/// (This is tower-http's `SetRequestId` + `PropagateRequestId` folded into
/// the layer that logs: two layers fewer on every request was 4% of a
/// signed-in `GET /auth/user`'s instructions.)
/// As a layer of its own, not a `from_fn` middleware: that boxed a clone of
/// the whole stack beneath it on every request.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogRequests;

impl<S> tower::Layer<S> for LogRequests {
    type Service = LoggedRequests<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LoggedRequests(inner)
    }
}

/// The service [`LogRequests`] makes.
#[derive(Clone, Debug)]
pub struct LoggedRequests<S>(S);

type Answer = dyn Future<Output = Result<Response, Infallible>> + Send;

impl<S> tower::Service<Request> for LoggedRequests<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = request::InRequest<Answer>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
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
        // The request line: ours to write (no span, the id set for every
        // poll), or an event in the request's span.
        let log = access::ours();
        let span = match log {
            Some(_) => None,
            None if traces::on() => Some(traces::request_span(
                id.to_str().unwrap_or("-"),
                &method,
                uri.path(),
            )),
            None => Some(tracing::info_span!(
                "request",
                id = id.to_str().unwrap_or("-")
            )),
        };
        // The service made ready is the one called (tower's contract); what
        // it logs while it starts carries the request's id too.
        let answer = match &span {
            Some(span) => span.in_scope(|| self.0.call(request)),
            None => request::in_request(Some(id.clone()), || self.0.call(request)),
        };
        let in_request = span.is_none().then(|| id.clone());
        let answered = async move {
            let Ok(mut response) = answer.await;
            let took = start.elapsed();
            let status = response.status().as_u16();
            let ms = took.as_secs_f64() * 1000.0;
            match log {
                Some(log) => log.write(&request::Answered {
                    at: time::OffsetDateTime::now_utc(),
                    id: id.to_str().unwrap_or("-"),
                    method: method.as_str(),
                    path: uri.path(),
                    status,
                    ms,
                }),
                None => {
                    let (method, path) = (method.as_str(), uri.path());
                    tracing::info!(method, path, status, ms, "request");
                    traces::request_answered(status);
                }
            }
            metrics::request(uri.path(), status, took);
            response.headers_mut().entry(X_REQUEST_ID).or_insert(id);
            Ok(response)
        };
        match span {
            Some(span) => request::InRequest::new(None, Box::pin(answered.instrument(span))),
            None => request::InRequest::new(in_request, Box::pin(answered)),
        }
    }
}
