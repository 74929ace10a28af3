//! DPoP (RFC 9449) at our API: a token bound to a key (the dev IdP binds
//! the machine client's token to the key of the proof it was asked with)
//! counts only with a fresh proof of that key for this very request, never as
//! a plain bearer token, and a proof counts once — across instances on Redis.

use gatehouse::auth::dpop::DpopKey;
use reqwest::{header, Method, StatusCode};
use serde_json::Value;

use crate::{helpers::*, on_every_store};

const DEV_API_AUDIENCE: &str = "http://localhost:3000/api";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A machine token bound to `key`: client credentials with a DPoP proof,
/// once more with the nonce the IdP asks for (§8).
async fn bound_token(idp: &Idp, key: &DpopKey) -> String {
    let url = url::Url::parse(&format!(
        "{}/protocol/openid-connect/token",
        idp.issuer.replace("localhost", &idp.host)
    ))
    .unwrap();
    let mut nonce: Option<String> = None;
    for _ in 0..2 {
        let response = reqwest::Client::new()
            .post(url.clone())
            .basic_auth("gatehouse-m2m", Some("gatehouse-m2m-secret"))
            .header(
                "DPoP",
                key.proof("POST", &url, None, nonce.as_deref(), now()),
            )
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", "notes:read"),
            ])
            .send()
            .await
            .unwrap();
        let fresh = response
            .headers()
            .get("dpop-nonce")
            .map(|v| v.to_str().unwrap().to_string());
        let body: Value = response.json().await.unwrap();
        if body["error"] == "use_dpop_nonce" {
            nonce = fresh;
            continue;
        }
        assert_eq!(body["token_type"], "DPoP", "{body}");
        return body["access_token"].as_str().unwrap().to_string();
    }
    panic!("the IdP kept asking for a nonce");
}

async fn call(app: &TestApp, scheme: &str, token: &str, proofs: &[String]) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .request(Method::GET, app.url("/api/notes"))
        .header(header::AUTHORIZATION, format!("{scheme} {token}"));
    for proof in proofs {
        request = request.header("DPoP", proof);
    }
    request.send().await.unwrap()
}

fn notes_url(app: &TestApp) -> url::Url {
    url::Url::parse(&app.url("/api/notes")).unwrap()
}

async fn refused_as(response: reqwest::Response, error: &str) {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = response.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .to_string();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], error, "{body}");
    assert!(
        challenge.contains(&format!("error=\"{error}\"")),
        "{challenge}"
    );
    if error == "invalid_dpop_proof" {
        assert!(
            challenge.starts_with("DPoP ") && challenge.contains("algs=\"ES256"),
            "{challenge}"
        );
    }
}

#[tokio::test]
async fn a_bound_token_counts_only_with_a_fresh_proof_of_its_key_for_this_request() {
    let idp = Idp::start().await;
    let app = spawn_app_with(&idp.issuer, &[("API_AUDIENCE", DEV_API_AUDIENCE)]).await;
    let key = DpopKey::generate();
    let token = bound_token(&idp, &key).await;
    let url = notes_url(&app);

    let proof = key.proof("GET", &url, Some(&token), None, now());
    let ok = call(&app, "DPoP", &token, std::slice::from_ref(&proof)).await;
    assert_eq!(ok.status(), StatusCode::OK, "{}", ok.text().await.unwrap());

    // The same proof again: a replay.
    refused_as(
        call(&app, "DPoP", &token, &[proof]).await,
        "invalid_dpop_proof",
    )
    .await;
    // No downgrade: the bound token as a bearer token, or without a proof.
    refused_as(call(&app, "Bearer", &token, &[]).await, "invalid_token").await;
    refused_as(call(&app, "DPoP", &token, &[]).await, "invalid_dpop_proof").await;
    // A proof of another key, for another URL or method, for another token,
    // from too long ago, or two proofs at once.
    let other = DpopKey::generate();
    let elsewhere = url::Url::parse(&app.url("/api/admin/users")).unwrap();
    let wrong = [
        other.proof("GET", &url, Some(&token), None, now()),
        key.proof("GET", &elsewhere, Some(&token), None, now()),
        key.proof("POST", &url, Some(&token), None, now()),
        key.proof("GET", &url, Some("another-token"), None, now()),
        key.proof("GET", &url, Some(&token), None, now() - 300),
        key.proof("GET", &url, None, None, now()),
    ];
    for proof in wrong {
        refused_as(
            call(&app, "DPoP", &token, &[proof]).await,
            "invalid_dpop_proof",
        )
        .await;
    }
    let two = [
        key.proof("GET", &url, Some(&token), None, now()),
        key.proof("GET", &url, Some(&token), None, now()),
    ];
    refused_as(call(&app, "DPoP", &token, &two).await, "invalid_dpop_proof").await;

    // An unbound token does not become bound by a proof.
    let plain = idp
        .post_form(
            "/protocol/openid-connect/token",
            ("gatehouse-m2m", "gatehouse-m2m-secret"),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "notes:read"),
            ],
        )
        .await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let proof = key.proof("GET", &url, Some(&plain), None, now());
    refused_as(call(&app, "DPoP", &plain, &[proof]).await, "invalid_token").await;
    assert_eq!(
        call(&app, "Bearer", &plain, &[]).await.status(),
        StatusCode::OK
    );
}

