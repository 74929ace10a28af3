//! Limits: the login routes per client IP, the total of login transactions,
//! request body size. Each answers with a clear 429 or 413.

use std::net::{IpAddr, Ipv4Addr};

use reqwest::{header, StatusCode};
use serde_json::Value;

use crate::helpers::*;

/// A client that connects from another loopback address (another client IP).
fn client_from(ip: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(IpAddr::V4(ip))
        .build()
        .unwrap()
}

async fn assert_rate_limited(response: reqwest::Response, what: &str) {
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "{what}");
    let wait: u64 = response.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{what}: Retry-After {wait}");
    let html = response.text().await.unwrap();
    assert!(
        html.contains("data-reason=\"rate_limited\""),
        "{what}: {html}"
    );
    assert!(html.contains("try again"), "{what}: {html}");
}

#[tokio::test]
async fn login_routes_are_rate_limited_per_client_ip() {
    let idp = Idp::start().await;
    let app = spawn_app_with(&idp.issuer, &[("AUTH_RATE_LIMIT_PER_MINUTE", "3")]).await;
    for _ in 0..3 {
        assert_eq!(app.get("/auth/login").await.status(), StatusCode::SEE_OTHER);
    }
    assert_rate_limited(app.get("/auth/login").await, "login").await;
    assert_rate_limited(app.get("/auth/signup").await, "signup").await;
    assert_rate_limited(app.get("/auth/callback?state=x&code=y").await, "callback").await;
    // A made-up X-Forwarded-For does not buy a fresh bucket (not trusted by default).
    let spoofed = app
        .http
        .get(app.url("/auth/login"))
        .header("X-Forwarded-For", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_rate_limited(spoofed, "spoofed X-Forwarded-For").await;
    // Everything else is not limited.
    assert_eq!(app.get_page("/").await.status(), StatusCode::OK);
    assert_eq!(
        app.get_json("/auth/user").await.status(),
        StatusCode::UNAUTHORIZED
    );
    // Another client IP has its own budget.
    let other = client_from(Ipv4Addr::new(127, 0, 0, 2));
    let response = other.get(app.url("/auth/login")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn forwarded_for_names_the_client_only_when_trusted() {
    let idp = Idp::start().await;
    let app = spawn_app_with(
        &idp.issuer,
        &[
            ("AUTH_RATE_LIMIT_PER_MINUTE", "1"),
            ("TRUST_FORWARDED_FOR", "1"),
        ],
    )
    .await;
    let from = |ip: &'static str| {
        app.http
            .get(app.url("/auth/login"))
            .header("X-Forwarded-For", ip)
            .send()
    };
    assert_eq!(
        from("198.51.100.1").await.unwrap().status(),
        StatusCode::SEE_OTHER
    );
    assert_rate_limited(from("198.51.100.1").await.unwrap(), "same client").await;
    assert_eq!(
        from("198.51.100.2").await.unwrap().status(),
        StatusCode::SEE_OTHER
    );
    // IPv6 clients count per /64: another address in the same /64 is the same client.
    assert_eq!(
        from("2001:db8:1:2::1").await.unwrap().status(),
        StatusCode::SEE_OTHER
    );
    assert_rate_limited(from("2001:db8:1:2::ffff").await.unwrap(), "same /64").await;
}

#[tokio::test]
async fn the_total_of_login_transactions_is_capped() {
    let idp = Idp::start().await;
    let app = spawn_app_with(&idp.issuer, &[("PENDING_LOGINS_MAX", "3")]).await;
    for _ in 0..3 {
        let browser = app.second_browser();
        assert_eq!(
            browser.get("/auth/login").await.status(),
            StatusCode::SEE_OTHER
        );
    }
    let late = app.second_browser().get("/auth/login").await;
    assert_eq!(late.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(late.headers().contains_key(header::RETRY_AFTER));
    let html = late.text().await.unwrap();
    assert!(html.contains("sign-ins are in progress"), "{html}");
    // A refused start stores nothing: no session cookie for that browser.
    let browser = app.second_browser();
    browser.get("/auth/login").await;
    assert_eq!(browser.session_cookie(), None);
}

#[tokio::test]
async fn oversized_bodies_get_a_clear_413() {
    let idp = Idp::start().await;
    let app = spawn_app(&idp.issuer).await;
    app.login("alice", "alice").await;
    let big = "x".repeat(100 * 1024);

    let declared = app
        .http
        .post(app.url("/api/notes"))
        .header("X-CSRF", "1")
        .json(&serde_json::json!({ "text": big }))
        .send()
        .await
        .unwrap();
    // Streamed without Content-Length: refused while reading.
    let chunks: Vec<Result<String, std::io::Error>> =
        (0..100).map(|_| Ok("y".repeat(1024))).collect();
    let streamed = app
        .http
        .post(app.url("/api/notes"))
        .header("X-CSRF", "1")
        .header(header::CONTENT_TYPE, "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    let current_user =
        <gatehouse::components::current_user::CurrentUser as leptos::server_fn::ServerFn>::PATH;
    let server_fn = app.server_fn(current_user, &[("padding", &big)]).await;
    for (what, response) in [
        ("declared", declared),
        ("streamed", streamed),
        ("server function", server_fn),
    ] {
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE, "{what}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "payload_too_large", "{what}");
        assert!(
            body["message"].as_str().unwrap().contains("64 KiB"),
            "{what}"
        );
    }
    // Nothing was stored, and normal requests still work.
    let notes: Value = app.get_json("/api/notes").await.json().await.unwrap();
    assert_eq!(notes.as_array().map(Vec::len), Some(0), "{notes}");
}
