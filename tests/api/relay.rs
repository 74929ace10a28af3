//! Token relay: a small upstream started here records exactly what reached it
//! and checks the bearer token with the real dev IdP (userinfo), so "the token
//! is valid" is the IdP's word, not ours.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc, Mutex,
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

#[derive(Clone)]
struct Upstream {
    userinfo: String,
    /// The next `/flaky/` request gets a 401 (a token the API stopped accepting).
    reject_next: Arc<AtomicBool>,
    /// Every bearer token seen, in order.
    tokens: Arc<Mutex<Vec<String>>>,
}

async fn echo(
    State(up): State<Upstream>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    if let Some(token) = &bearer {
        up.tokens.lock().unwrap().push(token.clone());
    }
    if uri.path().starts_with("/always401/") {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if uri.path().starts_with("/flaky/") && up.reject_next.swap(false, Ordering::SeqCst) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let valid = match &bearer {
        Some(token) => reqwest::Client::new()
            .get(&up.userinfo)
            .bearer_auth(token)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success()),
        None => false,
    };
    let names: Vec<String> = headers.keys().map(|k| k.as_str().to_string()).collect();
    let mut response = Json(json!({
        "method": method.as_str(),
        "path": uri.path(),
        "query": uri.query(),
        "body": String::from_utf8_lossy(&body),
        "token_valid_at_idp": valid,
        "header_names": names,
        "cookie": headers.get("cookie").map(|v| v.to_str().unwrap_or_default()),
    }))
    .into_response();
    response
        .headers_mut()
        .insert("set-cookie", "upstream=evil; Path=/".parse().unwrap());
    response
        .headers_mut()
        .insert("x-upstream", "yes".parse().unwrap());
    response
}

async fn start_upstream(idp: &Idp) -> (String, Upstream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let up = Upstream {
        userinfo: format!("{}/protocol/openid-connect/userinfo", idp.issuer),
        reject_next: Arc::new(AtomicBool::new(false)),
        tokens: Arc::new(Mutex::new(Vec::new())),
    };
    let router = Router::new()
        .route("/{*path}", any(echo))
        .with_state(up.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (base, up)
}

async fn setup() -> (Idp, TestApp, Upstream) {
    let idp = Idp::start().await;
    let (upstream, up) = start_upstream(&idp).await;
    let remotes = format!(
        "echo={upstream}/echo/ GET,POST; flaky={upstream}/flaky/; dead={upstream}/always401/"
    );
    let app = spawn_app_with(&idp.issuer, &[("API_REMOTES", remotes.as_str())]).await;
    (idp, app, up)
}

/// A GET written byte for byte on a socket, with this browser's cookie;
/// returns the status code.
async fn raw_get(app: &TestApp, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app
        .base
        .trim_start_matches("http://")
        .replace("localhost", "127.0.0.1");
    let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let cookie = app.session_cookie().unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: gatehouse_session={cookie}\r\nX-CSRF: 1\r\nConnection: close\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).await.unwrap();
    answer[9..12].parse().unwrap()
}

fn refreshes(stats: &Value) -> i64 {
    stats["token_requests"]["refresh_token"].as_i64().unwrap()
}

