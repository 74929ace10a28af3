//! Back-Channel Logout 1.0: the real dev IdP ends the app's session when the
//! user logs out at the IdP, and every malformed logout token is refused
//! (400) without touching the session.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::{header, StatusCode};
use serde_json::{json, Value};

use crate::{
    helpers::*,
    hostile_idp::{login_at, start_op, Defect, Op, ATTACKER_KEY, OP_KEY},
    on_every_store,
};

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn valid_claims(op: &Op, jti: &str) -> Value {
    json!({
        "iss": op.issuer, "aud": "gatehouse", "iat": now(), "exp": now() + 120,
        "jti": jti, "sub": "mallory", "events": { EVENT: {} },
    })
}

fn sign(claims: &Value, pem: &str, typ: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("op-key".into());
    header.typ = typ.map(str::to_string);
    encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn with(op: &Op, jti: &str, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let mut claims = valid_claims(op, jti);
    edit(claims.as_object_mut().unwrap());
    sign(&claims, OP_KEY, Some("logout+jwt"))
}

async fn post_logout(app: &TestApp, token: &str) -> reqwest::Response {
    // Server to server: a fresh client, no cookie, no anti-forgery header.
    reqwest::Client::new()
        .post(app.url("/auth/backchannel-logout"))
        .form(&[("logout_token", token)])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn hostile_logout_tokens_are_refused_and_a_valid_one_ends_the_session() {
    let op = start_op(Defect::None).await;
    let app = spawn_app(&op.issuer).await;
    assert_eq!(login_at(&op, &app).await.status(), StatusCode::SEE_OTHER);

    let hs256 = {
        let header = Header::new(Algorithm::HS256);
        encode(
            &header,
            &valid_claims(&op, "hs"),
            &EncodingKey::from_secret(b"gatehouse-dev-secret"),
        )
        .unwrap()
    };
    let alg_none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"logout+jwt"}"#),
        URL_SAFE_NO_PAD.encode(valid_claims(&op, "none").to_string())
    );
    let hostile: Vec<(&str, String)> = vec![
        ("not a JWT", "not-a-jwt".into()),
        ("alg none", alg_none),
        ("HS256 with the client secret", hs256),
        (
            "signed by another key",
            sign(&valid_claims(&op, "k"), ATTACKER_KEY, Some("logout+jwt")),
        ),
        (
            "typ of an access token",
            sign(&valid_claims(&op, "t"), OP_KEY, Some("at+jwt")),
        ),
        (
            "wrong iss",
            with(&op, "i", |c| {
                c.insert("iss".into(), json!("https://evil.example"));
            }),
        ),
        (
            "wrong aud",
            with(&op, "a", |c| {
                c.insert("aud".into(), json!("someone-else"));
            }),
        ),
        (
            "expired",
            with(&op, "e", |c| {
                c.insert("iat".into(), json!(now() - 3600));
                c.insert("exp".into(), json!(now() - 1800));
            }),
        ),
        (
            "no exp",
            with(&op, "x", |c| {
                c.remove("exp");
            }),
        ),
        (
            "no iat",
            with(&op, "n", |c| {
                c.remove("iat");
            }),
        ),
        (
            "iat in the future",
            with(&op, "f", |c| {
                c.insert("iat".into(), json!(now() + 3600));
            }),
        ),
        (
            "no events",
            with(&op, "v", |c| {
                c.remove("events");
            }),
        ),
        (
            "another event",
            with(&op, "o", |c| {
                c.insert(
                    "events".into(),
                    json!({"http://schemas.openid.net/event/other": {}}),
                );
            }),
        ),
        (
            "event not an object",
            with(&op, "j", |c| {
                c.insert("events".into(), json!({ EVENT: "yes" }));
            }),
        ),
        (
            "neither sub nor sid",
            with(&op, "s", |c| {
                c.remove("sub");
            }),
        ),
        (
            "has a nonce",
            with(&op, "c", |c| {
                c.insert("nonce".into(), json!("n-0S6_WzA2Mj"));
            }),
        ),
        (
            "no jti",
            with(&op, "", |c| {
                c.remove("jti");
            }),
        ),
        // A null nonce was found by the logout_token fuzz target; an empty sub
        // alone is refused by the same rule its property states.
        (
            "a null nonce",
            with(&op, "n", |c| {
                c.insert("nonce".into(), Value::Null);
            }),
        ),
        (
            "an empty sub and no sid",
            with(&op, "e", |c| {
                c.insert("sub".into(), json!(""));
                c.remove("sid");
            }),
        ),
        ("empty", String::new()),
    ];
    for (name, token) in &hostile {
        let response = post_logout(&app, token).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{name}");
        assert_eq!(
            app.get_json("/auth/user").await.status(),
            StatusCode::OK,
            "{name} must not end the session"
        );
    }
    let missing = reqwest::Client::new()
        .post(app.url("/auth/backchannel-logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);

    // A valid token for someone else: accepted, our session stays; replaying it: refused.
    let other = sign(
        &json!({"iss": op.issuer, "aud": "gatehouse", "iat": now(), "exp": now() + 120,
                "jti": "other-1", "sub": "someone-else", "events": { EVENT: {} }}),
        OP_KEY,
        Some("JWT"),
    );
    assert_eq!(post_logout(&app, &other).await.status(), StatusCode::OK);
    assert_eq!(app.get_json("/auth/user").await.status(), StatusCode::OK);
    assert_eq!(
        post_logout(&app, &other).await.status(),
        StatusCode::BAD_REQUEST,
        "jti replay"
    );

    // The valid one for this user ends the session.
    let valid = sign(&valid_claims(&op, "valid-1"), OP_KEY, Some("logout+jwt"));
    let response = post_logout(&app, &valid).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    assert_eq!(
        app.get_json("/auth/user").await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn logging_out_at_the_dev_idp_ends_the_app_session() {
    let port = free_port();
    let app = spawn_app(&format!("http://localhost:{port}/realms/demo")).await;
    let callback_uri = app.url("/auth/backchannel-logout");
    let idp = Idp::start_on(
        port,
        &[("IDP_BACKCHANNEL_LOGOUT_URI", callback_uri.as_str())],
    )
    .await;
    assert_eq!(
        app.login("alice", "alice").await.status(),
        StatusCode::SEE_OTHER
    );

    // Log out at the IdP directly (not through the app): the IdP tells the app.
    walk_idp_logout(
        &app.http,
        &format!("{}/protocol/openid-connect/logout", idp.issuer),
    )
    .await;
    assert!(
        app.signed_out_within(20).await,
        "the app session must end after logout at the IdP"
    );
    assert!(
        idp.stats().await["backchannel_logouts_sent"]
            .as_u64()
            .unwrap()
            >= 1
    );
}

/// The replay cache is per issuer: two providers may use the same `jti`, and
/// each one's logout token ends its own session. The hostile OP calls every
/// user `mallory`, so both sessions have the same `sub` too.
async fn the_same_jti_from_two_issuers_is_two_logouts(kind: StoreKind) {
    let store = TestStore::start(kind).await;
    let first = start_op(Defect::None).await;
    let second = start_op(Defect::None).await;
    let app = spawn_app_with(
        &first.issuer,
        &[
            ("SESSION_STORE", store.url.as_str()),
            ("OIDC_PROVIDERS", "second"),
            ("OIDC_SECOND_ISSUER_URL", second.issuer.as_str()),
            ("OIDC_SECOND_CLIENT_ID", "gatehouse"),
            ("OIDC_SECOND_CLIENT_SECRET", "gatehouse-dev-secret"),
        ],
    )
    .await;
    // Signs `browser` in at `op`, the provider named `name` (callback path `path`).
    async fn sign_in_at(app: &TestApp, op: &Op, name: &str, path: &str) -> TestApp {
        let browser = app.second_browser();
        let authorize = browser.start_login_at(name).await;
        *op.nonce.lock().unwrap() = query_param(&authorize, "nonce").unwrap();
        let state = query_param(&authorize, "state").unwrap();
        let callback = app.url(&format!("{path}?code=any-code&state={state}"));
        let response = browser.http.get(callback).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{name}");
        browser
    }
    let at_first = sign_in_at(&app, &first, "default", "/auth/callback").await;
    let at_second = sign_in_at(&app, &second, "second", "/auth/callback/second").await;

    let from_first = sign(
        &valid_claims(&first, "same-jti"),
        OP_KEY,
        Some("logout+jwt"),
    );
    assert_eq!(
        post_logout(&app, &from_first).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        at_first.get_json("/auth/user").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        at_second.get_json("/auth/user").await.status(),
        StatusCode::OK,
        "the first provider's mallory is not the second's"
    );
    let from_second = sign(
        &valid_claims(&second, "same-jti"),
        OP_KEY,
        Some("logout+jwt"),
    );
    assert_eq!(
        post_logout(&app, &from_second).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        at_second.get_json("/auth/user").await.status(),
        StatusCode::UNAUTHORIZED
    );
    // Each is still refused a second time.
    assert_eq!(
        post_logout(&app, &from_first).await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post_logout(&app, &from_second).await.status(),
        StatusCode::BAD_REQUEST
    );
}

on_every_store!(the_same_jti_from_two_issuers_is_two_logouts);

/// A logout token whose sessions could not be ended (the store refused the
/// lookup) is not spent: the IdP's retry of the same token ends the session.
#[tokio::test]
async fn a_failed_logout_lets_the_idps_retry_through() {
    let redis = Redis::start().await;
    let op = start_op(Defect::None).await;
    let app = spawn_app_with(&op.issuer, &[("SESSION_STORE", redis.url.as_str())]).await;
    assert_eq!(login_at(&op, &app).await.status(), StatusCode::SEE_OTHER);
    let token = sign(&valid_claims(&op, "retried"), OP_KEY, Some("logout+jwt"));

    // The store answers, but refuses the session lookup.
    assert!(redis
        .command(&["ACL", "SETUSER", "default", "-smembers"])
        .await
        .starts_with("+OK"));
    let failed = post_logout(&app, &token).await;
    assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = failed.text().await.unwrap();
    assert!(
        !body.contains("NOPERM") && !body.contains("smembers"),
        "{body}"
    );
    // Ours, not §2.8's (which has only 400): the code every route uses for it.
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "session_store_unavailable", "{body}");
    assert!(redis
        .command(&["ACL", "SETUSER", "default", "+@all"])
        .await
        .starts_with("+OK"));
    assert_eq!(app.get_json("/auth/user").await.status(), StatusCode::OK);

    assert_eq!(post_logout(&app, &token).await.status(), StatusCode::OK);
    assert_eq!(
        app.get_json("/auth/user").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post_logout(&app, &token).await.status(),
        StatusCode::BAD_REQUEST
    );
}
