//! Per-API access tokens (RFC 8707 resource indicators) against the dev IdP,
//! which knows two APIs: the app's own notes API (`http://localhost:3000/api`)
//! and a reports API (`http://localhost:3000/reports`). A remote with `aud=`
//! gets a token issued for it alone; the app's notes API itself refuses the
//! reports API's token (RFC 9700 §2.3: audience restriction), so one API
//! cannot replay what it receives at another.

use std::sync::{Arc, Mutex};

use axum::{extract::State, http::HeaderMap, routing::any, Router};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use reqwest::StatusCode;
use serde_json::Value;

use crate::{helpers::*, on_every_store};

const NOTES_API: &str = "http://localhost:3000/api";
const REPORTS_API: &str = "http://localhost:3000/reports";

/// An upstream that records each (path, bearer token) it is sent; under
/// `/deny/` it refuses every token with 401.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

async fn record(
    State(seen): State<Seen>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> (StatusCode, &'static str) {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    seen.lock().unwrap().push((uri.path().to_string(), bearer));
    if uri.path().starts_with("/deny/") {
        return (StatusCode::UNAUTHORIZED, "");
    }
    (StatusCode::OK, "{}")
}

async fn start_upstream() -> (String, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let seen = Seen::default();
    let router = Router::new()
        .route("/{*path}", any(record))
        .with_state(seen.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (base, seen)
}

async fn setup() -> (Idp, TestApp, Seen) {
    setup_on(&[]).await
}

/// [`setup`] with more settings (a store of the test's own).
async fn setup_on(more: &[(&str, &str)]) -> (Idp, TestApp, Seen) {
    let idp = Idp::start().await;
    let (upstream, seen) = start_upstream().await;
    let remotes = format!(
        "notes={upstream}/notes/ GET aud={NOTES_API}; \
         reports={upstream}/reports/ GET aud={REPORTS_API}; \
         deny={upstream}/deny/ GET aud={REPORTS_API}; \
         plain={upstream}/plain/ GET"
    );
    let mut settings = vec![
        ("API_REMOTES", remotes.as_str()),
        ("API_AUDIENCE", NOTES_API),
        // The API scopes are asked for at sign-in; each resource's token
        // carries its own (RFC 8707 §2.2).
        (
            "OIDC_SCOPES",
            "openid profile email offline_access notes:read reports:read",
        ),
    ];
    settings.extend_from_slice(more);
    let app = spawn_app_with(&idp.issuer, &settings).await;
    app.login("alice", "alice").await;
    (idp, app, seen)
}

/// The last token `seen` at a path under `prefix`.
fn last_token(seen: &Seen, prefix: &str) -> String {
    seen.lock()
        .unwrap()
        .iter()
        .rev()
        .find(|(path, _)| path.starts_with(prefix))
        .map(|(_, token)| token.clone())
        .unwrap_or_else(|| panic!("nothing reached {prefix}"))
}

fn payload(jwt: &str) -> Value {
    let part = jwt
        .split('.')
        .nth(1)
        .unwrap_or_else(|| panic!("not a JWT: {jwt}"));
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn refreshes(stats: &Value) -> i64 {
    stats["token_requests"]["refresh_token"].as_i64().unwrap()
}

async fn relay_ok(app: &TestApp, path: &str) {
    let response = app.get_json(path).await;
    let status = response.status();
    assert_eq!(
        status,
        StatusCode::OK,
        "{path}: {}",
        response.text().await.unwrap()
    );
}

#[tokio::test]
async fn each_api_gets_a_token_issued_for_it_alone() {
    let (idp, app, seen) = setup().await;
    let before = refreshes(&idp.stats().await);

    relay_ok(&app, "/api/remote/reports/q").await;
    relay_ok(&app, "/api/remote/notes/q").await;
    relay_ok(&app, "/api/remote/plain/q").await;
    let reports = last_token(&seen, "/reports/");
    let notes = last_token(&seen, "/notes/");
    let plain = last_token(&seen, "/plain/");
    assert_eq!(payload(&reports)["aud"], REPORTS_API);
    assert_eq!(payload(&reports)["scope"], "reports:read");
    assert_eq!(payload(&notes)["aud"], NOTES_API);
    assert_eq!(payload(&notes)["scope"], "notes:read");
    assert!(
        plain.split('.').count() != 3,
        "a remote without aud= gets the session's own (opaque) token"
    );
    assert_eq!(
        refreshes(&idp.stats().await),
        before + 2,
        "one grant per API"
    );

    // Held, not fetched again, while it is fresh.
    relay_ok(&app, "/api/remote/reports/again").await;
    assert_eq!(last_token(&seen, "/reports/"), reports);
    assert_eq!(refreshes(&idp.stats().await), before + 2);

    // The app's own notes API takes the token issued for it, and refuses
    // the one issued for the reports API.
    let own = reqwest::Client::new()
        .get(app.url("/api/notes"))
        .bearer_auth(&notes)
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), StatusCode::OK);
    let replayed = reqwest::Client::new()
        .get(app.url("/api/notes"))
        .bearer_auth(&reports)
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), StatusCode::UNAUTHORIZED);

    // Each grant rotated the refresh token; the session kept the newest, so
    // its own token still refreshes (dev IdP: a rotated one is refused).
    app.wait(std::time::Duration::from_secs(301));
    let info = app.get_json("/auth/userinfo").await;
    assert_eq!(info.status(), StatusCode::OK);
    // And each API's token, expired, is got again for that API alone.
    relay_ok(&app, "/api/remote/reports/later").await;
    let later = last_token(&seen, "/reports/");
    assert_ne!(later, reports);
    assert_eq!(payload(&later)["aud"], REPORTS_API);
    assert_eq!(refreshes(&idp.stats().await), before + 4);
    assert_eq!(app.get_json("/auth/user").await.status(), StatusCode::OK);
}

/// Many calls at once to an API whose token the session does not hold yet:
/// one grant, one token for all of them — on every store (the single flight
/// is the store's session lock, and the token goes back with a
/// compare-and-set write).
async fn concurrent_calls_get_one_token_for_their_api(kind: StoreKind) {
    let store = TestStore::start(kind).await;
    let (idp, app, seen) = setup_on(&[("SESSION_STORE", store.url.as_str())]).await;
    let before = refreshes(&idp.stats().await);
    let calls = (0..8).map(|i| {
        let app = &app;
        async move {
            app.get_json(&format!("/api/remote/reports/{i}"))
                .await
                .status()
        }
    });
    let statuses = futures::future::join_all(calls).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    assert_eq!(refreshes(&idp.stats().await), before + 1);
    let tokens: std::collections::BTreeSet<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, token)| token.clone())
        .collect();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
}

/// An API that refuses the token just issued for it is what is wrong, not
/// the session (the grant has just worked): one retry with a new token for
/// it, then 502 `upstream_token_unavailable`, and the session stays.
#[tokio::test]
async fn an_api_refusing_its_own_fresh_token_does_not_end_the_session() {
    let (idp, app, seen) = setup().await;
    let before = refreshes(&idp.stats().await);
    let response = app.get_json("/api/remote/deny/q").await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "upstream_token_unavailable", "{body}");
    let sent: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, t)| t.clone())
        .collect();
    assert_eq!(sent.len(), 2, "one retry");
    assert_ne!(sent[0], sent[1], "the retry carries a new token");
    assert_eq!(refreshes(&idp.stats().await), before + 2);
    assert_eq!(app.get_json("/auth/user").await.status(), StatusCode::OK);
}

on_every_store!(concurrent_calls_get_one_token_for_their_api);