/// The same proof sent eight times at once, to two instances behind one
/// public URL sharing the store: exactly one is accepted (on Redis and
/// Postgres across the instances; the memory and SQLite stores keep the replay cache per
/// process, as each runs alone).
async fn a_proof_sent_at_once_many_times_counts_once(kind: StoreKind) {
    let idp = Idp::start().await;
    let store = TestStore::start(kind).await;
    let settings = [
        ("API_AUDIENCE", DEV_API_AUDIENCE),
        ("SESSION_STORE", store.url.as_str()),
    ];
    let first = spawn_app_with(&idp.issuer, &settings).await;
    let second = match kind {
        StoreKind::Redis | StoreKind::Postgres => {
            let mut behind_one_url = settings.to_vec();
            behind_one_url.push(("APP_BASE_URL", first.base.as_str()));
            spawn_app_with(&idp.issuer, &behind_one_url).await
        }
        _ => first.same_browser(),
    };
    let key = DpopKey::generate();
    let token = bound_token(&idp, &key).await;
    let proof = key.proof("GET", &notes_url(&first), Some(&token), None, now());
    let calls = (0..8).map(|i| {
        let app = if i % 2 == 0 { &first } else { &second };
        let (token, proof) = (token.clone(), proof.clone());
        async move {
            reqwest::Client::new()
                .get(app.url("/api/notes"))
                .header(header::AUTHORIZATION, format!("DPoP {token}"))
                .header("DPoP", proof)
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    let statuses = futures::future::join_all(calls).await;
    let accepted = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!(accepted, 1, "{kind:?}: {statuses:?}");
}

on_every_store!(a_proof_sent_at_once_many_times_counts_once);

/// What an upstream API received: (Authorization, DPoP) of each request.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// The nonce the recording upstream hands out under `/nonce/` (RFC 9449 §9).
const UPSTREAM_NONCE: &str = "upstream-nonce-1";

/// An upstream API that records what it receives; under `/nonce/` it wants
/// proofs with its nonce, and answers 401 `use_dpop_nonce` with the nonce
/// to any other.
async fn start_recording_upstream() -> (String, Received) {
    use axum::{
        extract::State,
        http::{HeaderMap, StatusCode as Status, Uri},
        response::{IntoResponse, Response},
        routing::any,
        Router,
    };
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    async fn record(State(seen): State<Received>, uri: Uri, headers: HeaderMap) -> Response {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        seen.lock()
            .unwrap()
            .push((text("authorization"), text("dpop")));
        let proof_nonce = text("dpop")
            .split('.')
            .nth(1)
            .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
            .and_then(|p| serde_json::from_slice::<Value>(&p).ok())
            .and_then(|p| p["nonce"].as_str().map(str::to_string));
        if uri.path().starts_with("/nonce/") && proof_nonce.as_deref() != Some(UPSTREAM_NONCE) {
            return (
                Status::UNAUTHORIZED,
                [
                    ("www-authenticate", r#"DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof""#),
                    ("dpop-nonce", UPSTREAM_NONCE),
                ],
            )
                .into_response();
        }
        "{}".into_response()
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let seen = Received::default();
    let router = Router::new()
        .route("/{*path}", any(record))
        .with_state(seen.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (base, seen)
}

/// The last token an upstream received, and the key its proof was made with
/// (checked as our API checks one: method, URL, `ath`, and time on `app`'s
/// clock, which the test moves).
fn last_bound_call(app: &TestApp, seen: &Received, url: &str) -> (String, String) {
    let (authorization, proof) = seen
        .lock()
        .unwrap()
        .last()
        .cloned()
        .expect("a relayed call");
    let token = authorization
        .strip_prefix("DPoP ")
        .unwrap_or_else(|| panic!("not presented as DPoP: {authorization}"))
        .to_string();
    let url = url::Url::parse(url).unwrap();
    let now = app.clock.unix_now();
    let verified = gatehouse::auth::dpop::verify_proof(&proof, "GET", &url, &token, now)
        .unwrap_or_else(|why| panic!("{why}"));
    (token, verified.jkt)
}

/// `OIDC_DPOP=1`: each session gets a key of its own at sign-in; the dev IdP
/// (which requires its nonce) binds the session's tokens to it at the code
/// and refresh grants; userinfo and relayed APIs get `DPoP` tokens with a
/// fresh proof each. The token alone — as a thief would hold it — is refused
/// by the IdP, as a bearer token and with a proof of another key.
#[tokio::test]
async fn with_dpop_the_sessions_tokens_are_useless_without_its_key() {
    let idp = Idp::start().await;
    let (upstream, seen) = start_recording_upstream().await;
    let remotes = format!("echo={upstream}/echo/ GET; nonced={upstream}/nonce/ GET");
    let app = spawn_app_with(
        &idp.issuer,
        &[("OIDC_DPOP", "1"), ("API_REMOTES", remotes.as_str())],
    )
    .await;
    app.login("alice", "alice").await;
    assert_eq!(
        app.get_json("/auth/userinfo").await.status(),
        StatusCode::OK
    );

    let relayed = format!("{upstream}/echo/x");
    assert_eq!(
        app.get_json("/api/remote/echo/x").await.status(),
        StatusCode::OK
    );
    let (token, jkt) = last_bound_call(&app, &seen, &relayed);
    assert_eq!(
        app.get_json("/api/remote/echo/x").await.status(),
        StatusCode::OK
    );
    let (again, same_key) = last_bound_call(&app, &seen, &relayed);
    assert_eq!(
        (again.as_str(), same_key.as_str()),
        (token.as_str(), jkt.as_str())
    );

    // An API that wants its nonce: asked once, then given, with no refresh.
    let before = idp.stats().await["token_requests"]["refresh_token"].as_u64();
    assert_eq!(
        app.get_json("/api/remote/nonced/x").await.status(),
        StatusCode::OK
    );
    let nonced = format!("{upstream}/nonce/x");
    let (with_nonce, key_again) = last_bound_call(&app, &seen, &nonced);
    assert_eq!(
        (with_nonce.as_str(), key_again.as_str()),
        (token.as_str(), jkt.as_str())
    );
    let calls = seen.lock().unwrap().len();
    let (_, first_try) = seen.lock().unwrap()[calls - 2].clone();
    assert!(!first_try.is_empty(), "the first try carried a proof too");
    assert_eq!(
        idp.stats().await["token_requests"]["refresh_token"].as_u64(),
        before
    );
    // The API's nonce is kept: the next call carries it at once.
    let calls = seen.lock().unwrap().len();
    assert_eq!(
        app.get_json("/api/remote/nonced/x").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        seen.lock().unwrap().len(),
        calls + 1,
        "no second round trip"
    );

    // Another session, another key.
    let bob = app.second_browser();
    bob.login("bob", "bob").await;
    assert_eq!(
        bob.get_json("/api/remote/echo/x").await.status(),
        StatusCode::OK
    );
    assert_ne!(last_bound_call(&app, &seen, &relayed).1, jkt);

    // The stolen token alone, at the IdP's userinfo.
    let userinfo = format!(
        "{}/protocol/openid-connect/userinfo",
        idp.issuer.replace("localhost", &idp.host)
    );
    let as_bearer = reqwest::Client::new()
        .get(&userinfo)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(as_bearer.status(), StatusCode::UNAUTHORIZED);
    let thief = DpopKey::generate();
    let with_own_key = reqwest::Client::new()
        .get(&userinfo)
        .header(header::AUTHORIZATION, format!("DPoP {token}"))
        .header(
            "DPoP",
            thief.proof(
                "GET",
                &url::Url::parse(&userinfo).unwrap(),
                Some(&token),
                None,
                now(),
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(with_own_key.status(), StatusCode::UNAUTHORIZED);

    // After expiry the refresh grant carries a proof too: a new token, bound
    // to the same session key.
    app.wait(std::time::Duration::from_secs(301));
    assert_eq!(
        app.get_json("/auth/userinfo").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get_json("/api/remote/echo/x").await.status(),
        StatusCode::OK
    );
    let (renewed, still) = last_bound_call(&app, &seen, &relayed);
    assert_ne!(renewed, token);
    assert_eq!(still, jkt);
}

/// DPoP and per-API tokens together: the token the relay gets for one API
/// (`aud=`, RFC 8707, by a refresh grant with `resource`) is bound to the
/// session's key like the session's own (its `cnf.jkt` is the key the
/// proofs the API receives are made with), each API gets its own, and one
/// presented as a bearer token at our own API is refused.
#[tokio::test]
async fn a_token_for_one_api_is_bound_to_the_sessions_key_too() {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    const NOTES_API: &str = "http://localhost:3000/api";
    const REPORTS_API: &str = "http://localhost:3000/reports";
    let idp = Idp::start().await;
    let (upstream, seen) = start_recording_upstream().await;
    let remotes = format!(
        "reports={upstream}/echo/ GET aud={REPORTS_API}; notes={upstream}/echo/ GET aud={NOTES_API}"
    );
    let app = spawn_app_with(
        &idp.issuer,
        &[
            ("OIDC_DPOP", "1"),
            ("API_REMOTES", remotes.as_str()),
            ("API_AUDIENCE", NOTES_API),
            (
                "OIDC_SCOPES",
                "openid profile email offline_access notes:read reports:read",
            ),
        ],
    )
    .await;
    app.login("alice", "alice").await;
    let claims = |jwt: &str| -> Value {
        let part = jwt.split('.').nth(1).expect("a JWT access token");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    };
    let relayed = format!("{upstream}/echo/x");

    assert_eq!(
        app.get_json("/api/remote/reports/x").await.status(),
        StatusCode::OK
    );
    let (reports, jkt) = last_bound_call(&app, &seen, &relayed);
    assert_eq!(claims(&reports)["aud"], REPORTS_API);
    assert_eq!(claims(&reports)["cnf"]["jkt"], jkt.as_str(), "bound");

    assert_eq!(
        app.get_json("/api/remote/notes/x").await.status(),
        StatusCode::OK
    );
    let (notes, same_key) = last_bound_call(&app, &seen, &relayed);
    assert_ne!(notes, reports, "each API its own token");
    assert_eq!(claims(&notes)["aud"], NOTES_API);
    assert_eq!(
        (claims(&notes)["cnf"]["jkt"].as_str(), same_key.as_str()),
        (Some(jkt.as_str()), jkt.as_str()),
        "bound to the same session key"
    );

    // Our API takes tokens for it only with a proof of their key: the
    // notes token alone, as a thief would hold it, is refused.
    let stolen = reqwest::Client::new()
        .get(app.url("/api/notes"))
        .bearer_auth(&notes)
        .send()
        .await
        .unwrap();
    assert_eq!(stolen.status(), StatusCode::UNAUTHORIZED);
}
