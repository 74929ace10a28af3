//! Traces (OpenTelemetry), on when `OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set: the `tracing` spans of
//! Gatehouse's own code become OpenTelemetry spans (`tracing-opentelemetry`),
//! exported over OTLP/HTTP (protobuf, or JSON with
//! `OTEL_EXPORTER_OTLP_PROTOCOL=http/json`) by a batch processor on a thread
//! of its own, and calls to the IdP and to relayed APIs carry the W3C
//! `traceparent` of the span they are made in.
//!
//! One span per request (`request`: method, path, status, request id), and
//! inside it one per IdP call (`idp <endpoint>`), per relayed call
//! (`relay <remote>`) and per session-store operation (`store <op>`). Every
//! name and attribute is set here, so a reader sees in one place that none
//! carries a token, a cookie, an authorization code, a `state` or a session
//! id: attributes are methods, paths (never a query string), statuses,
//! request ids, and names from the configuration (provider, endpoint,
//! remote, store kind).
//!
//! Off (no endpoint set, or `OTEL_SDK_DISABLED=true`), nothing is exported
//! and nothing is built: no exporter thread, no span beyond the `request`
//! span the logs already had, and each function below is one relaxed atomic
//! load.

use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use opentelemetry::{
    propagation::Injector,
    trace::{Status, TracerProvider as _},
    Array, KeyValue, Value,
};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::{propagation::TraceContextPropagator, trace::SdkTracerProvider, Resource};
use tracing::{Level, Span, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{filter::Targets, registry::LookupSpan, Layer};

use super::metrics::route_group;

static ON: AtomicBool = AtomicBool::new(false);

/// From now on, make spans and propagate their context. [`start`] calls it;
/// an app that mounts the auth core and installs its own
/// `tracing-opentelemetry` layer and text-map propagator calls it too.
pub fn switch_on() {
    ON.store(true, Ordering::Relaxed);
}

/// Whether traces are on.
pub fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// What the environment asks for (the standard OpenTelemetry variables).
#[derive(Debug, PartialEq)]
pub(super) struct Settings {
    /// Where spans are POSTed.
    endpoint: String,
    protocol: Protocol,
    /// `service.name`.
    service: String,
}

impl Settings {
    /// `None`: traces are off.
    pub(super) fn from_env() -> Result<Option<Self>, String> {
        Self::read(|name| std::env::var(name).ok())
    }

    fn read(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        // An empty variable is an unset one (the specification's rule).
        let var = |name: &str| {
            var(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        // The traces endpoint is taken as it is; the general one is a base
        // that `/v1/traces` is appended to (OTLP exporter specification).
        let endpoint = match (
            var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            var("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(traces), _) => {
                http_url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &traces)?;
                traces
            }
            (None, Some(base)) => {
                http_url("OTEL_EXPORTER_OTLP_ENDPOINT", &base)?;
                format!("{}/v1/traces", base.trim_end_matches('/'))
            }
            (None, None) => return Ok(None),
        };
        let (name, protocol) = match var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") {
            Some(p) => ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", Some(p)),
            None => (
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                var("OTEL_EXPORTER_OTLP_PROTOCOL"),
            ),
        };
        let protocol = match protocol.as_deref() {
            None | Some("http/protobuf") => Protocol::HttpBinary,
            Some("http/json") => Protocol::HttpJson,
            Some(other) => {
                return Err(format!(
                    "{name}={other:?} is invalid: expected http/protobuf or http/json \
                     (OTLP over HTTP; gRPC is not built in)"
                ))
            }
        };
        let service = var("OTEL_SERVICE_NAME").unwrap_or_else(|| "gatehouse".into());
        Ok(Some(Self {
            endpoint,
            protocol,
            service,
        }))
    }
}

/// Refuses what the exporter would silently replace with its default
/// (`http://localhost:4318`). The value is not repeated: a collector URL
/// may carry credentials.
fn http_url(name: &str, value: &str) -> Result<(), String> {
    let fine = url::Url::parse(value).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https")
            && u.host_str().is_some()
            && u.query().is_none()
            && u.fragment().is_none()
    });
    if fine {
        Ok(())
    } else {
        Err(format!(
            "{name} is invalid: expected an http:// or https:// URL without query, \
             e.g. http://localhost:4318 (OTLP over HTTP)"
        ))
    }
}

