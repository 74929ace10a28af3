//! Traces (OpenTelemetry over OTLP/HTTP): the real binary exports to a
//! minimal OTLP/HTTP JSON receiver started here. Between the binary and the
//! dev IdP sits a recording pass-through (`OIDC_BACKCHANNEL_BASE_URL`), and a
//! relayed API records what reaches it, so the `traceparent` headers are
//! checked where they arrive, against the spans that were exported.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::any,
    Json, Router,
};
use serde_json::{json, Value};

use crate::helpers::*;

/// A request as it arrived somewhere: method, path, its `traceparent`.
#[derive(Clone, Debug)]
struct Arrived {
    method: String,
    path: String,
    traceparent: Option<String>,
}

type Log = Arc<Mutex<Vec<Arrived>>>;

fn arrived(log: &Log, method: &Method, uri: &Uri, headers: &HeaderMap) {
    log.lock().unwrap().push(Arrived {
        method: method.to_string(),
        path: uri.path().to_string(),
        traceparent: headers
            .get("traceparent")
            .map(|v| v.to_str().unwrap().to_string()),
    });
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    base
}

/// A minimal OTLP/HTTP receiver: every request is logged, and the JSON
/// bodies POSTed to `/v1/traces` are kept.
#[derive(Clone, Default)]
struct Receiver {
    requests: Log,
    bodies: Arc<Mutex<Vec<String>>>,
}

async fn receive(
    State(r): State<Receiver>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    arrived(&r.requests, &method, &uri, &headers);
    if method != Method::POST || uri.path() != "/v1/traces" {
        return StatusCode::NOT_FOUND.into_response();
    }
    assert_eq!(
        headers["content-type"], "application/json",
        "OTEL_EXPORTER_OTLP_PROTOCOL=http/json"
    );
    r.bodies
        .lock()
        .unwrap()
        .push(String::from_utf8(body.to_vec()).unwrap());
    // An empty ExportTraceServiceResponse: everything accepted.
    Json(json!({})).into_response()
}

async fn start_receiver() -> (String, Receiver) {
    let receiver = Receiver::default();
    let router = Router::new()
        .fallback(any(receive))
        .with_state(receiver.clone());
    (serve(router).await, receiver)
}

/// The dev IdP behind a pass-through that logs what the binary sends it.
#[derive(Clone)]
struct Passage {
    idp: String,
    http: reqwest::Client,
    seen: Log,
}

async fn pass(
    State(p): State<Passage>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    arrived(&p.seen, &method, &uri, &headers);
    let target = format!(
        "{}{}",
        p.idp,
        uri.path_and_query().map(|pq| pq.as_str()).unwrap_or("/")
    );
    let mut request = p.http.request(method, target).body(body);
    // `Host` too: the dev IdP names its endpoints after it, so the binary
    // keeps calling through here (as behind a split network's internal name).
    for (name, value) in &headers {
        if !matches!(
            name.as_str(),
            "content-length" | "connection" | "transfer-encoding"
        ) {
            request = request.header(name, value);
        }
    }
    let answer = request.send().await.unwrap();
    let status = answer.status();
    let mut out = HeaderMap::new();
    for (name, value) in answer.headers() {
        if !matches!(
            name.as_str(),
            "content-length" | "connection" | "transfer-encoding"
        ) {
            out.append(name, value.clone());
        }
    }
    let body = answer.bytes().await.unwrap();
    (status, out, body).into_response()
}

async fn start_passage(idp: &Idp) -> (String, Log) {
    let passage = Passage {
        idp: format!("http://{}:{}", idp.host, idp.port),
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        seen: Log::default(),
    };
    let seen = passage.seen.clone();
    let router = Router::new().fallback(any(pass)).with_state(passage);
    (serve(router).await, seen)
}

/// A relayed API that logs what reaches it and answers 200.
async fn start_upstream() -> (String, Log) {
    let log = Log::default();
    let router = Router::new()
        .fallback(any(
            |State(log): State<Log>, method: Method, uri: Uri, headers: HeaderMap| async move {
                arrived(&log, &method, &uri, &headers);
                Json(json!({"ok": true}))
            },
        ))
        .with_state(log.clone());
    (serve(router).await, log)
}

/// One exported span, from the OTLP JSON.
#[derive(Clone, Debug)]
struct Span {
    trace: String,
    id: String,
    parent: String,
    name: String,
    kind: i64,
    status: i64,
    attributes: HashMap<String, String>,
}