#[tokio::test]
async fn the_relay_sends_the_users_token_and_nothing_of_the_browsers() {
    let (_idp, app, _up) = setup().await;
    assert_eq!(
        app.get_json("/api/remote/echo/x").await.status(),
        StatusCode::UNAUTHORIZED,
        "anonymous: nothing is relayed"
    );
    app.login("bob", "bob").await;

    let response = app
        .http
        .post(app.url("/api/remote/echo/reports/daily?month=11"))
        .header("X-CSRF", "1")
        .header("Authorization-Hint", "dropped")
        .header("Connection", "x-private")
        .header("X-Private", "hop-by-hop")
        .header("X-HTTP-Method-Override", "DELETE")
        .header("X-Original-URL", "/admin")
        .header("Forwarded", "for=203.0.113.9;host=evil.example")
        .header("X-Forwarded-For", "203.0.113.9")
        .header("X-Forwarded-Host", "evil.example")
        .header("Accept-Language", "fr")
        .json(&json!({"q": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-upstream"], "yes");
    assert!(
        response.headers().get("set-cookie").is_none(),
        "an upstream cannot set cookies on the app"
    );
    assert_eq!(response.headers()["cache-control"], "no-store");
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["path"], "/echo/reports/daily");
    assert_eq!(seen["query"], "month=11");
    assert_eq!(seen["body"], r#"{"q":1}"#);
    assert_eq!(
        seen["token_valid_at_idp"], true,
        "the user's access token, accepted by the IdP"
    );
    assert_eq!(seen["cookie"], Value::Null, "no cookie upstream");
    let names: Vec<&str> = seen["header_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    // An allow-list: content negotiation, the request id, and what the
    // relay's own client sets (the token, host, length) — nothing else.
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        [
            "accept",
            "accept-language",
            "authorization",
            "content-length",
            "content-type",
            "host",
            "x-request-id"
        ],
        "{names:?}"
    );

    // Only allow-listed names and methods, and no climbing out of the prefix.
    assert_eq!(
        app.get_json("/api/remote/nope/x").await.status(),
        StatusCode::NOT_FOUND
    );
    let delete = app
        .http
        .delete(app.url("/api/remote/echo/x"))
        .header("X-CSRF", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), StatusCode::METHOD_NOT_ALLOWED);
    // Sent raw: an HTTP client library would resolve the dot-segments itself.
    for path in [
        "/api/remote/echo/%2e%2e/always401/x",
        "/api/remote/echo/../always401/x",
        "/api/remote/echo/a%2F..%2F..%2Falways401/x",
        "/api/remote/echo/a%5C..%5Calways401/x",
    ] {
        assert_eq!(raw_get(&app, path).await, 400, "{path}");
    }
    // The relay rides on the cookie: without the anti-forgery header, nothing.
    assert_eq!(
        app.get("/api/remote/echo/x").await.status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn an_upstream_401_means_one_refresh_and_one_retry() {
    let (idp, app, up) = setup().await;
    app.login("bob", "bob").await;
    let before = refreshes(&idp.stats().await);
    up.reject_next.store(true, Ordering::SeqCst);

    let response = app.get_json("/api/remote/flaky/x").await;
    assert_eq!(response.status(), StatusCode::OK);
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["token_valid_at_idp"], true);
    assert_eq!(refreshes(&idp.stats().await), before + 1);
    let tokens = up.tokens.lock().unwrap().clone();
    assert_eq!(tokens.len(), 2);
    assert_ne!(
        tokens[0], tokens[1],
        "the retry carried the refreshed token"
    );
    assert_eq!(
        app.get_json("/auth/user").await.status(),
        StatusCode::OK,
        "still signed in"
    );
}

#[tokio::test]
async fn an_upstream_that_refuses_a_fresh_token_ends_the_session() {
    let (idp, app, up) = setup().await;
    app.login("bob", "bob").await;
    let before = refreshes(&idp.stats().await);

    let response = app.get_json("/api/remote/dead/x").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "session_ended");
    assert_eq!(
        refreshes(&idp.stats().await),
        before + 1,
        "exactly one refresh"
    );
    assert_eq!(up.tokens.lock().unwrap().len(), 2, "exactly one retry");
    assert_eq!(
        app.get_json("/auth/user").await.status(),
        StatusCode::UNAUTHORIZED
    );
}

/// A body the relay cannot read is not relayed, and the answer says why:
/// streamed past 64 KiB without a declared length, a 413; broken off on the
/// wire (a chunk size that is not one), a 400 `invalid_request`, not "too
/// large". The upstream sees neither, and the session stays.
#[tokio::test]
async fn a_body_the_relay_cannot_read_is_not_relayed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_idp, app, up) = setup().await;
    app.login("bob", "bob").await;

    let chunks: Vec<Result<String, std::io::Error>> =
        (0..100).map(|_| Ok("y".repeat(1024))).collect();
    let too_large = app
        .http
        .post(app.url("/api/remote/echo/upload"))
        .header("X-CSRF", "1")
        .header("Content-Type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(too_large.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = too_large.json().await.unwrap();
    assert_eq!(body["error"], "payload_too_large");

    let addr = app
        .base
        .trim_start_matches("http://")
        .replace("localhost", "127.0.0.1");
    let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let cookie = app.session_cookie().unwrap();
    let request = format!(
        "POST /api/remote/echo/upload HTTP/1.1\r\nHost: {addr}\r\nCookie: gatehouse_session={cookie}\r\nX-CSRF: 1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{{\"q\":\r\nzz\r\n"
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("\"invalid_request\""), "{answer}");

    assert!(
        up.tokens.lock().unwrap().is_empty(),
        "nothing reached the upstream"
    );
    assert_eq!(app.get_json("/auth/user").await.status(), StatusCode::OK);
}