/// Builds the exporter and its batch processor (their thread starts here),
/// installs the W3C trace-context propagator, and switches traces on.
pub(super) fn start(settings: Settings) -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(settings.endpoint)
        .with_protocol(settings.protocol)
        .build()
        .map_err(|e| format!("the OTLP exporter: {e}"))?;
    let resource = Resource::builder()
        .with_service_name(settings.service)
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    // The batch processor reads OTEL_BSP_* (queue, delay, batch size, timeout)
    // and the provider OTEL_TRACES_SAMPLER(_ARG) and OTEL_SPAN_*_LIMIT.
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    switch_on();
    Ok(provider)
}

/// The `tracing` layer that turns spans into OpenTelemetry spans: only
/// Gatehouse's own (a library's spans, e.g. the exporter's own HTTP client,
/// would otherwise be traced, and exported, in a loop), at `info`, whatever
/// `RUST_LOG` says of the log lines.
pub(super) fn layer<S>(provider: &SdkTracerProvider) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    // Every span is made in this file: its source location and target
    // would say nothing (events keep their target).
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("gatehouse"))
        .with_location(false)
        .with_target(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(Targets::new().with_target("gatehouse", Level::INFO))
}

/// Exports what is still queued and stops the exporter (at most 5 s). On a
/// thread of its own: it blocks, and the exporter's blocking HTTP client
/// must not be waited on inside the async runtime.
pub(super) fn shut_down(provider: SdkTracerProvider) {
    let done = std::thread::spawn(move || provider.shutdown()).join();
    if let Ok(Err(e)) = done {
        tracing::warn!(error = %e, "traces not all exported at shutdown");
    }
}

/// The span of one request (called only when traces are on; the logs'
/// plain `request{id}` span is made otherwise). The `otel.*` fields name the
/// span and its kind for OpenTelemetry; the text log line leaves them out.
pub(super) fn request_span(id: &str, method: &Method, path: &str) -> Span {
    let span = tracing::info_span!(
        "request",
        id,
        otel.name = %format_args!("{method} {}", route_group(path)),
        otel.kind = "server"
    );
    span.set_attribute("http.request.method", method.as_str().to_string());
    span.set_attribute("url.path", path.to_string());
    span.set_attribute(
        "http.request.header.x-request-id",
        Value::Array(Array::String(vec![id.to_string().into()])),
    );
    span
}

/// Records the status of the current request's response (in its span).
pub(super) fn request_answered(status: u16) {
    if !on() {
        return;
    }
    let span = Span::current();
    span.set_attribute("http.response.status_code", i64::from(status));
    if status >= 500 {
        span.set_status(Status::error(""));
    }
}

/// A call to an IdP's `endpoint` (`token`, `userinfo`, `discovery`, `jwks`,
/// `par`, `revocation`), `provider` its configured name.
pub fn idp_span(provider: &str, endpoint: &'static str) -> Span {
    if !on() {
        return Span::none();
    }
    let span = tracing::info_span!(
        "idp",
        otel.name = %format_args!("idp {endpoint}"),
        otel.kind = "client"
    );
    span.set_attribute("gatehouse.idp.provider", provider.to_string());
    span.set_attribute("gatehouse.idp.endpoint", endpoint);
    span
}

/// A relayed call to `remote` (its `API_REMOTES` name).
pub fn relay_span(remote: &str, method: &Method) -> Span {
    if !on() {
        return Span::none();
    }
    let span = tracing::info_span!(
        "relay",
        otel.name = %format_args!("relay {remote}"),
        otel.kind = "client"
    );
    span.set_attribute("gatehouse.relay.remote", remote.to_string());
    span.set_attribute("http.request.method", method.as_str().to_string());
    span
}