impl Span {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// An attribute's value as text (strings, numbers, booleans; an array's
/// values joined by `,`).
fn value_text(value: &Value) -> String {
    if let Some(array) = value.get("arrayValue") {
        let values = array["values"].as_array().cloned().unwrap_or_default();
        return values.iter().map(value_text).collect::<Vec<_>>().join(",");
    }
    for key in ["stringValue", "intValue", "boolValue", "doubleValue"] {
        match value.get(key) {
            Some(Value::String(s)) => return s.clone(),
            Some(other) if !other.is_null() => return other.to_string(),
            _ => {}
        }
    }
    value.to_string()
}

fn number(value: &Value) -> i64 {
    match value {
        Value::Number(n) => n.as_i64().unwrap(),
        Value::String(s) => s.parse().unwrap(),
        _ => 0,
    }
}

/// Every span of every export, and the resources' attributes.
fn parse(bodies: &[String]) -> (Vec<Span>, Vec<HashMap<String, String>>) {
    let mut spans = Vec::new();
    let mut resources = Vec::new();
    for body in bodies {
        let export: Value = serde_json::from_str(body).unwrap();
        for resource_spans in export["resourceSpans"].as_array().unwrap() {
            resources.push(attributes(&resource_spans["resource"]["attributes"]));
            for scope in resource_spans["scopeSpans"].as_array().unwrap() {
                for span in scope["spans"].as_array().unwrap() {
                    spans.push(Span {
                        trace: span["traceId"].as_str().unwrap().to_string(),
                        id: span["spanId"].as_str().unwrap().to_string(),
                        parent: span["parentSpanId"].as_str().unwrap_or("").to_string(),
                        name: span["name"].as_str().unwrap().to_string(),
                        kind: number(&span["kind"]),
                        status: span["status"].get("code").map(number).unwrap_or_default(),
                        attributes: attributes(&span["attributes"]),
                    });
                }
            }
        }
    }
    (spans, resources)
}

fn attributes(list: &Value) -> HashMap<String, String> {
    list.as_array()
        .map(|list| {
            list.iter()
                .map(|kv| {
                    (
                        kv["key"].as_str().unwrap().to_string(),
                        value_text(&kv["value"]),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The exported spans once `done` holds for them, polling for at most 15 s.
async fn spans_when(receiver: &Receiver, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
    let start = Instant::now();
    loop {
        let bodies = receiver.bodies.lock().unwrap().clone();
        let (spans, _) = parse(&bodies);
        if done(&spans) {
            return spans;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the spans never arrived; got {spans:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The request span of the request `id` (its `X-Request-Id`).
fn request_span<'a>(spans: &'a [Span], id: &str) -> Option<&'a Span> {
    spans
        .iter()
        .find(|s| s.attr("http.request.header.x-request-id") == Some(id))
}

/// Whether `ancestor` is `span`'s parent, or its parent's, and so on.
fn descends_from(spans: &[Span], span: &Span, ancestor: &Span) -> bool {
    let mut at = span;
    for _ in 0..32 {
        if at.parent.is_empty() {
            return false;
        }
        if at.parent == ancestor.id {
            return true;
        }
        match spans.iter().find(|s| s.id == at.parent) {
            Some(parent) => at = parent,
            None => return false,
        }
    }
    false
}

fn traceparent(span: &Span) -> String {
    format!("00-{}-{}-01", span.trace, span.id)
}

const SERVER: i64 = 2;
const CLIENT: i64 = 3;

#[tokio::test]
async fn a_login_is_one_trace_with_the_token_call_inside_and_no_secret_anywhere() {
    let idp = Idp::start_with(&[("IDP_EXPOSE_TOKENS_FOR_TESTS", "1")]).await;
    let (receiver_url, receiver) = start_receiver().await;
    let (passage, at_idp) = start_passage(&idp).await;
    let (upstream, at_api) = start_upstream().await;
    let remotes = format!("echo={upstream}/echo/");
    let (_process, app, _) = start_gatehouse(
        &idp,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver_url.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_SERVICE_NAME", "gatehouse-under-test"),
            ("OIDC_BACKCHANNEL_BASE_URL", passage.as_str()),
            ("API_REMOTES", remotes.as_str()),
            // The log lines' filter is not the spans': still exported.
            ("RUST_LOG", "error"),
        ],
    )
    .await;

    let callback = app.callback_url_for("alice", "alice", None).await;
    let code = query_param(&callback, "code").unwrap();
    let state = query_param(&callback, "state").unwrap();
    let signed_in = app.http.get(&callback).send().await.unwrap();
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let callback_id = signed_in.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let cookie = app.session_cookie().unwrap();
    let relayed = app.get_json("/api/remote/echo/report").await;
    assert_eq!(relayed.status(), StatusCode::OK);
    let relay_id = relayed.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();

    let spans = spans_when(&receiver, |spans| {
        let (Some(callback), Some(relay)) = (
            request_span(spans, &callback_id),
            request_span(spans, &relay_id),
        ) else {
            return false;
        };
        let inside = |request: &Span, name: &str| {
            spans
                .iter()
                .any(|s| s.name == name && descends_from(spans, s, request))
        };
        inside(callback, "idp token") && inside(relay, "relay echo")
    })
    .await;

    // The callback: a server span with its route group, path (no query),
    // status and request id, at the root of its trace.
    let callback = request_span(&spans, &callback_id).unwrap();
    assert_eq!(callback.name, "GET auth");
    assert_eq!(callback.kind, SERVER);
    assert_eq!(callback.attr("url.path"), Some("/auth/callback"));
    assert_eq!(callback.attr("http.request.method"), Some("GET"));
    assert_eq!(callback.attr("http.response.status_code"), Some("303"));
    assert!(callback.parent.is_empty(), "{callback:?}");

    // The token call: one client span inside the callback's trace, with
    // the provider, the endpoint and the IdP's answer.
    let token: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "idp token" && s.trace == callback.trace)
        .collect();
    assert_eq!(token.len(), 1, "one code exchange: {token:#?}");
    let token = token[0];
    assert!(descends_from(&spans, token, callback));
    assert_eq!(token.kind, CLIENT);
    assert_eq!(token.attr("gatehouse.idp.provider"), Some("default"));
    assert_eq!(token.attr("gatehouse.idp.endpoint"), Some("token"));
    assert_eq!(token.attr("http.response.status_code"), Some("200"));
    assert_eq!(token.status, 0, "unset: the call worked");

    // The IdP got the token call's own trace context.
    let token_calls: Vec<Arrived> = at_idp
        .lock()
        .unwrap()
        .iter()
        .filter(|a| a.method == "POST" && a.path.ends_with("/protocol/openid-connect/token"))
        .cloned()
        .collect();
    assert_eq!(token_calls.len(), 1, "{token_calls:?}");
    assert_eq!(
        token_calls[0].traceparent.as_deref(),
        Some(traceparent(token).as_str()),
        "the IdP's traceparent names the token span"
    );

    // Store operations of the callback are spans in its trace too.
    let stored: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name.starts_with("store ") && s.trace == callback.trace)
        .collect();
    assert!(!stored.is_empty(), "no store span in the callback's trace");
    for span in &stored {
        assert!(descends_from(&spans, span, callback));
        assert_eq!(span.attr("db.system.name"), Some("memory"));
    }

    // The relayed call: its request span, the relay span inside it, and the
    // API got the relay span's trace context.
    let relay_request = request_span(&spans, &relay_id).unwrap();
    assert_eq!(relay_request.name, "GET relay");
    assert_eq!(
        relay_request.attr("url.path"),
        Some("/api/remote/echo/report")
    );
    assert_eq!(relay_request.attr("http.response.status_code"), Some("200"));
    assert_ne!(relay_request.trace, callback.trace, "a trace per request");
    let relay = spans
        .iter()
        .find(|s| s.name == "relay echo" && descends_from(&spans, s, relay_request))
        .unwrap();
    assert_eq!(relay.kind, CLIENT);
    assert_eq!(relay.attr("gatehouse.relay.remote"), Some("echo"));
    assert_eq!(relay.attr("http.response.status_code"), Some("200"));
    let api_calls = at_api.lock().unwrap().clone();
    assert_eq!(api_calls.len(), 1, "{api_calls:?}");
    assert_eq!(api_calls[0].path, "/echo/report");
    assert_eq!(
        api_calls[0].traceparent.as_deref(),
        Some(traceparent(relay).as_str()),
        "the API's traceparent names the relay span"
    );

    // Every request span carries its status and request id.
    let requests: Vec<&Span> = spans.iter().filter(|s| s.kind == SERVER).collect();
    assert!(requests.len() >= 2);
    for request in &requests {
        assert!(
            request.attr("http.response.status_code").is_some(),
            "{request:?}"
        );
        assert!(
            request.attr("http.request.header.x-request-id").is_some(),
            "{request:?}"
        );
        assert!(
            !request.attr("url.path").unwrap().contains('?'),
            "{request:?}"
        );
    }

    // Nothing secret anywhere in any export: names, attributes, events.
    let issued: Value = reqwest::get(format!(
        "http://{}:{}/dev/issued-tokens",
        idp.host, idp.port
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let mut secrets = vec![cookie.clone(), code, state];
    for token in issued["tokens"].as_array().unwrap() {
        for kind in ["access_token", "refresh_token", "id_token"] {
            if let Some(value) = token[kind].as_str() {
                secrets.push(value.to_string());
            }
        }
    }
    assert!(secrets.len() >= 5, "the issued tokens are checked too");
    let bodies = receiver.bodies.lock().unwrap().clone();
    let (_, resources) = parse(&bodies);
    assert!(resources
        .iter()
        .all(|r| r.get("service.name").map(String::as_str) == Some("gatehouse-under-test")));
    for body in &bodies {
        assert!(!contains_jwt(body), "a JWT in an export");
        for secret in &secrets {
            assert!(!body.contains(secret.as_str()), "{secret:?} in an export");
        }
        assert!(!body.contains("gatehouse_session"), "a cookie in an export");
    }
}

/// The threads of process `pid` whose name starts with `prefix`.
fn threads_named(pid: u32, prefix: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

#[tokio::test]
async fn without_an_endpoint_nothing_is_exported_or_propagated() {
    let idp = Idp::start().await;
    let (passage, at_idp) = start_passage(&idp).await;
    let (upstream, at_api) = start_upstream().await;
    // Where an exporter would send by default (if that port is free here).
    let default_port = tokio::net::TcpListener::bind("127.0.0.1:4318").await.ok();
    let default_receiver = Receiver::default();
    if let Some(listener) = default_port {
        let router = Router::new()
            .fallback(any(receive))
            .with_state(default_receiver.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    }
    let remotes = format!("echo={upstream}/echo/");
    let (process, app, _) = start_gatehouse(
        &idp,
        &[
            // Every other OpenTelemetry setting, but no endpoint.
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_SERVICE_NAME", "gatehouse-under-test"),
            ("OIDC_BACKCHANNEL_BASE_URL", passage.as_str()),
            ("API_REMOTES", remotes.as_str()),
        ],
    )
    .await;
    assert_eq!(
        app.login("alice", "alice").await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        app.get_json("/api/remote/echo/report").await.status(),
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    let at_idp = at_idp.lock().unwrap().clone();
    assert!(
        at_idp.iter().any(|a| a.path.ends_with("/token")),
        "the IdP was reached through the pass-through: {at_idp:?}"
    );
    for arrived in at_idp.iter().chain(at_api.lock().unwrap().iter()) {
        assert_eq!(arrived.traceparent, None, "{arrived:?}");
    }
    assert_eq!(at_api.lock().unwrap().len(), 1);
    // No exporter was built: neither its thread nor its HTTP client's.
    assert_eq!(threads_named(process.id(), "OpenTelemetry"), 0);
    assert_eq!(threads_named(process.id(), "reqwest-interna"), 0);
    assert!(
        threads_named(process.id(), "gatehouse-log") == 1,
        "the check sees threads"
    );
    assert!(default_receiver.requests.lock().unwrap().is_empty());
}

#[tokio::test]
async fn spans_still_queued_at_shutdown_are_exported_before_the_process_exits() {
    let idp = Idp::start().await;
    let (receiver_url, receiver) = start_receiver().await;
    let (mut process, app, _) = start_gatehouse(
        &idp,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver_url.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            // Far beyond the test: only the shutdown can export.
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
        ],
    )
    .await;
    assert_eq!(threads_named(process.id(), "OpenTelemetry"), 1);
    let probe = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "last-request-before-shutdown")
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.bodies.lock().unwrap().is_empty(), "still queued");

    process.terminate();
    let status = process
        .exit_within(Duration::from_secs(15))
        .await
        .expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}");
    let (spans, _) = parse(&receiver.bodies.lock().unwrap());
    let span = request_span(&spans, "last-request-before-shutdown")
        .unwrap_or_else(|| panic!("not exported at shutdown: {spans:#?}"));
    assert_eq!(span.attr("url.path"), Some("/healthz"));
    assert_eq!(span.attr("http.response.status_code"), Some("200"));
    assert_eq!(span.name, "GET probes");
}

#[tokio::test]
async fn a_bad_opentelemetry_setting_stops_start_up_naming_it() {
    for (settings, named) in [
        (
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ][..],
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
        (
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")][..],
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ),
    ] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .envs(settings.iter().copied())
            .env("SESSION_STORE", "memory")
            .env("APP_DATABASE_URL", "sqlite::memory:")
            .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{}", free_port()))
            .stdin(std::process::Stdio::null())
            .output();
        let out = tokio::time::timeout(Duration::from_secs(20), out)
            .await
            .expect("exits at once")
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{settings:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with(&format!("configuration error: {named}")),
            "{stderr}"
        );
    }
}