/// A session-store operation `op` (`load`, `write`, `create`, `delete`) on
/// `store` (`memory`, `sqlite`, `redis`, `postgres`).
pub fn store_span(store: &'static str, op: &'static str) -> Span {
    if !on() {
        return Span::none();
    }
    let span = tracing::info_span!(
        "store",
        otel.name = %format_args!("store {op}"),
        otel.kind = if store == "memory" { "internal" } else { "client" }
    );
    span.set_attribute("db.system.name", store);
    span.set_attribute("db.operation.name", op);
    span
}

/// How a call in `span` ended: the status it was answered with, or `None`
/// when no answer came. 4xx and 5xx mark the span as failed.
pub fn answered(span: &Span, status: Option<u16>) {
    if !on() || span.is_disabled() {
        return;
    }
    match status {
        Some(status) => {
            span.set_attribute("http.response.status_code", i64::from(status));
            if status >= 400 {
                span.set_status(Status::error(""));
            }
        }
        None => span.set_status(Status::error("no answer")),
    }
}

/// Marks the operation of `span` as failed.
pub fn failed(span: &Span) {
    if on() && !span.is_disabled() {
        span.set_status(Status::error(""));
    }
}

/// Adds the current span's trace context (W3C `traceparent`, and
/// `tracestate` if any) to the headers of a call about to be made in it;
/// nothing while traces are off.
pub fn inject(headers: &mut HeaderMap) {
    if !on() {
        return;
    }
    let context = Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut Headers(headers))
    });
}

/// [`inject`] for a request being built.
pub fn propagated(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    if !on() {
        return request;
    }
    let mut headers = HeaderMap::new();
    inject(&mut headers);
    request.headers(headers)
}

struct Headers<'a>(&'a mut HeaderMap);

impl Injector for Headers<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<Option<Settings>, String> {
        Settings::read(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn off_unless_an_endpoint_is_set() {
        assert_eq!(read(&[]), Ok(None));
        assert_eq!(read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]), Ok(None));
        assert_eq!(
            read(&[
                ("OTEL_SERVICE_NAME", "x"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
            ]),
            Ok(None),
            "nothing else turns traces on, nor is checked while they are off"
        );
        assert_eq!(
            read(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_SDK_DISABLED", "TRUE")
            ]),
            Ok(None)
        );
    }

    #[test]
    fn the_general_endpoint_is_a_base_and_the_traces_one_is_taken_as_it_is() {
        let on = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")])
            .unwrap()
            .unwrap();
        assert_eq!(
            on,
            Settings {
                endpoint: "http://collector:4318/v1/traces".into(),
                protocol: Protocol::HttpBinary,
                service: "gatehouse".into(),
            }
        );
        let on = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://wrong:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://c.example/otlp/traces",
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_SERVICE_NAME", "bff-eu"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(on.endpoint, "https://c.example/otlp/traces");
        assert_eq!(on.protocol, Protocol::HttpJson);
        assert_eq!(on.service, "bff-eu");
        let on = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(on.protocol, Protocol::HttpBinary);
    }

    #[test]
    fn what_the_exporter_would_quietly_replace_is_refused_by_name() {
        for (name, value) in [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "grpc://c:4317"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/?k=secret"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "/v1/traces"),
        ] {
            let e = read(&[(name, value)]).unwrap_err();
            assert!(e.starts_with(&format!("{name} is invalid")), "{e}");
            assert!(!e.contains("secret"), "{e}");
        }
        let e = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ])
        .unwrap_err();
        assert!(
            e.starts_with("OTEL_EXPORTER_OTLP_PROTOCOL=\"grpc\" is invalid"),
            "{e}"
        );
    }

    /// Off, no span is made and no header added: the cost is the check.
    #[test]
    fn off_nothing_is_made_or_sent() {
        assert!(!on());
        assert!(idp_span("default", "token").is_none());
        assert!(relay_span("api", &Method::GET).is_none());
        assert!(store_span("memory", "load").is_none());
        let mut headers = HeaderMap::new();
        inject(&mut headers);
        assert!(headers.is_empty());
    }
}
